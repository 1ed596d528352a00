"""Image verbs: list, inspect, history, tag, remove, prune, load, save, import, bootstrap."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pallet.engine.core import Engine
from pallet.images.store import ImageRecord
from pallet.oci import reference as refs

_CONFIG_KEYS = [
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "OnBuild",
    "Labels",
    "StopSignal",
    "Shell",
]
_OMIT_EMPTY = {"ExposedPorts", "Healthcheck", "ArgsEscaped", "StopSignal", "Shell"}


@dataclass
class ImageRow:
    """One line of `images`: an image under one of its names (or <none>)."""

    record: ImageRecord
    repository: str
    tag: str
    digest: str
    containers: int


def list_images(engine: Engine, *, all_images: bool = False) -> list[ImageRow]:
    store = engine.images
    rows: list[ImageRow] = []
    parents = {
        r[0] for r in engine.conn.execute("SELECT DISTINCT parent FROM images WHERE parent IS NOT NULL")
    }
    counts = dict(
        engine.conn.execute("SELECT image_id, COUNT(*) FROM containers GROUP BY image_id").fetchall()
    )
    for rec in store.all():
        n = counts.get(rec.id, 0)
        digests = {_repo(d): d.split("@", 1)[1] for d in rec.repo_digests}
        if not rec.tags:
            if rec.id in parents and not all_images:
                continue  # an intermediate build image: shown only with -a, as docker does
            if rec.repo_digests:
                for d in rec.repo_digests:
                    ref = refs.parse(d)
                    rows.append(ImageRow(rec, ref.familiar_name, "<none>", ref.digest or "<none>", n))
            else:
                rows.append(ImageRow(rec, "<none>", "<none>", "<none>", n))
            continue
        for t in rec.tags:
            ref = refs.parse(t)
            rows.append(
                ImageRow(rec, ref.familiar_name, ref.tag or "<none>", digests.get(ref.name, "<none>"), n)
            )
    return rows


def _repo(name: str) -> str:
    return name.split("@", 1)[0]


def inspect_image(engine: Engine, name: str) -> dict[str, Any]:
    """Docker's ImageInspect JSON (API v1.45)."""
    store = engine.images
    rec = store.resolve(name)
    cfg = store.config(rec.id)
    c = cfg.get("config") or {}
    config: dict[str, Any] = {}
    for key in _CONFIG_KEYS:
        if key in _OMIT_EMPTY and not c.get(key):
            continue
        default: Any = "" if key in ("Hostname", "Domainname", "User", "Image", "WorkingDir") else None
        if key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
            default = False
        config[key] = c.get(key, default)
    layer_dirs = [str(store.layer_dir(ch)) for ch in rec.chain_ids]
    out: dict[str, Any] = {
        "Id": rec.id,
        "RepoTags": [refs.parse(t).familiar() for t in rec.tags],
        "RepoDigests": [refs.parse(d).familiar_name + "@" + d.split("@", 1)[1] for d in rec.repo_digests],
        "Parent": rec.parent or "",
        "Comment": _comment(cfg),
        "Created": cfg.get("created", rec.created),
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": config,
        "Architecture": cfg.get("architecture", ""),
        "Os": cfg.get("os", ""),
        "Size": rec.size,
        "GraphDriver": {
            "Data": {
                "LowerDir": ":".join(reversed(layer_dirs[:-1])) or None,
                "UpperDir": layer_dirs[-1] if layer_dirs else None,
            }
            if layer_dirs
            else None,
            "Name": "overlay2",
        },
        "RootFS": {"Type": "layers", "Layers": cfg.get("rootfs", {}).get("diff_ids", [])},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }
    if cfg.get("variant"):
        out["Variant"] = cfg["variant"]
    if out["GraphDriver"]["Data"] and out["GraphDriver"]["Data"]["LowerDir"] is None:
        del out["GraphDriver"]["Data"]["LowerDir"]
    return out


def _comment(cfg: dict[str, Any]) -> str:
    hist = cfg.get("history") or []
    return str(hist[-1].get("comment", "")) if hist else str(cfg.get("comment", ""))


