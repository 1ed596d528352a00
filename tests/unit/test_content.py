from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from pallet.images.content import BlobError, ContentStore


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    (tmp_path / "blobs").mkdir()
    (tmp_path / "ingest").mkdir()
    return ContentStore(tmp_path / "blobs", tmp_path / "ingest")


def test_blob_is_stored_under_its_digest(store: ContentStore) -> None:
    info = store.write_bytes(b"hello")
    assert info.digest == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert store.read(info.digest) == b"hello"
    assert store.size(info.digest) == 5


def test_wrong_digest_leaves_nothing(store: ContentStore) -> None:
    wrong = "sha256:" + "0" * 64
    with pytest.raises(BlobError, match="digest mismatch"):
        store.write_stream(io.BytesIO(b"data"), expected=wrong)
    assert store.all_digests() == set()
    assert list(store.ingest_dir.iterdir()) == []


def test_size_mismatch_is_rejected(store: ContentStore) -> None:
    with pytest.raises(BlobError, match="size mismatch"):
        store.write_stream(io.BytesIO(b"data"), expected_size=5)
    assert store.all_digests() == set()


def test_aborted_writer_leaves_no_digest_name(store: ContentStore) -> None:
    with store.writer() as w:
        w.write(b"partial")
    assert store.all_digests() == set()
    assert list(store.ingest_dir.iterdir()) == []


def test_malformed_digest_is_refused(store: ContentStore) -> None:
    with pytest.raises(ValueError, match="invalid digest"):
        store.write_bytes(b"x", expected="md5:abc")
