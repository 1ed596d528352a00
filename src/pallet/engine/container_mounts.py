"""A container's volumes, binds and tmpfs mounts, as dockerd handles them:

- create: -v / --mount / --volumes-from / image VOLUMEs are checked and resolved into a mount plan;
  named volumes are created on first use, anonymous ones get random names. The record keeps the plan
  (MountPlan) and docker's MountPoint view of it (Mounts: what inspect shows, and what `volume rm`
  and `volume ls --filter dangling` consult through volumes.store.users).
- start: each volume is mounted (tmpfs/bind-option volumes) and filled from the image on first use
  (unless volume-nocopy), a -v bind source is made if missing, and the OCI mounts are returned.
- exit: volumes with a filesystem of their own are unmounted once no running container uses them.
- removal: `rm -v` (and --rm) removes the anonymous volumes nothing else uses.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pallet.engine.core import Engine
from pallet.errors import InvalidArgument, NotFound
from pallet.state.containers import ContainerRecord
from pallet.state.paths import StatePaths
from pallet.volumes import store

_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_TMPFS_DEFAULTS = ["noexec", "nosuid", "nodev"]


def _error(kind: str, reason: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{kind}": {reason}')


def _destination(kind: str, path: str) -> str:
    if not path.startswith("/"):
        raise _error(kind, f"invalid mount path: '{path}' mount path must be absolute")
    clean = os.path.normpath(path)
    if clean == "/":
        raise _error(kind, "invalid specification: destination can't be '/'")
    return clean


# ---- create ---------------------------------------------------------------------------------------


class Plan:
    """The mounts of one container being created, keyed by destination, and the volumes to make."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self.new_volumes: dict[str, store.VolumeRecord] = {}

    def add(self, entry: dict[str, Any], *, explicit: bool) -> None:
        dest = entry["Destination"]
        if explicit and dest in self.entries and self.entries[dest].get("Explicit"):
            raise InvalidArgument(f"Duplicate mount point: {dest}")
        self.entries[dest] = {**entry, "Explicit": explicit}

    def volume(
        self,
        name: str | None,
        *,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        conn: sqlite3.Connection,
    ) -> str:
        """The name of the volume to mount: an existing one, or one to create (None: anonymous)."""
        if name is not None:
            store.validate_name(name)
            if name in self.new_volumes or store.find(conn, name) is not None:
                return name
        rec = store.new_record(name, "local", dict(labels or {}), dict(options or {}))
        self.new_volumes[rec.name] = rec
        return rec.name


def plan(
    engine: Engine, config: dict[str, Any], hc: dict[str, Any], lookup: Callable[[str], ContainerRecord]
) -> tuple[list[dict[str, Any]], Plan]:
    """Check every mount of a create request; returns (MountPlan entries, the plan with the volumes
    still to be created). Nothing is created here."""
    p = Plan()
    conn = engine.conn
    for spec in hc.get("VolumesFrom") or []:
        ref, _, mode = spec.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid mode: {mode}")
        other = lookup(ref)
        for entry in other.config.get("MountPlan") or []:
            copied = {k: v for k, v in entry.items() if k != "Explicit"}
            if mode:
                copied["ReadOnly"] = mode == "ro"
            p.add(copied, explicit=False)
    for spec in hc.get("Binds") or []:
        p.add(_bind_spec(spec, p, conn), explicit=True)
    for m in hc.get("Mounts") or []:
        p.add(_mount_spec(m, p, conn), explicit=True)
    tmpfs = {os.path.normpath(d) for d in hc.get("Tmpfs") or {}}
    for dest in config.get("Volumes") or {}:
        clean = _destination("volume", dest)
        if clean in p.entries or clean in tmpfs:
            continue
        name = p.volume(None, conn=conn)
        p.add(_volume_entry(name, clean, read_only=False, mode="", anonymous=True), explicit=False)
    return [{k: v for k, v in e.items() if k != "Explicit"} for e in p.entries.values()], p


def _volume_entry(
    name: str, dest: str, *, read_only: bool, mode: str, nocopy: bool = False, anonymous: bool = False
) -> dict[str, Any]:
    return {
        "Type": "volume",
        "Source": name,
        "Destination": dest,
        "ReadOnly": read_only,
        "Mode": mode,
        "NoCopy": nocopy,
        "Anonymous": anonymous,
    }


