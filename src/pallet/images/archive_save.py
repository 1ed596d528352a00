"""`docker save`: write images as a docker-archive the way Docker 25+ does, or as an OCI archive.

Docker 25+'s archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) plus the
classic manifest.json and repositories files, with uncompressed layer blobs (so each layer's blob
digest is its diff_id). Entries are written in Docker's order (sorted paths) with deterministic
headers: owner 0/0, mode 0644/0755, mtime 0 except config and layer blobs, which carry the image's
creation time as Docker gives them. The output may be a pipe: it is written strictly in order.
"""

from __future__ import annotations

import calendar
import errno
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pallet.images import layers as layerfs
from pallet.images.config import manifest_for
from pallet.images.content import CHUNK
from pallet.images.sniff import compression_of
from pallet.images.store import ImageError, ImageStore
from pallet.oci import mediatypes as mt
from pallet.oci import reference as refs
from pallet.oci.digest import sha256_digest

_OCI_LAYOUT = b'{"imageLayoutVersion": "1.0.0"}'
_IMAGE_NAME = "io.containerd.image.name"
_REF_NAME = "org.opencontainers.image.ref.name"
_COMPRESSED = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}


def save(store: ImageStore, names: list[str], out: BinaryIO) -> None:
    """`docker save NAME...`: a docker-archive (Docker 25+ layout) of the named images."""
    _Saver(store, docker=True).write(names, out)


def save_oci(store: ImageStore, names: list[str], out: BinaryIO) -> None:
    """An OCI archive (oci-layout, index.json, blobs) with the layer blobs as they are stored."""
    _Saver(store, docker=False).write(names, out)


@dataclass
class _Entry:
    size: int
    mtime: int
    data: bytes | None = None
    path: Path | None = None


class _Saver:
    def __init__(self, store: ImageStore, *, docker: bool) -> None:
        self.store = store
        self.docker = docker
        self.blobs: dict[str, _Entry] = {}  # hex digest -> content
        self.temps: list[Path] = []

    def write(self, names: list[str], out: BinaryIO) -> None:
        with self.store.writing():  # holds off garbage collection while we read blobs
            try:
                files = self._plan(_select(self.store, names))
                _write_tar(out, self.blobs, files)
            finally:
                for p in self.temps:
                    p.unlink(missing_ok=True)

    def _plan(self, selected: dict[str, list[refs.Reference]]) -> dict[str, bytes]:
        items: list[dict[str, object]] = []
        descriptors: list[dict[str, object]] = []
        legacy: dict[str, dict[str, str]] = {}
        for image_id, tags in selected.items():
            config = self.store.content.read(image_id)
            diff_ids: list[str] = json.loads(config).get("rootfs", {}).get("diff_ids", [])
            if not diff_ids:
                raise ImageError("empty export - not implemented")
            created = _epoch(json.loads(config).get("created"))
            self._blob(image_id, _Entry(len(config), created, data=config))
            layers = [self._layer(i, d, created) for i, d in zip(self._layer_blobs(image_id, diff_ids),
                                                                 diff_ids, strict=True)]
            manifest = manifest_for(config, layers)
            digest = sha256_digest(manifest)
            self._blob(digest, _Entry(len(manifest), 0, data=manifest))
            plain = {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(manifest)}
            for ref in tags:
                descriptors.append({**plain, "annotations": {_IMAGE_NAME: str(ref), _REF_NAME: ref.tag}})
                legacy.setdefault(ref.familiar_name, {})[str(ref.tag)] = diff_ids[-1][7:]
            if not tags:
                descriptors.append(plain)
            items.append({"Config": "blobs/sha256/" + image_id[7:],
                          "RepoTags": [r.familiar() for r in tags] or None,
                          "Layers": ["blobs/sha256/" + d[7:] for _, d, _ in layers]})
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
        files = {"index.json": _compact(index), "oci-layout": _OCI_LAYOUT}
        if self.docker:
            files["manifest.json"] = _compact(items) + b"\n"  # Go's json.Encoder adds the newline
            if legacy:
                files["repositories"] = _compact(legacy, sort_keys=True) + b"\n"
        return files

    def _blob(self, digest: str, entry: _Entry) -> None:
        self.blobs.setdefault(digest[7:], entry)

    def _layer_blobs(self, image_id: str, diff_ids: list[str]) -> list[tuple[str | None, str]]:
        """(stored blob digest or None, media type) per layer, from the image's stored manifest."""
        rec = self.store.get(image_id)
        if rec.manifest_digest and self.store.content.has(rec.manifest_digest):
            try:
                layers = json.loads(self.store.content.read(rec.manifest_digest)).get("layers")
            except ValueError:
                layers = None
            if isinstance(layers, list) and len(layers) == len(diff_ids):
                return [(d.get("digest"), d.get("mediaType", "")) for d in layers]
        return [(d if self.store.content.has(d) else None, mt.OCI_LAYER) for d in diff_ids]

    def _layer(self, blob: tuple[str | None, str], diff_id: str, created: int) -> tuple[str, str, int]:
        """Add one layer blob to the archive; returns its (media type, digest, size) descriptor."""
        digest, _ = blob
        if digest is None or not self.store.content.has(digest):
            return self._regenerate(diff_id, created)
        path = self.store.content.path(digest)
        with open(path, "rb") as f:
            comp = compression_of(f.read(6))
        if not comp or not self.docker:
            size = path.stat().st_size
            self._blob(digest, _Entry(size, created, path=path))
            return _COMPRESSED.get(comp, mt.OCI_LAYER), digest, size
        if diff_id[7:] in self.blobs:
            return mt.OCI_LAYER, diff_id, self.blobs[diff_id[7:]].size
        tmp = self._temp()
        h = hashlib.sha256()
        with open(path, "rb") as f, open(tmp, "wb") as w:
            src = layerfs.open_decompressed(f)
            while chunk := src.read(CHUNK):
                h.update(chunk)
                w.write(chunk)
        if "sha256:" + h.hexdigest() != diff_id:
            raise ImageError(f"layer blob {digest} does not match its diff_id {diff_id}: store damaged")
        size = tmp.stat().st_size
        self._blob(diff_id, _Entry(size, created, path=tmp))
        return mt.OCI_LAYER, diff_id, size

    def _regenerate(self, diff_id: str, created: int) -> tuple[str, str, int]:
        """No stored blob (a layer committed locally): rebuild the tar and check it is the same."""
        chain = self.store.conn.execute("SELECT chain_id FROM layers WHERE diff_id=?", (diff_id,)).fetchone()
        tmp = self._temp()
        if chain is not None and self.store.has_layer(chain[0]):
            with open(tmp, "wb") as w:
                digest = layerfs.write_layer_tar(self.store.layer_dir(chain[0]), w)
            if digest == diff_id:
                size = tmp.stat().st_size
                self._blob(diff_id, _Entry(size, created, path=tmp))
                return mt.OCI_LAYER, diff_id, size
        raise ImageError(f"cannot save layer {diff_id}: its data is not in the content store")

    def _temp(self) -> Path:
        fd, name = tempfile.mkstemp(prefix="save-", dir=self.store.paths.tmp)
        os.close(fd)
        self.temps.append(Path(name))
        return self.temps[-1]


