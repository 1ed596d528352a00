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

from pallet.state import containers as records
from pallet.state.paths import StatePaths


def release(paths: StatePaths, conn: sqlite3.Connection, cid: str, *, remove_anonymous: bool = False) -> None:
    from pallet.engine import container_network

    rec = records.get(conn, cid)
    try:
        container_network.release(paths, conn, cid)
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