def _bind_spec(spec: str, p: Plan, conn: sqlite3.Connection) -> dict[str, Any]:
    """One HostConfig.Binds entry, `SRC:DEST[:MODE]` (docker's -v with a source)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    src, dest = parts[0], parts[1]
    modes = [m for m in (parts[2].split(",") if len(parts) == 3 else []) if m]
    read_only = "ro" in modes
    propagation = next((m for m in modes if m in _PROPAGATIONS), "")
    if src.startswith("/"):
        return {
            "Type": "bind",
            "Source": os.path.normpath(src),
            "Destination": _destination("bind", dest),
            "ReadOnly": read_only,
            "Mode": ",".join(modes),
            "Propagation": propagation or "rprivate",
            "CreateSource": True,
        }
    name = p.volume(src, conn=conn)
    mode = ",".join(modes) if modes else "z"
    return _volume_entry(
        name, _destination("volume", dest), read_only=read_only, mode=mode, nocopy="nocopy" in modes
    )


def _mount_spec(m: dict[str, Any], p: Plan, conn: sqlite3.Connection) -> dict[str, Any]:
    """One HostConfig.Mounts entry (--mount)."""
    kind = m.get("Type") or "volume"
    source = m.get("Source") or ""
    dest = _destination(kind, m.get("Target") or "")
    read_only = bool(m.get("ReadOnly"))
    if kind == "bind":
        if not source:
            raise _error(kind, "field Source must not be empty")
        if not source.startswith("/"):
            raise _error(kind, f"invalid mount path: '{source}' mount path must be absolute")
        if not os.path.exists(source):
            raise _error(kind, f"bind source path does not exist: {source}")
        propagation = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
        return {
            "Type": "bind",
            "Source": os.path.normpath(source),
            "Destination": dest,
            "ReadOnly": read_only,
            "Mode": "",
            "Propagation": propagation,
            "CreateSource": False,
        }
    if kind == "volume":
        opts = m.get("VolumeOptions") or {}
        driver_cfg = opts.get("DriverConfig") or {}
        if (driver_cfg.get("Name") or "local") != "local":
            raise NotFound(
                f'plugin "{driver_cfg.get("Name")}" not found: only the local volume driver is available'
            )
        labels, options = opts.get("Labels") or {}, driver_cfg.get("Options") or {}
        name = p.volume(source or None, labels=labels, options=options, conn=conn)
        return _volume_entry(
            name, dest, read_only=read_only, mode="z", nocopy=bool(opts.get("NoCopy")), anonymous=not source
        )
    if kind == "tmpfs":
        if source:
            raise _error(kind, "field Source must be empty")
        t = m.get("TmpfsOptions") or {}
        return {
            "Type": "tmpfs",
            "Source": "",
            "Destination": dest,
            "ReadOnly": read_only,
            "Mode": "",
            "SizeBytes": int(t.get("SizeBytes") or 0),
            "FileMode": int(t.get("Mode") or 0),
        }
    raise InvalidArgument(f"mount type {kind!r} is not supported by pallet")


def mount_points(paths: StatePaths, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """docker's MountPoint list (inspect's Mounts) for the plan."""
    out = []
    for e in entries:
        rw = not e.get("ReadOnly")
        if e["Type"] == "volume":
            source = str(paths.volumes / e["Source"] / "_data")
            out.append(
                {
                    "Type": "volume",
                    "Name": e["Source"],
                    "Source": source,
                    "Destination": e["Destination"],
                    "Driver": "local",
                    "Mode": e.get("Mode", ""),
                    "RW": rw,
                    "Propagation": "",
                }
            )
        elif e["Type"] == "bind":
            out.append(
                {
                    "Type": "bind",
                    "Source": e["Source"],
                    "Destination": e["Destination"],
                    "Mode": e.get("Mode", ""),
                    "RW": rw,
                    "Propagation": e.get("Propagation", "rprivate"),
                }
            )
        else:
            out.append(
                {
                    "Type": e["Type"],
                    "Source": "",
                    "Destination": e["Destination"],
                    "Mode": "",
                    "RW": rw,
                    "Propagation": "",
                }
            )
    return out


def create_volumes(engine: Engine, p: Plan) -> list[str]:
    """Create the plan's new volumes; returns their names (for a rollback with remove_volumes)."""
    from pallet.volumes import local

    made: list[str] = []
    try:
        for rec in p.new_volumes.values():
            if store.insert(engine.conn, rec):
                made.append(rec.name)
                local.create_dirs(engine.paths.volumes, rec)
    except BaseException:
        remove_volumes(engine.paths, engine.conn, made)
        raise
    return made


