"""The build cache: content-addressed keys for filesystem steps, and their records in the database.

A step's key is a sha256 over the key of the filesystem it runs on and everything that decides
its result: the expanded instruction, the environment, user and directory a RUN sees, the
content hash of the files a COPY/ADD selects (build/context.py: contents, modes and owners, never
mtimes), the key of a stage it copies from. Metadata-only instructions (ENV, LABEL, CMD, …) make
no layer and have no key of their own: changing a LABEL does not rebuild the RUN after it, as in
BuildKit; when they matter to a later step (ENV, USER, WORKDIR, SHELL) they are part of that
step's key.

A record maps a key to the layer the step made (chain ID on its parent's chain, diff ID, size)
and to the time the layer was made, which becomes its history time: a fully cached rebuild
therefore reproduces the same image config, hence the same image ID, as BuildKit does.
`build_cache_layers` lists the whole chain a record needs, so image garbage collection keeps
those layers while the record lives (images/store.py collect_garbage).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pallet.state import db

__all__ = ["CacheRecord", "CacheStore", "step_key"]


def step_key(kind: str, parent: str, *parts: object) -> str:
    """`sha256:<hex>` over the parent key and the step's canonical description (JSON)."""
    payload = json.dumps([kind, parent, *parts], separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(payload.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class CacheRecord:
    key: str
    parent: str
    description: str
    chain_id: str
    diff_id: str
    size: int
    created: str  # RFC 3339
    last_used: float = 0.0
    usage_count: int = 1


class CacheStore:
    """Records of built steps. Stages build in threads that share one connection: `lock` keeps each
    statement or transaction of one thread from interleaving with another's."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock | None = None) -> None:
        self.conn = conn
        self.lock = lock or threading.RLock()
        self._used: list[str] = []

    def lookup(self, key: str) -> CacheRecord | None:
        with self.lock:
            row = self.conn.execute(
                "SELECT key, parent, description, chain_id, diff_id, size, created, last_used, usage_count"
                " FROM build_cache WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        return CacheRecord(*row)

    def note_used(self, key: str) -> None:
        """Remember a hit; `flush_used` stamps them all in one write at the end of the build."""
        with self.lock:
            self._used.append(key)

    def flush_used(self) -> None:
        if not self._used:
            return
        now = time.time()
        with self.lock, db.write(self.conn) as c:
            c.executemany("UPDATE build_cache SET last_used=?, usage_count=usage_count+1 WHERE key=?",
                          [(now, k) for k in self._used])
        self._used = []

    def store(self, record: CacheRecord, chain: Sequence[str]) -> None:
        """Record a built step; `chain` is every layer its filesystem needs, bottom first (its own last).
        Call while holding the image store's write lock, so that GC cannot sweep the layer meanwhile."""
        now = time.time()
        with self.lock, db.write(self.conn) as c:
            c.execute("DELETE FROM build_cache WHERE key=?", (record.key,))
            c.execute(
                "INSERT INTO build_cache(key, parent, description, chain_id, diff_id, size, created,"
                " last_used, usage_count) VALUES (?,?,?,?,?,?,?,?,1)",
                (record.key, record.parent, record.description[:500], record.chain_id, record.diff_id,
                 record.size, record.created, now))
            c.executemany("INSERT INTO build_cache_layers(key, idx, chain_id) VALUES (?,?,?)",
                          [(record.key, i, chain_id) for i, chain_id in enumerate(chain)])

    def all(self) -> list[CacheRecord]:
        rows = self.conn.execute(
            "SELECT key, parent, description, chain_id, diff_id, size, created, last_used, usage_count"
            " FROM build_cache ORDER BY last_used").fetchall()
        return [CacheRecord(*r) for r in rows]

    def in_use_by_images(self) -> set[str]:
        """Chain IDs that images use: their layers stay when the records naming them go."""
        return {r[0] for r in self.conn.execute("SELECT DISTINCT chain_id FROM image_layers")}

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if not keys:
            return
        with self.lock, db.write(self.conn) as c:
            c.executemany("DELETE FROM build_cache WHERE key=?", [(k,) for k in keys])
