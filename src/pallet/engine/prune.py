"""container prune: remove every stopped container (optionally only those matching filters),
reporting the ids and the space their writable layers took."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pallet.engine.core import Engine
from pallet.errors import PalletError
from pallet.state import containers as records


def prune_containers(
    engine: Engine,
    *,
    until: float | None = None,
    labels_match: Callable[[dict[str, str]], bool] | None = None,
) -> tuple[list[str], int]:
    """Returns (deleted ids, bytes reclaimed). `until`: only containers created before that
    (unix seconds); `labels_match`: a predicate on Config.Labels."""
    from pallet.engine.lifecycle import refresh, remove

    deleted: list[str] = []
    reclaimed = 0
    for rec in records.all_records(engine.conn):
        rec = refresh(engine, rec)
        if rec.state.get("Running"):
            continue
        if until is not None and _epoch(rec.created) > until:
            continue
        if labels_match is not None and not labels_match(rec.config["Config"].get("Labels") or {}):
            continue
        size = layer_size(str(engine.paths.container_dir(rec.id) / "upper"))
        try:
            remove(engine, rec.id)
        except PalletError as e:
            import sys

            print(f"pallet: warning: failed to prune container {rec.id}: {e}", file=sys.stderr)
            continue
        deleted.append(rec.id)
        reclaimed += size
    return deleted, reclaimed


def layer_size(path: str) -> int:
    """docker's directory.Size: the sizes of everything but directories, hard links once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if st.st_nlink > 1:
                key: Any = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_size
    return total


def _epoch(rfc3339: str) -> float:
    """Unix seconds of a record's RFC 3339 time (fraction cut to microseconds)."""
    from datetime import datetime

    head, _, rest = rfc3339.rstrip("Z").partition(".")
    micro = (rest[:6] or "0").ljust(6, "0")
    return datetime.fromisoformat(f"{head}.{micro}+00:00").timestamp()
