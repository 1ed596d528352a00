"""Content-addressed blob store: a blob exists under its digest name only if its bytes match.

Bytes go to a temp file in content/ingest (same filesystem), are hashed as they stream,
fsynced, checked, and only then renamed to blobs/sha256/<hex>.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from pallet.oci.digest import hex_of, validate
from pallet.records import FrozenRecord

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import BinaryIO

CHUNK = 1 << 20


class BlobError(Exception):
    pass


class BlobInfo(FrozenRecord):
    __slots__ = ("digest", "size")
    digest: str
    size: int

    def __init__(self, digest: str, size: int) -> None:
        self._set(digest=digest, size=size)


class ContentStore:
    def __init__(self, blobs: Path, ingest: Path) -> None:
        self.blobs = blobs
        self.ingest_dir = ingest

    def path(self, digest: str) -> Path:
        return self.blobs / hex_of(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise BlobError(f"blob {digest} not found in the content store") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BlobError(f"blob {digest} not found in the content store") from None

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def write_bytes(self, data: bytes, expected: str | None = None) -> BlobInfo:
        if expected is not None and self.has(validate(expected)):
            return BlobInfo(expected, self.size(expected))
        with self.writer() as w:
            w.write(data)
            return w.commit(expected)

    def write_stream(
        self, stream: BinaryIO, expected: str | None = None, expected_size: int | None = None
    ) -> BlobInfo:
        with self.writer() as w:
            while chunk := stream.read(CHUNK):
                w.write(chunk)
            return w.commit(expected, expected_size)

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def all_digests(self) -> set[str]:
        return {"sha256:" + name for name in os.listdir(self.blobs) if len(name) == 64}

    def sweep_ingest(self, older_than: float) -> None:
        """Remove temp files left by crashed writers (never a digest name, so harmless)."""
        import time

        now = time.time()
        for name in os.listdir(self.ingest_dir):
            p = self.ingest_dir / name
            try:
                if now - p.stat().st_mtime > older_than:
                    p.unlink()
            except FileNotFoundError:
                pass


class BlobWriter:
    """An ingest in progress: write, then commit() under the verified digest, or it vanishes."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        import hashlib  # _hashlib (OpenSSL) costs ~2 ms: only writers need it

        self.hash = hashlib.sha256()
        self.size = 0
        import tempfile

        fd, self.tmp = tempfile.mkstemp(dir=store.ingest_dir, prefix="blob-")
        self.file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.hash.update(chunk)
        self.size += len(chunk)
        self.file.write(chunk)

    def commit(self, expected: str | None = None, expected_size: int | None = None) -> BlobInfo:
        digest = "sha256:" + self.hash.hexdigest()
        if expected is not None and digest != validate(expected):
            raise BlobError(f"digest mismatch: expected {expected}, got {digest}")
        if expected_size is not None and self.size != expected_size:
            raise BlobError(f"size mismatch for {digest}: expected {expected_size}, got {self.size}")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.rename(self.tmp, self.store.path(digest))
        self.tmp = ""
        return BlobInfo(digest, self.size)

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        if self.tmp:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
            self.tmp = ""

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()
