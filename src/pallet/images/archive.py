"""`docker load` and `docker save`: docker-archive (classic and Docker 25+), OCI archives and layouts.

Loading reads the tar once, in order, from a stream that may not seek (stdin). The index
(manifest.json / index.json) usually comes last, so every member is kept until the end
(`archive_members`): small ones in memory, big ones spooled straight into the content store's
ingest area, hashed as they pass. A spooled member that turns out to be a layer blob is later
committed by a rename, so its bytes are written once. Nothing is registered until every blob
digest and layer diff_id checks out; on any failure (KeyboardInterrupt included) spooled files,
new layer directories and new blobs are removed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pallet.images import layers as layerfs
from pallet.images.archive_members import ArchiveError, ArchiveMembers, Member
from pallet.images.archive_save import save, save_oci
from pallet.images.config import host_architecture, manifest_for
from pallet.images.content import CHUNK, BlobWriter
from pallet.images.sniff import compression_of
from pallet.images.store import ImageStore, LayerRecord
from pallet.images.tarstream import LayerError
from pallet.oci import mediatypes as mt
from pallet.oci import reference as refs

__all__ = ["ArchiveError", "load", "load_dir", "save", "save_oci"]

_BLOB_NAME = re.compile(r"blobs/sha256/([a-f0-9]{64})")
_CONFIG_NAME = re.compile(r"([a-f0-9]{64})\.json")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_IMAGE_NAME = "io.containerd.image.name"
_REF_NAME = "org.opencontainers.image.ref.name"


def load(store: ImageStore, source: BinaryIO) -> list[str]:
    """Load every image of a docker-archive or OCI archive read once from `source`; returns the
    lines docker prints (`Loaded image: busybox:latest`, `Loaded image ID: sha256:...`)."""
    return _run(_Loader(store), source)


def load_dir(store: ImageStore, path: Path) -> list[str]:
    """Load the images of an OCI image layout directory (index.json, oci-layout, blobs/)."""
    if not (path / "index.json").is_file():
        raise ArchiveError(f"invalid OCI layout {path}: no index.json")
    return _run(_Loader(store, root=path), None)


def _run(loader: _Loader, source: BinaryIO | None) -> list[str]:
    with loader.store.writing():
        try:
            if source is not None:
                loader.members.read_tar(source)
            root = loader.members.root
            return loader.finish(root.resolve().name if root else None)
        except BaseException:
            loader.rollback()
            raise
        finally:
            loader.discard()


# ---- images -------------------------------------------------------------------------------------

_LAYER_TYPES = {"": mt.OCI_LAYER, "gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}


@dataclass
class _Image:
    config: bytes
    layers: list[Member]
    tags: list[str] = field(default_factory=list)  # normalised references
    manifest: bytes | None = None  # the archive's own manifest, when it has one
    manifest_type: str = mt.OCI_MANIFEST
    records: list[LayerRecord] = field(default_factory=list)


class _Loader:
    def __init__(self, store: ImageStore, root: Path | None = None) -> None:
        self.store = store
        self.members = ArchiveMembers(store.content, root)
        self.layers_before = set(os.listdir(store.paths.layers))
        self.placed: list[str] = []  # layer dirs we created (removed again on failure)
        self.new_blobs: list[str] = []  # blobs we committed that were not there before
        self.extra: list[BlobWriter] = []  # spools made while loading (decompressed bz2/xz layers)
        self.by_digest: dict[str, Member] = {}  # layer blobs to commit once everything checks out
        self.sizes: dict[str, int] = {}  # chain ID -> unpacked size, for layers this load unpacked

    # -- the two kinds of index --------------------------------------------------------------------

    def images(self, dir_name: str | None) -> list[_Image]:
        if self.members.root is None and self.members.has("manifest.json"):
            return self._docker_images()  # docker reads manifest.json even when index.json is there
        if self.members.has("index.json"):
            return self._oci_images(dir_name)
        raise ArchiveError("invalid archive: does not contain a manifest.json")

    def _docker_images(self) -> list[_Image]:
        manifest = self.members.json("manifest.json")
        if manifest is None:
            raise ArchiveError("invalid manifest, manifest cannot be null (but can be [])")
        if not isinstance(manifest, list) or not all(isinstance(m, dict) for m in manifest):
            raise ArchiveError("invalid archive: manifest.json is not a list of images")
        out = []
        for item in manifest:
            if not isinstance(item.get("Config"), str) or not isinstance(item.get("Layers", []), list):
                raise ArchiveError("invalid archive: a manifest.json entry has no Config or bad Layers")
            config = self.members.get(item["Config"])
            m = _BLOB_NAME.fullmatch(config.name) or _CONFIG_NAME.fullmatch(config.name)
            if m:
                self.members.check(config, "sha256:" + m.group(1))
            layers = []
            for path in item.get("Layers") or []:
                layer = self.members.get(str(path))
                if m := _BLOB_NAME.fullmatch(layer.name):
                    self.members.check(layer, "sha256:" + m.group(1))
                layers.append(layer)
            tags = []
            for tag in item.get("RepoTags") or []:
                try:
                    ref = refs.parse_normalized(tag)
                except refs.ReferenceError as exc:
                    raise ArchiveError(f"invalid tag {tag!r} in manifest.json: {exc}")
                if ref.tag is None:
                    raise ArchiveError(f"invalid tag {tag!r}")
                tags.append(str(ref))
            out.append(_Image(config.read_bytes(), layers, tags))
        return out

    def _oci_images(self, dir_name: str | None) -> list[_Image]:
        index = self.members.json("index.json")
        if not isinstance(index, dict) or index.get("schemaVersion") != 2:
            raise ArchiveError("invalid archive: index.json is not an OCI image index")
        by_config: dict[bytes, _Image] = {}
        for desc in index.get("manifests") or []:
            found = self._manifest(desc)
            if found is None:
                continue  # not an image (an artifact, an attestation)
            raw, manifest = found
            config = self.members.blob(manifest.get("config")).read_bytes()
            image = by_config.get(config)
            if image is None:
                layers = [self.members.blob(d) for d in manifest.get("layers") or []]
                image = by_config[config] = _Image(config, layers, manifest=raw,
                                                   manifest_type=manifest.get("mediaType") or mt.OCI_MANIFEST)
            name = _name_from_annotations(desc.get("annotations") or {}, dir_name)
            if name and name not in image.tags:
                image.tags.append(name)
        return list(by_config.values())

    def _manifest(self, desc: Any, depth: int = 0) -> tuple[bytes, dict[str, Any]] | None:
        """The image manifest a descriptor leads to, choosing this host's platform in an index."""
        raw = self.members.blob(desc).read_bytes()
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ArchiveError(f"invalid archive: manifest {desc['digest']} is not a JSON object")
        kind = doc.get("mediaType") or desc.get("mediaType")
        if "manifests" in doc and depth < 4 and kind in (*mt.INDEXES, None):
            arch = host_architecture()
            entries = doc.get("manifests") or []
            for d in entries:
                plat = d.get("platform") or {}
                if plat.get("os", "linux") == "linux" and plat.get("architecture", arch) == arch:
                    return self._manifest(d, depth + 1)
            raise ArchiveError(f"invalid archive: no image for linux/{arch} in {desc['digest']}")
        if kind not in (*mt.MANIFESTS, None) or not isinstance(doc.get("config"), dict):
            return None
        if doc["config"].get("mediaType") not in (mt.OCI_CONFIG, mt.DOCKER_CONFIG, None):
            return None
        return raw, doc

    # -- unpacking and registering -----------------------------------------------------------------

    def finish(self, dir_name: str | None) -> list[str]:
        images = self.images(dir_name)
        for image in images:
            self._ingest(image)
        lines = []
        for image in images:
            for rec in image.records:
                self._commit(rec.blob_digest)
            manifest, kind = image.manifest, image.manifest_type
            if manifest is None or [r.blob_digest for r in image.records] != [m.digest for m in image.layers]:
                # docker-archives have no manifest (or one for other blobs): describe what we keep
                manifest, kind = manifest_for(image.config, [(r.media_type, r.blob_digest or "", r.blob_size)
                                                             for r in image.records]), mt.OCI_MANIFEST
            previous = {t: self.store.lookup_id(t) for t in image.tags}
            image_id = self.store.add_image(image.config, image.records, manifest=manifest,
                                            manifest_media_type=kind, tags=image.tags)
            for tag in image.tags:
                familiar = refs.parse(tag).familiar()
                old = previous[tag]
                if old and old != image_id:
                    lines.append(f"The image {familiar} already exists, renaming the old one with ID "
                                 f"{old} to empty string")
                lines.append(f"Loaded image: {familiar}")
            if not image.tags:
                lines.append(f"Loaded image ID: {image_id}")
        return lines

    def _ingest(self, image: _Image) -> None:
        try:
            diff_ids = json.loads(image.config)["rootfs"]["diff_ids"]
        except (ValueError, KeyError, TypeError):
            diff_ids = None
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) and _DIGEST.fullmatch(d)
                                                     for d in diff_ids):
            raise ArchiveError("invalid archive: image config has no valid rootfs.diff_ids")
        if len(diff_ids) != len(image.layers):
            raise ArchiveError(f"invalid manifest, layers length mismatch: expected {len(image.layers)}, "
                               f"got {len(diff_ids)}")
        chains = layerfs.chain_ids(diff_ids)
        for i, (member, diff_id) in enumerate(zip(image.layers, diff_ids, strict=True)):
            comp = compression_of(member.head())
            if comp in ("bzip2", "xz"):
                member, comp = self._decompress(member, comp), ""
            if not comp and member.digest != diff_id:  # a plain tar's digest is its diff_id
                raise _diff_error(i, diff_id, member.digest)
            size = self.sizes[chains[i]] if chains[i] in self.sizes else self._known_size(chains[i])
            if size is not None and comp:
                actual = _tar_digest(member)
                if actual != diff_id:
                    raise _diff_error(i, diff_id, actual)
            if size is None:
                with member.open() as f:
                    try:
                        rec = self.store.ingest_layer(f, chains[i - 1] if i else None, keep_blob=False,
                                                      media_type=_LAYER_TYPES[comp])
                    except LayerError as exc:
                        raise ArchiveError(f"invalid layer {i} ({member.name}): {exc}")
                if rec.chain_id[7:] not in self.layers_before:
                    self.placed.append(rec.chain_id)
                if rec.diff_id != diff_id:
                    raise _diff_error(i, diff_id, rec.diff_id)
                size = self.sizes[chains[i]] = rec.size
            image.records.append(LayerRecord(chains[i], diff_id, size, member.digest, member.size,
                                             _LAYER_TYPES[comp]))
            self.by_digest.setdefault(member.digest, member)

    def _known_size(self, chain_id: str) -> int | None:
        """The unpacked size of a layer the store already has (then we need not unpack it again)."""
        if not self.store.has_layer(chain_id):
            return None
        row = self.store.conn.execute("SELECT size FROM layers WHERE chain_id=?", (chain_id,)).fetchone()
        return int(row[0]) if row else None

    def _decompress(self, member: Member, comp: str) -> Member:
        import bz2
        import lzma
        writer = self.store.content.writer()
        self.extra.append(writer)
        opener = bz2.BZ2File if comp == "bzip2" else lzma.LZMAFile
        with member.open() as f, opener(f) as src:
            try:
                while chunk := src.read(CHUNK):
                    writer.write(chunk)
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise ArchiveError(f"invalid layer {member.name}: {exc}")
        return Member(member.name, writer=writer)

    def _commit(self, digest: str | None) -> None:
        if digest is None or self.store.content.has(digest):
            return
        member = self.by_digest[digest]
        if member.writer is None:
            self.store.content.write_bytes(member.data or b"", digest)
        else:
            member.writer.commit(digest)
            member.writer = None
            member.data = b""  # committed: it now lives in the content store
        self.new_blobs.append(digest)

    # -- cleaning up -------------------------------------------------------------------------------

    def discard(self) -> None:
        self.members.discard()
        for writer in self.extra:
            writer.abort()

    def rollback(self) -> None:
        """Undo what a failed load left behind, keeping anything a registered image now uses."""
        conn = self.store.conn
        for chain in self.placed:
            if conn.execute("SELECT 1 FROM image_layers WHERE chain_id=?", (chain,)).fetchone() is None:
                shutil.rmtree(self.store.layer_dir(chain), ignore_errors=True)
        for digest in self.new_blobs:
            if conn.execute("SELECT 1 FROM image_blobs WHERE digest=?", (digest,)).fetchone() is None:
                self.store.content.delete(digest)