def history(engine: Engine, name: str) -> list[dict[str, Any]]:
    """Newest first, as docker prints it. Only the top entry carries the image ID."""
    store = engine.images
    rec = store.resolve(name)
    cfg = store.config(rec.id)
    entries = cfg.get("history") or [{"created": cfg.get("created", "")}]
    diff_sizes = _layer_sizes(engine, rec)
    out: list[dict[str, Any]] = []
    layer_i = 0
    for i, h in enumerate(entries):
        size = 0
        if not h.get("empty_layer"):
            size = diff_sizes[layer_i] if layer_i < len(diff_sizes) else 0
            layer_i += 1
        out.append(
            {
                "Id": rec.id if i == len(entries) - 1 else "<missing>",
                "Created": h.get("created", ""),
                "CreatedBy": h.get("created_by", ""),
                "Size": size,
                "Comment": h.get("comment", ""),
                "Tags": [refs.parse(t).familiar() for t in rec.tags] if i == len(entries) - 1 else None,
            }
        )
    out.reverse()
    return out


def _layer_sizes(engine: Engine, rec: ImageRecord) -> list[int]:
    sizes = []
    for ch in rec.chain_ids:
        row = engine.conn.execute("SELECT size FROM layers WHERE chain_id=?", (ch,)).fetchone()
        sizes.append(int(row[0]) if row else 0)
    return sizes


def tag(engine: Engine, source: str, target: str) -> None:
    engine.images.tag(source, target)


def remove(engine: Engine, name: str, *, force: bool = False) -> list[str]:
    return engine.images.remove(name, force=force)


def prune(engine: Engine, *, all_images: bool = False) -> tuple[list[str], int]:
    """`image prune`: dangling images (or every unused one with -a). Returns lines and bytes."""
    store = engine.images
    lines: list[str] = []
    before = _disk_usage(engine)
    used = {r[0] for r in engine.conn.execute("SELECT DISTINCT image_id FROM containers")}
    changed = True
    while changed:  # removing a child can make its parent dangling
        changed = False
        for rec in store.all():
            if rec.id in used or store.children(rec.id):
                continue
            if rec.tags and not all_images:
                continue
            for t in rec.tags:
                lines.append(f"untagged: {refs.parse(t).familiar()}")
            for d in rec.repo_digests:
                lines.append(f"untagged: {refs.parse(d).familiar_name}@{d.split('@', 1)[1]}")
            _drop(engine, rec.id)
            lines.append(f"deleted: {rec.id}")
            changed = True
    store.collect_garbage()
    return lines, max(0, before - _disk_usage(engine))


def _drop(engine: Engine, image_id: str) -> None:
    from pallet.state import db
    from pallet.state.locks import store_lock

    with store_lock(engine.paths.locks, shared=False), db.write(engine.conn) as c:
        c.execute("DELETE FROM images WHERE id=?", (image_id,))


def _disk_usage(engine: Engine) -> int:
    total = 0
    for d in (engine.paths.blobs,):
        for p in d.iterdir():
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
    total += sum(int(r[0]) for r in engine.conn.execute("SELECT size FROM layers"))
    return total


def load(engine: Engine, source: BinaryIO) -> list[str]:
    from pallet.images import archive

    return archive.load(engine.images, source)


def save(engine: Engine, names: list[str], out: BinaryIO) -> None:
    from pallet.images import archive

    for n in names:
        engine.images.resolve(n)  # fail before writing anything
    archive.save(engine.images, names, out)


def import_rootfs(
    engine: Engine, source: BinaryIO, *, changes: list[str], message: str | None, tag: str | None
) -> str:
    from pallet.images import importer

    return importer.import_rootfs(engine.images, source, changes=changes, message=message, tag=tag)


def bootstrap(engine: Engine, what: str, tag: str | None, cache_dir: Path | None) -> str:
    from pallet.errors import InvalidArgument
    from pallet.images import bootstrap as boot

    ref = refs.parse_normalized(what)
    base = ref.path.rsplit("/", 1)[-1]
    if base == "busybox":
        return boot.bootstrap_busybox(engine.images, tag=tag or what)
    if base == "debian":
        kwargs: dict[str, Any] = {"cache_dir": cache_dir} if cache_dir else {}
        return boot.bootstrap_debian(engine.images, suite=ref.tag or "bookworm", tag=tag or what, **kwargs)
    raise InvalidArgument(f"cannot bootstrap {what!r}: known bases are busybox and debian[:SUITE]")


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=4)
