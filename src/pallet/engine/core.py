"""The engine: one façade for every verb. It holds no state between calls; all state is on
disk. Stores are opened lazily so that a command touches only what it needs."""

from __future__ import annotations

from functools import cached_property

from pallet.state import db
from pallet.state.paths import StatePaths

TYPE_CHECKING = False  # typing costs ~2 ms at import
if TYPE_CHECKING:
    import sqlite3

    from pallet.images.store import ImageStore


class Engine:
    def __init__(self, paths: StatePaths | None = None) -> None:
        self.paths = paths or StatePaths.resolve()

    @cached_property
    def conn(self) -> sqlite3.Connection:
        self.paths.ensure()
        return db.connect(self.paths.db)

    @cached_property
    def images(self) -> ImageStore:
        from pallet.images.store import ImageStore

        return ImageStore(self.paths, self.conn)

    def close(self) -> None:
        """Close the database. Needed before forking a monitor: SQLite's per-process lock state
        must not be inherited by a child that opens the same database (it would share it)."""
        conn = self.__dict__.pop("conn", None)
        self.__dict__.pop("images", None)
        if conn is not None:
            conn.close()
