"""Volume verbs: create, list, inspect, remove, prune."""

from __future__ import annotations

from typing import Any

from pallet.engine.core import Engine
from pallet.volumes import local
from pallet.volumes import store as volumes
from pallet.volumes.store import VolumeRecord


def create(
    engine: Engine,
    name: str | None,
    *,
    driver: str = "local",
    labels: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
) -> VolumeRecord:
    rec = volumes.new_record(name, driver or "local", labels or {}, options or {})
    if not volumes.insert(engine.conn, rec):
        return volumes.get(engine.conn, rec.name)  # docker: creating an existing volume returns it
    try:
        local.create_dirs(engine.paths.volumes, rec)
    except BaseException:
        volumes.delete(engine.conn, rec.name)
        raise
    return rec


def inspect(engine: Engine, name: str) -> dict[str, Any]:
    return volumes.get(engine.conn, name).to_docker(engine.paths.volumes)


def list_volumes(engine: Engine, filters: dict[str, list[str]]) -> list[VolumeRecord]:
    from pallet.engine.filters import match_bool, match_label

    out = []
    for rec in volumes.all_volumes(engine.conn):
        if "dangling" in filters:
            dangling = not volumes.users(engine.conn, rec.name)
            if dangling != match_bool(filters["dangling"][-1]):
                continue
        if "name" in filters and not any(n in rec.name for n in filters["name"]):
            continue
        if "label" in filters and not all(match_label(rec.labels, e) for e in filters["label"]):
            continue
        if "driver" in filters and rec.driver not in filters["driver"]:
            continue
        out.append(rec)
    return out


def remove(engine: Engine, name: str, *, force: bool = False) -> None:
    """`volume rm`: refused while a container uses the volume; with -f only while a running one does
    (a stopped container that mounted it gets a fresh, empty one at its next start)."""
    from pallet.errors import Conflict, NotFound

    try:
        rec = volumes.get(engine.conn, name)
    except NotFound:
        if force:
            return
        raise
    if force:
        from pallet.state import containers as records

        found = [records.get(engine.conn, cid) for cid in volumes.users(engine.conn, name)]
        running = [r.id for r in found if r is not None and r.state.get("Running")]
        if running:
            raise Conflict(f"remove {name}: volume is in use by a running container - [{', '.join(running)}]")
    volumes.delete(engine.conn, name, force=force)
    local.remove(engine.paths.volumes, rec)


def prune(engine: Engine, *, all_volumes: bool, filters: dict[str, list[str]]) -> tuple[list[str], int]:
    """Unused anonymous volumes (or every unused one with -a). Returns names and bytes freed."""
    from pallet.engine.filters import match_label

    removed: list[str] = []
    freed = 0
    for rec in volumes.all_volumes(engine.conn):
        if volumes.users(engine.conn, rec.name) or not (rec.anonymous or all_volumes):
            continue
        if "label" in filters and not all(match_label(rec.labels, e) for e in filters["label"]):
            continue
        freed += dir_size(rec.mountpoint(engine.paths.volumes))
        remove(engine, rec.name)
        removed.append(rec.name)
    return removed, freed


def dir_size(path: Any) -> int:
    import os

    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total
