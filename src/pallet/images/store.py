"""The image store: images, tags and layers in the database, bytes in the content store and
in one unpacked directory per chain ID, shared by every image that has that layer.

Writers (load, import, pull, commit, build) hold the store lock shared from the first byte
they write until their image is registered; garbage collection holds it exclusive. So a
layer directory or blob that no database row names is garbage only while nobody writes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pallet.errors import Conflict, NotFound, PalletError
from pallet.images.content import CHUNK, BlobWriter, ContentStore
from pallet.oci import mediatypes as mt
from pallet.oci import reference as refs
from pallet.oci.digest import sha256_digest
from pallet.records import Record
from pallet.state import db
from pallet.state.locks import store_lock
from pallet.state.paths import StatePaths

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    import sqlite3
    from typing import Any, BinaryIO


class ImageError(PalletError):
    """A user-facing failure: the message is printed as the one error line."""


class ImageNotFound(ImageError, NotFound):
    pass


class ImageConflict(ImageError, Conflict):
    pass


class LayerRecord(Record):
    __slots__ = ("chain_id", "diff_id", "size", "blob_digest", "blob_size", "media_type")

    def __init__(
        self,
        chain_id: str,
        diff_id: str,
        size: int,
        blob_digest: str | None = None,
        blob_size: int = 0,
        media_type: str = mt.OCI_LAYER,
    ) -> None:
        self.chain_id = chain_id
        self.diff_id = diff_id
        self.size = size
        self.blob_digest = blob_digest
        self.blob_size = blob_size
        self.media_type = media_type


class ImageRecord(Record):
    __slots__ = ("id", "created", "size", "chain_ids", "tags", "repo_digests", "manifest_digest", "parent")

    def __init__(
        self,
        id: str,
        created: str,
        size: int,
        chain_ids: list[str],
        tags: list[str] | None = None,  # normalised references
        repo_digests: list[str] | None = None,
        manifest_digest: str | None = None,
        parent: str | None = None,
    ) -> None:
        self.id = id
        self.created = created
        self.size = size
        self.chain_ids = chain_ids
        self.tags = tags if tags is not None else []
        self.repo_digests = repo_digests if repo_digests is not None else []
        self.manifest_digest = manifest_digest
        self.parent = parent

    @property
    def short_id(self) -> str:
        return self.id[7:19]


class ImageStore:
    def __init__(self, paths: StatePaths, conn: sqlite3.Connection) -> None:
        self.paths = paths
        self.conn = conn
        self.content = ContentStore(paths.blobs, paths.ingest)

    # ---- writing -------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        with store_lock(self.paths.locks, shared=True):
            yield

    def layer_dir(self, chain_id: str) -> Path:
        return self.paths.layers / chain_id[7:]

    def has_layer(self, chain_id: str) -> bool:
        return self.layer_dir(chain_id).is_dir()

    def ingest_layer(
        self,
        stream: BinaryIO,
        parent_chain: str | None,
        *,
        keep_blob: bool = True,
        expected_blob: str | None = None,
        media_type: str = mt.OCI_LAYER,
    ) -> LayerRecord:
        """Unpack one layer stream (read once: hashed into a blob while it is unpacked).
        Call inside writing(); register the result with add_image() in the same lock."""
        import tempfile

        from pallet.images import layers as layerfs

        writer = self.content.writer() if keep_blob else None
        tmp = Path(tempfile.mkdtemp(prefix="unpack-", dir=self.paths.layers))
        os.chmod(tmp, 0o755)  # a layer's root is the container's /, as docker's diff dirs
        try:
            src: Any = _TeeReader(stream, writer) if writer else stream
            res = layerfs.unpack_layer(src, tmp)
            if writer:
                _drain(src)
            chain = layerfs.chain_ids([parent_chain, res.diff_id])[1] if parent_chain else res.diff_id
            blob = writer.commit(expected_blob) if writer else None
            self._place_layer(tmp, chain)
            return LayerRecord(
                chain,
                res.diff_id,
                res.size,
                blob.digest if blob else None,
                blob.size if blob else 0,
                media_type,
            )
        finally:
            if writer:
                writer.abort()
            if tmp.exists():
                _rmtree(tmp)

    def _place_layer(self, tmp: Path, chain: str) -> None:
        final = self.layer_dir(chain)
        if final.exists():
            return  # another writer placed the same layer first: identical by content
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise

    def add_image(
        self,
        config: bytes,
        layer_records: list[LayerRecord],
        *,
        manifest: bytes | None = None,
        manifest_media_type: str | None = None,
        tags: Sequence[str] = (),
        repo_digest_names: Sequence[str] = (),
        parent: str | None = None,
        extra_blobs: Sequence[str] = (),
    ) -> str:
        """Store config and manifest blobs and register the image with its tags. Returns the ID."""
        cfg = json.loads(config)
        diff_ids = cfg.get("rootfs", {}).get("diff_ids", [])
        if [layer.diff_id for layer in layer_records] != diff_ids:
            raise ImageError("image config diff_ids do not match the layers provided")
        image_id = self.content.write_bytes(config).digest
        blobs = [image_id, *extra_blobs]
        manifest_digest = None
        if manifest is not None:
            manifest_digest = self.content.write_bytes(manifest).digest
            blobs.append(manifest_digest)
        blobs += [layer.blob_digest for layer in layer_records if layer.blob_digest]
        size = sum(layer.size for layer in layer_records)
        created = cfg.get("created") or "1970-01-01T00:00:00Z"
        with db.write(self.conn) as c:
            parent_chain = None
            for layer in layer_records:
                c.execute(
                    "INSERT OR IGNORE INTO layers(chain_id, diff_id, parent, size) VALUES (?,?,?,?)",
                    (layer.chain_id, layer.diff_id, parent_chain, layer.size),
                )
                parent_chain = layer.chain_id
            exists = c.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone()
            if not exists:
                c.execute(
                    "INSERT INTO images(id, manifest_digest, manifest_media_type, created, size, parent,"
                    " added_at) VALUES (?,?,?,?,?,?,?)",
                    (image_id, manifest_digest, manifest_media_type, created, size, parent, time.time()),
                )
                c.executemany(
                    "INSERT INTO image_layers(image_id, idx, chain_id) VALUES (?,?,?)",
                    [(image_id, i, layer.chain_id) for i, layer in enumerate(layer_records)],
                )
            elif manifest_digest:
                c.execute(
                    "UPDATE images SET manifest_digest=?, manifest_media_type=? WHERE id=?",
                    (manifest_digest, manifest_media_type, image_id),
                )
            c.executemany(
                "INSERT OR IGNORE INTO image_blobs(image_id, digest) VALUES (?,?)",
                [(image_id, d) for d in blobs],
            )
            for name in tags:
                c.execute("INSERT OR REPLACE INTO tags(name, image_id) VALUES (?,?)", (name, image_id))
            for name in repo_digest_names:
                c.execute(
                    "INSERT OR REPLACE INTO repo_digests(name, image_id) VALUES (?,?)", (name, image_id)
                )
        return image_id

    # ---- reading -------------------------------------------------------------------------

    def all(self) -> list[ImageRecord]:
        rows = self.conn.execute("SELECT * FROM images ORDER BY added_at DESC").fetchall()
        return self._records(rows)

    def get(self, image_id: str) -> ImageRecord:
        rows = self.conn.execute("SELECT * FROM images WHERE id=?", (image_id,)).fetchall()
        if not rows:
            raise ImageNotFound(f"No such image: {image_id}")
        return self._records(rows)[0]

    def _records(self, rows: list[sqlite3.Row]) -> list[ImageRecord]:
        out = []
        for r in rows:
            iid = r["id"]
            chains = [
                x[0]
                for x in self.conn.execute(
                    "SELECT chain_id FROM image_layers WHERE image_id=? ORDER BY idx", (iid,)
                )
            ]
            tags = [
                x[0]
                for x in self.conn.execute("SELECT name FROM tags WHERE image_id=? ORDER BY name", (iid,))
            ]
            digests = [
                x[0]
                for x in self.conn.execute(
                    "SELECT name FROM repo_digests WHERE image_id=? ORDER BY name", (iid,)
                )
            ]
            out.append(
                ImageRecord(
                    iid, r["created"], r["size"], chains, tags, digests, r["manifest_digest"], r["parent"]
                )
            )
        return out

    def config(self, image_id: str) -> dict[str, Any]:
        cfg: dict[str, Any] = json.loads(self.content.read(image_id))
        return cfg

    def resolve(self, name: str) -> ImageRecord:
        """An image by reference (tag or digest), full ID, or unique ID prefix, as docker does."""
        image_id = self.lookup_id(name)
        if image_id is None:
            raise ImageNotFound(f"No such image: {name}")
        return self.get(image_id)

    def lookup_id(self, name: str) -> str | None:
        hexpart = name[7:] if name.startswith("sha256:") else name
        if refs.is_image_id_prefix(name):
            rows = self.conn.execute(
                "SELECT id FROM images WHERE id LIKE ?", ("sha256:" + hexpart + "%",)
            ).fetchall()
            if len(rows) == 1:
                return str(rows[0][0])
            if len(rows) > 1 and len(hexpart) < 64:
                raise ImageError(f"ambiguous image ID prefix {name!r}: matches {len(rows)} images")
        try:
            ref = refs.parse_normalized(name)
        except refs.ReferenceError:
            if refs.is_image_id_prefix(name):
                return None
            raise
        if ref.digest:
            row = self.conn.execute(
                "SELECT image_id FROM repo_digests WHERE name=?", (f"{ref.name}@{ref.digest}",)
            ).fetchone()
            if (
                row is None
                and ref.digest
                and self.conn.execute("SELECT 1 FROM images WHERE id=?", (ref.digest,)).fetchone()
            ):
                return ref.digest
            return str(row[0]) if row else None
        row = self.conn.execute("SELECT image_id FROM tags WHERE name=?", (str(ref),)).fetchone()
        return str(row[0]) if row else None

    def users(self, image_id: str) -> list[tuple[str, bool]]:
        """Containers using the image: (id, running)."""
        rows = self.conn.execute("SELECT id, state FROM containers WHERE image_id=?", (image_id,)).fetchall()
        return [(r["id"], bool(json.loads(r["state"]).get("Running"))) for r in rows]

    def children(self, image_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM images WHERE parent=?", (image_id,))]

    # ---- tags and removal ----------------------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        image_id = self.resolve(source).id
        ref = refs.parse_normalized(target)
        if ref.digest:
            raise ImageError(f"refusing to create a tag with a digest reference: {target}")
        with db.write(self.conn) as c:
            c.execute("INSERT OR REPLACE INTO tags(name, image_id) VALUES (?,?)", (str(ref), image_id))

    def remove(self, name: str, *, force: bool = False, prune_children: bool = True) -> list[str]:
        """`docker rmi NAME`: returns the lines docker prints (Untagged: …, Deleted: …)."""
        out: list[str] = []
        with store_lock(self.paths.locks, shared=False), db.write(self.conn) as c:
            image_id = self.lookup_id(name)
            if image_id is None:
                raise ImageNotFound(f"No such image: {name}")
            rec = self.get(image_id)
            by_ref = not refs.is_image_id_prefix(name) or self._is_tag(name)
            users = self.users(image_id)
            if by_ref:
                ref = refs.parse_normalized(name)
                key = f"{ref.name}@{ref.digest}" if ref.digest else str(ref)
                others = [t for t in rec.tags + rec.repo_digests if t != key]
                if not others and users and not force:
                    raise ImageConflict(
                        f'conflict: unable to remove repository reference "{name}" (must force) - '
                        f"container {users[0][0][:12]} is using its referenced image {rec.short_id}"
                    )
                table = "repo_digests" if ref.digest else "tags"
                c.execute(f"DELETE FROM {table} WHERE name=?", (key,))
                out.append(f"Untagged: {_familiar(key)}")
                if others or users:
                    return out
            else:
                running = [u for u in users if u[1]]
                if running:
                    raise ImageConflict(
                        f"conflict: unable to delete {rec.short_id} (cannot be forced) - image is being "
                        f"used by running container {running[0][0][:12]}"
                    )
                if users and not force:
                    raise ImageConflict(
                        f"conflict: unable to delete {rec.short_id} (must be forced) - image is being "
                        f"used by stopped container {users[0][0][:12]}"
                    )
                if len({_repo_of(t) for t in rec.tags}) > 1 and not force:
                    raise ImageConflict(
                        f"conflict: unable to delete {rec.short_id} (must be forced) - image is "
                        "referenced in multiple repositories"
                    )
                for t in rec.tags + rec.repo_digests:
                    out.append(f"Untagged: {_familiar(t)}")
                c.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
                c.execute("DELETE FROM repo_digests WHERE image_id=?", (image_id,))
                if users:
                    return out  # forced while a stopped container uses it: docker keeps it, untagged
            if self.children(image_id):
                return out
            c.execute("DELETE FROM images WHERE id=?", (image_id,))
            out.append(f"Deleted: {image_id}")
        self.collect_garbage()
        return out

    def _is_tag(self, name: str) -> bool:
        try:
            ref = refs.parse_normalized(name)
        except refs.ReferenceError:
            return False
        return self.conn.execute("SELECT 1 FROM tags WHERE name=?", (str(ref),)).fetchone() is not None

    def delete_untagged(self, image_id: str) -> None:
        """Drop an image nobody names any more (prune); caller checks users."""
        with store_lock(self.paths.locks, shared=False), db.write(self.conn) as c:
            c.execute(
                "DELETE FROM images WHERE id=? AND NOT EXISTS (SELECT 1 FROM tags WHERE image_id=?)",
                (image_id, image_id),
            )

    def collect_garbage(self) -> tuple[int, int]:
        """Free layers and blobs no image references. Returns (layers, bytes of blobs) freed."""
        with store_lock(self.paths.locks, shared=False):
            # Layers the build cache still needs (build_cache_layers) are kept like image layers.
            used_layers = {
                r[0][7:]
                for r in self.conn.execute(
                    "SELECT chain_id FROM image_layers UNION SELECT chain_id FROM build_cache_layers"
                )
            }
            used_blobs = {r[0] for r in self.conn.execute("SELECT DISTINCT digest FROM image_blobs")}
            with db.write(self.conn) as c:
                c.execute(
                    "DELETE FROM layers WHERE chain_id NOT IN (SELECT chain_id FROM image_layers"
                    " UNION SELECT chain_id FROM build_cache_layers)"
                )
            freed_layers = 0
            for name in os.listdir(self.paths.layers):
                if name in ("l", "empty"):
                    continue  # short links and the empty lower dir (see runtime.rootfs)
                if name not in used_layers:
                    _rmtree(self.paths.layers / name)
                    freed_layers += len(name) == 64
            links = self.paths.layers / "l"
            if links.is_dir():
                for name in os.listdir(links):
                    if not (links / name).exists():  # dangling: its layer was just freed
                        (links / name).unlink()
            freed_bytes = 0
            for digest in self.content.all_digests() - used_blobs:
                try:
                    freed_bytes += self.content.size(digest)
                except FileNotFoundError:
                    continue
                self.content.delete(digest)
            self.content.sweep_ingest(older_than=0)
            return freed_layers, freed_bytes


def _repo_of(name: str) -> str:
    return name.rsplit(":", 1)[0] if "@" not in name else name.split("@", 1)[0]


def _familiar(name: str) -> str:
    try:
        ref = refs.parse(name)
    except refs.ReferenceError:
        return name
    return ref.familiar()


def _rmtree(path: Path) -> None:
    # Layer dirs hold immutable-looking modes (e.g. 0555 dirs); root ignores them, so a plain
    # rmtree works; it is symlink-safe (it never follows links out of the tree).
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _drain(stream: BinaryIO) -> None:
    while stream.read(CHUNK):
        pass


class _TeeReader:
    """Reads from a stream and copies every byte read into a blob writer."""

    def __init__(self, stream: BinaryIO, writer: BlobWriter) -> None:
        self.stream = stream
        self.writer = writer

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        if data:
            self.writer.write(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


def config_digest_of(config: bytes) -> str:
    return sha256_digest(config)
