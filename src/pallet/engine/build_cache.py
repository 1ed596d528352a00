"""The build cache as a whole: its size (for `system df`) and `builder prune`.

Records are in the state database (build/cache.py); the layers they keep alive are ordinary layer
directories, freed by the image store's garbage collection once no record and no image names them.
RUN cache mounts (`--mount=type=cache`) are directories under <root>/build-cache/mounts and count
as build cache too; `prune -a` removes them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pallet.engine.core import Engine

__all__ = ["prune", "usage"]


def _mounts_dir(engine: Engine) -> Path:
    return engine.paths.root / "build-cache" / "mounts"


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _cache_mounts(engine: Engine) -> list[Path]:
    base = _mounts_dir(engine)
    if not base.is_dir():
        return []
    return [base / n for n in sorted(os.listdir(base)) if (base / n).is_dir()]


def usage(engine: Engine) -> tuple[int, int, int]:
    """(records, bytes, reclaimable bytes): what `system df` shows on its Build Cache line."""
    from pallet.build.cache import CacheStore

    cache = CacheStore(engine.conn)
    records = cache.all()
    used = cache.in_use_by_images()
    size = sum(r.size for r in records)
    reclaimable = sum(r.size for r in records if r.chain_id not in used)
    mounts = _cache_mounts(engine)
    mounts_size = sum(_dir_size(m) for m in mounts)
    return len(records) + len(mounts), size + mounts_size, reclaimable + mounts_size


def prune(engine: Engine, *, all_records: bool = False, until: float | None = None,
          keep_storage: int = 0) -> tuple[list[str], int]:
    """Delete build cache records (and with all_records, the cache mounts); returns (the deleted
    records' IDs, bytes freed). Without all_records only dangling records go: those whose layer
    no image uses. `until`: only records last used before then. `keep_storage`: stop once the
    cache is that small (oldest first)."""
    from pallet.build.cache import CacheStore
    from pallet.state import db

    cache = CacheStore(engine.conn)
    records = cache.all()  # least recently used first
    used = cache.in_use_by_images()
    candidates = [r for r in records if all_records or r.chain_id not in used]
    if until is not None:
        candidates = [r for r in candidates if r.last_used < until]
    total = sum(r.size for r in records)
    chosen = []
    for r in candidates:
        if keep_storage and total <= keep_storage:
            break
        chosen.append(r)
        total -= r.size
    cache.delete(r.key for r in chosen)
    with db.write(engine.conn) as c:
        c.execute("DELETE FROM build_memo")  # replays name records that may be gone: rebuild them
    remaining = {r.chain_id for r in records} - {r.chain_id for r in chosen}
    reclaimed = sum(r.size for r in chosen if r.chain_id not in used and r.chain_id not in remaining)
    ids = [r.key[7:32] for r in chosen]
    if all_records and until is None and not keep_storage:
        for path in _cache_mounts(engine):
            reclaimed += _dir_size(path)
            ids.append("mount-" + path.name[:19])
            shutil.rmtree(path, ignore_errors=True)
    if chosen:
        engine.images.collect_garbage()
    return ids, reclaimed
