"""`commit`: a container's changes become one more layer on its image, with the container's
config (docker's commit semantics: its Cmd, Entrypoint, Env, ... after `--change` lines).

The layer holds exactly the changes `diff` reports, as docker's naive-diff overlay driver exports
them: added and changed entries as they are in the upper dir, deletions as OCI whiteouts (`.wh.`).
"""

from __future__ import annotations

import copy
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pallet.engine import rootpath, treetar
from pallet.engine.core import Engine
from pallet.engine.rwlayer import Change
from pallet.errors import PalletError
from pallet.images.store import LayerRecord
from pallet.state.containers import ContainerRecord


class CommitError(PalletError):
    pass


def commit(
    engine: Engine,
    rec: ContainerRecord,
    *,
    reference: str | None,
    changes: list[str],
    message: str,
    author: str,
    pause: bool,
) -> str:
    from pallet.engine import rwlayer
    from pallet.images.config import apply_changes, rfc3339, serialize
    from pallet.oci import mediatypes as mt

    tags = _tags(reference)
    runtime = copy.deepcopy(rec.config["Config"])
    apply_changes(runtime, changes)  # bad --change lines fail before any work
    store = engine.images
    if not rec.image_id:
        raise CommitError(f"container {rec.short_id} has no image to commit on")
    image = store.get(rec.image_id)
    base = store.config(image.id)
    upper = engine.paths.container_dir(rec.id) / "upper"
    fd, tmp = tempfile.mkstemp(prefix="commit-", suffix=".tar", dir=engine.paths.tmp)
    try:
        with _paused(engine, rec, pause), os.fdopen(fd, "wb") as out:
            found = rwlayer.changes(upper, [store.layer_dir(c) for c in image.chain_ids])
            treetar.write_tar(_layer_entries(upper, found), out)
        created = rfc3339()
        with store.writing():
            layers = _base_layers(engine, image.chain_ids, base)
            new_layer = None
            if found:
                with open(tmp, "rb") as layer_tar:
                    new_layer = store.ingest_layer(
                        layer_tar,
                        image.chain_ids[-1] if image.chain_ids else None,
                        keep_blob=True,
                        media_type=mt.OCI_LAYER,
                    )
                layers.append(new_layer)
            raw = serialize(_config(base, rec, runtime, created, author, message, new_layer))
            manifest = _manifest(engine, image.manifest_digest, raw, layers, new_layer)
            return store.add_image(
                raw,
                layers,
                manifest=manifest,
                manifest_media_type=mt.OCI_MANIFEST,
                tags=tags,
                parent=image.id,
            )
    finally:
        os.unlink(tmp)


@contextmanager
def _paused(engine: Engine, rec: ContainerRecord, pause: bool) -> Iterator[None]:
    """docker commit --pause (the default): a running container is frozen while its changes are
    read, so that the layer is one consistent moment; one already paused stays paused."""
    from pallet.engine.lifecycle import refresh

    current = refresh(engine, rec)
    if not pause or not current.state.get("Running") or current.state.get("Paused"):
        yield
        return
    from pallet.engine import pause as pausing

    pausing.pause(engine, rec.id)
    try:
        yield
    finally:
        pausing.unpause(engine, rec.id)


def _tags(reference: str | None) -> list[str]:
    from pallet.oci import reference as refs

    if not reference:
        return []
    try:
        ref = refs.parse_normalized(reference)
    except refs.ReferenceError as e:
        raise CommitError(str(e)) from None
    if ref.digest:
        raise CommitError("refusing to create a tag with a digest reference")
    return [str(ref)]


def _layer_entries(upper: Path, changes: list[Change]) -> Iterator[treetar.Entry]:
    """Entries of the changes, read through the upper dir's fd: a running container that swaps a
    directory for a symlink meanwhile cannot make us archive a host file (resolved in-root)."""
    if not changes:
        return  # a never-started container may have no upper dir at all
    reader = treetar.TreeReader(treetar.layer_xattrs)
    now = int(time.time())
    upper_fd = os.open(upper, rootpath.DIR_FLAGS)
    try:
        for change in changes:
            name = change.path.lstrip("/")
            if change.kind == "D":
                head, _, base = name.rpartition("/")
                info = tarfile.TarInfo((head + "/" if head else "") + ".wh." + base)
                info.mtime = now
                info.mode = 0
                yield treetar.Entry(info)
                continue
            loc = rootpath.resolve(upper_fd, change.path, follow_last=False)
            try:
                st = loc.lstat()
                entry = reader.entry(loc.dir_fd, loc.name, name, st) if st is not None else None
                if entry is not None:
                    yield entry  # the consumer reads the file before resuming us: the fd is still open
            finally:
                loc.close()
    finally:
        os.close(upper_fd)


def _base_layers(engine: Engine, chain_ids: list[str], base: dict[str, Any]) -> list[LayerRecord]:
    diff_ids = list((base.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(chain_ids):
        raise CommitError("the container's image config does not match its layers")
    records = []
    for chain, diff_id in zip(chain_ids, diff_ids, strict=True):
        row = engine.conn.execute("SELECT size FROM layers WHERE chain_id=?", (chain,)).fetchone()
        records.append(LayerRecord(chain, diff_id, int(row[0]) if row else 0))
    return records


def _config(
    base: dict[str, Any],
    rec: ContainerRecord,
    runtime: dict[str, Any],
    created: str,
    author: str,
    message: str,
    layer: LayerRecord | None,
) -> dict[str, Any]:
    """image.NewChildImage: the base image's platform and history, the container's config."""
    history: dict[str, Any] = {"created": created}
    if author:
        history["author"] = author
    history["created_by"] = " ".join(rec.config["Config"].get("Cmd") or [])
    if message:
        history["comment"] = message
    if layer is None:
        history["empty_layer"] = True
    diff_ids = list((base.get("rootfs") or {}).get("diff_ids") or [])
    config: dict[str, Any] = {
        "architecture": base.get("architecture") or "amd64",
        "config": runtime,
        "container": rec.id,
        "container_config": rec.config["Config"],
        "created": created,
        "history": list(base.get("history") or []) + [history],
        "os": base.get("os") or "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids + ([layer.diff_id] if layer else [])},
    }
    if author:
        config["author"] = author
    for key in ("variant", "os.version", "os.features"):
        if base.get(key):
            config[key] = base[key]
    return config


def _manifest(
    engine: Engine,
    base_manifest: str | None,
    config: bytes,
    layers: list[LayerRecord],
    new_layer: LayerRecord | None,
) -> bytes | None:
    """An OCI manifest when every layer's blob is known (the base's from its manifest; their
    records then name those blobs, which keeps them alive with this image too). Else none: `save`
    regenerates the blobs it needs from the layer directories."""
    from pallet.images.config import manifest_for

    content = engine.images.content
    base = layers[:-1] if new_layer is not None else layers
    described: list[tuple[str, str, int]] = []
    if base_manifest and content.has(base_manifest):
        try:
            described = [
                (d["mediaType"], d["digest"], int(d["size"]))
                for d in json.loads(content.read(base_manifest)).get("layers") or []
            ]
        except (ValueError, KeyError, TypeError):
            return None
    if len(described) != len(base):
        return None
    for record, (_, digest, size) in zip(base, described, strict=True):
        record.blob_digest, record.blob_size = digest, size
    if new_layer is not None:
        described.append((new_layer.media_type, new_layer.blob_digest or "", new_layer.blob_size))
    return manifest_for(config, described)
