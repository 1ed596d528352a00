"""What a container gives back once it has stopped for good: its network (ports, endpoints,
addresses, veth pairs, namespace) and the mounts of its volumes; on removal (`rm -v`, --rm) its
anonymous volumes too.

Called from the monitor's exit path (in a forked child, so these imports never load into the
long-lived monitor), by `rm`, after a failed start, and when a dead monitor is discovered. Every step
is idempotent, and a failing step never stops the others nor the caller's own bookkeeping.
"""

from __future__ import annotations

import errno
import os
import sys

from pallet.state import containers as records

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    import sqlite3
    from typing import Any

    from pallet.state.containers import ContainerRecord
    from pallet.state.paths import StatePaths

NETNS_DIR = "netns"  # under the runroot, as network/netns.py pins namespaces (not imported: threading)


def release(paths: StatePaths, conn: sqlite3.Connection, cid: str, *, remove_anonymous: bool = False) -> None:
    rec = records.get(conn, cid)
    _release_network(paths, conn, cid)
    if rec is not None and rec.config.get("MountPlan"):
        _release_volumes(paths, conn, rec, remove_anonymous)


def _release_network(paths: StatePaths, conn: sqlite3.Connection, cid: str) -> None:
    from pallet.engine import network_release

    try:
        network_release.release(paths, conn, cid)
    except Exception as e:  # noqa: BLE001 - reported; the rest must still happen
        print(f"pallet: releasing the network of {cid[:12]}: {e}", file=sys.stderr)


def _release_volumes(paths: StatePaths, conn: sqlite3.Connection, rec: ContainerRecord, remove: bool) -> None:
    from pallet.engine import container_mounts

    try:
        container_mounts.release(paths, conn, rec.id)
        if remove:
            names = container_mounts.anonymous_volumes(rec)
            container_mounts.remove_volumes(paths, conn, names, except_user=rec.id)
    except Exception as e:  # noqa: BLE001
        print(f"pallet: releasing the volumes of {rec.id[:12]}: {e}", file=sys.stderr)


def release_after_exit(
    root: str,
    runroot: str,
    conn: sqlite3.Connection,
    cid: str,
    rec: ContainerRecord | None,
    *,
    remove_anonymous: bool = False,
) -> dict[str, Any] | None:
    """`release` for the monitor's exit path, where every millisecond is in `run --rm`'s latency:
    `rec` is the record as the caller read it. The network and volume modules load only for a
    container that has bridge networks or volumes; none, host and container: modes take a few
    lines here. Returns the config keys the caller's exit record must merge (the namespace's
    NetworkSettings), so that the record is written in one transaction; None if nothing."""
    if rec is None or rec.config.get("MountPlan"):  # None: removed under us (rm -f)
        release(_paths(root, runroot), conn, cid, remove_anonymous=remove_anonymous)
        return None
    mode = str(rec.config["HostConfig"].get("NetworkMode") or "")
    if mode == "host" or mode.startswith("container:"):
        return None
    if mode != "none":
        _release_network(_paths(root, runroot), conn, cid)
        return None
    try:
        _unpin_netns(os.path.join(runroot, NETNS_DIR, cid))
    except OSError as e:
        print(f"pallet: releasing the namespace of {cid[:12]}: {e}", file=sys.stderr)
    if (rec.config.get("NetworkSettings") or {}).get("SandboxKey"):
        return {"NetworkSettings": {}}
    return None


def _unpin_netns(path: str) -> None:
    """network/netns.delete: detach the pin (the namespace goes with its last user), remove it."""
    from pallet.runtime import linux

    try:
        linux.umount2(path, linux.MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _paths(root: str, runroot: str) -> StatePaths:
    from pathlib import Path

    from pallet.state.paths import StatePaths

    return StatePaths(Path(root), Path(runroot))
