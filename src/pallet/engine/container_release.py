"""What a container gives back once it has stopped for good: its network (ports, endpoints,
addresses, veth pairs, namespace) and the mounts of its volumes; on removal (`rm -v`, --rm) its
anonymous volumes too.

Called from the monitor's exit path (in a forked child, so these imports never load into the
long-lived monitor), by `rm`, after a failed start, and when a dead monitor is discovered. Every step
is idempotent, and a failing step never stops the others nor the caller's own bookkeeping.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pallet.state import containers as records

if TYPE_CHECKING:
    from pallet.state.paths import StatePaths


def release(paths: StatePaths, conn: sqlite3.Connection, cid: str, *, remove_anonymous: bool = False) -> None:
    from pallet.engine import network_release

    rec = records.get(conn, cid)
    try:
        network_release.release(paths, conn, cid)
    except Exception as e:  # noqa: BLE001 - reported; the rest must still happen
        print(f"pallet: releasing the network of {cid[:12]}: {e}", file=sys.stderr)
    if rec is None or not rec.config.get("MountPlan"):
        return
    from pallet.engine import container_mounts

    try:
        container_mounts.release(paths, conn, cid)
        if remove_anonymous:
            names = container_mounts.anonymous_volumes(rec)
            container_mounts.remove_volumes(paths, conn, names, except_user=cid)
    except Exception as e:  # noqa: BLE001
        print(f"pallet: releasing the volumes of {cid[:12]}: {e}", file=sys.stderr)


def release_after_exit(
    root: str, runroot: str, conn: sqlite3.Connection, cid: str, *, remove_anonymous: bool = False
) -> None:
    """`release` for the monitor's exit path, where every millisecond is in `run --rm`'s latency:
    a container with neither volumes nor bridge networks (none, host, container: modes) is done
    with a few lines here, without loading the network and volume modules."""
    rec = records.get(conn, cid)
    if rec is not None and not rec.config.get("MountPlan"):
        mode = str(rec.config["HostConfig"].get("NetworkMode") or "")
        if mode == "host" or mode.startswith("container:"):
            return
        if mode == "none":
            from pallet.network import netns

            try:
                netns.delete(netns.netns_path(Path(runroot), cid))
            except OSError as e:
                print(f"pallet: releasing the namespace of {cid[:12]}: {e}", file=sys.stderr)
            if (rec.config.get("NetworkSettings") or {}).get("SandboxKey"):
                records.update(conn, cid, top={"NetworkSettings": {}})
            return
    from pallet.state.paths import StatePaths

    release(StatePaths(Path(root), Path(runroot)), conn, cid, remove_anonymous=remove_anonymous)
