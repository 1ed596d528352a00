"""`docker import`: one tarball (plain, gzip, zstd, bzip2 or xz) becomes a one-layer image."""

from __future__ import annotations

import bz2
import contextlib
import lzma
from typing import Any, BinaryIO, cast

from pallet.images.config import apply_changes, manifest_for, new_config, rfc3339, serialize
from pallet.images.sniff import compression_of, peek
from pallet.images.store import ImageError, ImageStore
from pallet.images.tarsafe import LayerError
from pallet.oci import mediatypes as mt
from pallet.oci import reference as refs

_MEDIA_TYPES = {"": mt.OCI_LAYER, "gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}


class ImportFailed(ImageError):
    """The tarball could not be imported."""


def import_rootfs(store: ImageStore, stream: BinaryIO, *, changes: list[str], message: str | None,
                  tag: str | None, source: str = "-") -> str:
    """Import a root filesystem tarball; returns the image ID. `source` names where it came from
    ("-" for a file or stdin, else a URL) for docker's default comment "Imported from <source>"."""
    runtime: dict[str, Any] = {}
    apply_changes(runtime, changes)  # reject bad changes before reading any input
    tags = []
    if tag:
        try:
            ref = refs.parse_normalized(tag)
        except refs.ReferenceError as exc:
            raise ImportFailed(f'Error parsing reference: "{tag}" is not a valid repository/tag: {exc}')
        if ref.digest:
            raise ImportFailed(f"refusing to create a tag with a digest reference: {tag}")
        tags.append(str(ref))
    head, src = peek(stream)
    comp = compression_of(head)
    msg = message or f"Imported from {source}"
    with contextlib.ExitStack() as stack:
        if comp in ("bzip2", "xz"):
            # Stored uncompressed: layer blobs are tar, tar+gzip or tar+zstd only.
            opener = bz2.BZ2File if comp == "bzip2" else lzma.LZMAFile
            src = cast(BinaryIO, stack.enter_context(opener(src)))
            comp = ""
        stack.enter_context(store.writing())
        try:
            rec = store.ingest_layer(src, None, keep_blob=True, media_type=_MEDIA_TYPES[comp])
        except (LayerError, EOFError, OSError, lzma.LZMAError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # a real I/O failure (disk full, ...), not bad input
            raise ImportFailed(f"invalid tar archive: {exc}")
        created = rfc3339()
        config = serialize(new_config([rec.diff_id], created=created, runtime=runtime, comment=msg,
                                      history=[{"created": created, "comment": msg}]))
        manifest = manifest_for(config, [(rec.media_type, rec.blob_digest or "", rec.blob_size)])
        return store.add_image(config, [rec], manifest=manifest, manifest_media_type=mt.OCI_MANIFEST,
                               tags=tags)