# ---- helpers ------------------------------------------------------------------------------------

def _diff_error(i: int, expected: str, actual: str) -> ArchiveError:
    return ArchiveError(f'invalid diffID for layer {i}: expected "{expected}", got "{actual}"')


def _tar_digest(member: Member) -> str:
    h = hashlib.sha256()
    with member.open() as f:
        try:
            src = layerfs.open_decompressed(f)
            while chunk := src.read(CHUNK):
                h.update(chunk)
        except LayerError as exc:
            raise ArchiveError(f"invalid layer {member.name}: {exc}")
    return "sha256:" + h.hexdigest()


def _name_from_annotations(annotations: dict[str, Any], dir_name: str | None) -> str | None:
    """An index entry's image name, read as podman reads it: io.containerd.image.name wins over
    org.opencontainers.image.ref.name. A bare ref.name (`latest`) in a layout directory is a tag of
    the directory's name (podman's oci: rule); in an archive it is taken as a name, as podman and
    containerd do (docker's normalisation then makes `latest` docker.io/library/latest:latest)."""
    name = annotations.get(_IMAGE_NAME)
    if not isinstance(name, str) or not name:
        name = annotations.get(_REF_NAME)
        if not isinstance(name, str) or not name:
            return None
        if dir_name and not any(c in name for c in "/:@"):
            name = f"{dir_name.lower()}:{name}"
    try:
        ref = refs.parse_normalized(name)
    except refs.ReferenceError:
        return None  # ref.name allows names docker cannot parse: load the image untagged
    return str(ref) if ref.digest is None else None