def _select(store: ImageStore, names: list[str]) -> dict[str, list[refs.Reference]]:
    """Image ID -> the tags to record, following docker's rules for save's arguments: a bare
    repository name saves every tag of it, name:tag that tag, an ID or a digest the image alone."""
    chosen: dict[str, list[refs.Reference]] = {}

    def add(image_id: str, ref: refs.Reference | None) -> None:
        tags = chosen.setdefault(image_id, [])
        if ref is not None and ref not in tags:
            tags.append(ref)

    for name in names:
        if name.startswith("sha256:") or re.fullmatch(r"[a-f0-9]{64}", name):
            add(store.resolve(name).id, None)
            continue
        try:
            ref = refs.parse(name)
        except refs.ReferenceError as exc:
            raise ImageError(f"invalid reference format: {exc}")
        if ref.tag is None and ref.digest is None:
            found = [(rec.id, refs.parse(t)) for rec in store.all() for t in rec.tags]
            matching = [(i, r) for i, r in found if r.name == ref.name]
            for image_id, tagged in sorted(matching, key=lambda x: str(x[1])):
                add(image_id, tagged)
            if not matching:
                add(store.resolve(name).id, None)
        elif ref.digest is not None:
            add(store.resolve(name).id, None)
        else:
            add(store.resolve(name).id, ref)
    return chosen


# ---- the tar writer -----------------------------------------------------------------------------

def _write_tar(out: BinaryIO, blobs: dict[str, _Entry], files: dict[str, bytes]) -> None:
    out.write(_header("blobs/", 0, 0, dir=True))
    out.write(_header("blobs/sha256/", 0, 0, dir=True))
    for hexdigest in sorted(blobs):
        entry = blobs[hexdigest]
        out.write(_header("blobs/sha256/" + hexdigest, entry.size, entry.mtime))
        if entry.data is not None:
            out.write(entry.data)
        else:
            assert entry.path is not None
            _copy(entry.path, entry.size, out)
        out.write(bytes(-entry.size % 512))
    for name in sorted(files):
        data = files[name]
        out.write(_header(name, len(data), 0))
        out.write(data + bytes(-len(data) % 512))
    out.write(bytes(1024))  # end of archive, as Go's archive/tar closes it
    out.flush()


def _header(name: str, size: int, mtime: int, *, dir: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = size, mtime
    info.type = tarfile.DIRTYPE if dir else tarfile.REGTYPE
    info.mode = 0o755 if dir else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _copy(path: Path, size: int, out: BinaryIO) -> None:
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size != size:
            raise ImageError(f"blob {path.name} changed size while being saved")
        out_fd = _fileno(out)
        if out_fd is not None:
            out.flush()  # bytes buffered in `out` must precede what the kernel copies
            offset = 0
            try:
                while offset < size:  # zero-copy from the page cache
                    n = os.sendfile(out_fd, f.fileno(), offset, min(size - offset, 1 << 30))
                    if n == 0:
                        raise ImageError(f"blob {path.name} shrank while being saved")
                    offset += n
                return
            except OSError as exc:
                if offset or exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
        while chunk := f.read(CHUNK):  # `out` has no descriptor sendfile can write to
            out.write(chunk)


def _fileno(out: BinaryIO) -> int | None:
    try:
        return out.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def _compact(obj: object, *, sort_keys: bool = False) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys).encode()


def _epoch(created: object) -> int:
    """An RFC 3339 time as whole seconds since the epoch; 0 when absent or before 1970."""
    if not isinstance(created, str):
        return 0
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|z|[+-]\d\d:\d\d)", created)
    if not m:
        return 0
    year, month, day, hour, minute, second = (int(x) for x in m.groups()[:6])
    secs = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    tz = m.group(7)
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return max(secs, 0)