def remove_volumes(
    paths: StatePaths, conn: sqlite3.Connection, names: list[str], *, except_user: str = ""
) -> None:
    """Remove these volumes unless a container (other than `except_user`) still uses them."""
    from pallet.state import db
    from pallet.volumes import local

    for name in names:
        with db.write(conn):
            rec = store.find(conn, name)
            if rec is None or set(store.users(conn, name)) - {except_user}:
                continue
            conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
        local.remove(paths.volumes, rec)


# ---- start ----------------------------------------------------------------------------------------


def oci_mounts(engine: Engine, rec: ContainerRecord, rootfs: Path) -> list[dict[str, Any]]:
    """The container's volume, bind and tmpfs mounts for config.json; volumes are mounted and filled
    from the image on first use. The rootfs must be mounted (it is the copy-up source)."""
    out = []
    for e in rec.config.get("MountPlan") or []:
        ro = ["ro"] if e.get("ReadOnly") else []
        if e["Type"] == "volume":
            data = _volume_data(engine, e, rootfs)
            out.append(
                {
                    "destination": e["Destination"],
                    "type": "bind",
                    "source": str(data),
                    "options": ["rbind", "rprivate", *ro],
                }
            )
        elif e["Type"] == "bind":
            source = Path(e["Source"])
            if not source.exists():
                if not e.get("CreateSource"):
                    raise _error("bind", f"bind source path does not exist: {source}")
                source.mkdir(mode=0o755, parents=True, exist_ok=True)  # docker makes -v sources
            out.append(
                {
                    "destination": e["Destination"],
                    "type": "bind",
                    "source": str(source),
                    "options": ["rbind", e.get("Propagation") or "rprivate", *ro],
                }
            )
        else:
            opts = [*_TMPFS_DEFAULTS, *ro]
            if e.get("SizeBytes"):
                opts.append(f"size={e['SizeBytes']}")
            if e.get("FileMode"):
                opts.append(f"mode={e['FileMode']:o}")
            out.append({"destination": e["Destination"], "type": "tmpfs", "source": "tmpfs", "options": opts})
    return out


def _volume_data(engine: Engine, e: dict[str, Any], rootfs: Path) -> Path:
    from pallet.volumes import local

    vrec = store.find(engine.conn, e["Source"])
    if vrec is None:  # removed with `volume rm -f` while this container was stopped: docker re-creates it
        from pallet.engine import volumes as verbs

        vrec = verbs.create(engine, e["Source"])
    data = local.mount(engine.paths.volumes, vrec)
    if not e.get("NoCopy") and local.is_empty(data):
        source = _in_rootfs(rootfs, e["Destination"])
        if source is not None:
            local.copy_up(source, data)
    return data


def _in_rootfs(rootfs: Path, dest: str) -> Path | None:
    """The directory the image has at dest, resolved inside the rootfs (its symlinks cannot lead out)."""
    from pallet.engine import rootpath

    root_fd = os.open(rootfs, rootpath.DIR_FLAGS)
    try:
        try:
            loc = rootpath.resolve(root_fd, dest, follow_last=True)
        except OSError:
            return None
        try:
            if loc.name:
                return None  # missing, or not a directory: nothing to copy
            return Path(os.path.join(str(rootfs), loc.dir_path.lstrip("/")))
        finally:
            loc.close()
    finally:
        os.close(root_fd)


# ---- exit and removal -----------------------------------------------------------------------------


def release(paths: StatePaths, conn: sqlite3.Connection, cid: str) -> None:
    """After the container stopped: unmount its volumes that have a filesystem of their own (tmpfs,
    bind options) when no running container uses them any more."""
    from pallet.state import containers as records

    rec = records.get(conn, cid)
    if rec is None:
        return
    names = [e["Source"] for e in rec.config.get("MountPlan") or [] if e["Type"] == "volume"]
    for name in names:
        vrec = store.find(conn, name)
        if vrec is None or not vrec.options.get("type"):
            continue
        running = [u for u in store.users(conn, name) if u != cid and _running(conn, u)]
        if not running:
            from pallet.volumes import local

            local.unmount(paths.volumes, vrec)


def _running(conn: sqlite3.Connection, cid: str) -> bool:
    from pallet.state import containers as records

    rec = records.get(conn, cid)
    return bool(rec and rec.state.get("Running"))


def anonymous_volumes(rec: ContainerRecord) -> list[str]:
    """The anonymous volumes the container mounts (what `rm -v` and --rm remove)."""
    return [
        e["Source"] for e in rec.config.get("MountPlan") or [] if e["Type"] == "volume" and e.get("Anonymous")
    ]
