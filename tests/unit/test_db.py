from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from pallet.state import db


def test_migrations_apply_once(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "p.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(db.MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn2 = db.connect(tmp_path / "p.db")  # a second opener must not re-run anything
    assert conn2.execute("SELECT count(*) FROM images").fetchone()[0] == 0


def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "p.db")
    try:
        with db.write(conn) as c:
            c.execute("INSERT INTO images(id, created, size, added_at) VALUES ('sha256:a', 'x', 1, 0)")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 0


def test_concurrent_writers_wait_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    db.connect(path)
    errors: list[Exception] = []

    def writer(n: int) -> None:
        conn = db.connect(path)
        try:
            for i in range(50):
                with db.write(conn) as c:
                    c.execute("INSERT INTO images(id, created, size, added_at) VALUES (?, 'x', 1, 0)",
                              (f"sha256:{n}-{i}",))
        except sqlite3.Error as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert db.connect(path).execute("SELECT count(*) FROM images").fetchone()[0] == 300
