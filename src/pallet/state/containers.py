"""Container records: docker's Config/HostConfig and State, kept as JSON in the database.

Imported by the monitor, so it stays lean: sqlite3 and json only."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from pallet.state import db

ZERO_TIME = "0001-01-01T00:00:00Z"


def initial_state() -> dict[str, Any]:
    return {
        "Status": "created",
        "Running": False,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": 0,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": ZERO_TIME,
        "FinishedAt": ZERO_TIME,
    }


@dataclass
class ContainerRecord:
    id: str
    name: str
    image_id: str | None
    image_ref: str
    created: str
    config: dict[str, Any]  # {"Config": {...}, "HostConfig": {...}, ...}
    state: dict[str, Any]

    @property
    def short_id(self) -> str:
        return self.id[:12]


def _record(row: sqlite3.Row) -> ContainerRecord:
    return ContainerRecord(
        row["id"],
        row["name"],
        row["image_id"],
        row["image_ref"],
        row["created"],
        json.loads(row["config"]),
        json.loads(row["state"]),
    )


def get(conn: sqlite3.Connection, cid: str) -> ContainerRecord | None:
    row = conn.execute("SELECT * FROM containers WHERE id=?", (cid,)).fetchone()
    return _record(row) if row else None


def find(conn: sqlite3.Connection, name_or_id: str) -> list[ContainerRecord]:
    """Docker's lookup order: full ID, exact name, then ID prefix (all candidates returned)."""
    name = name_or_id[1:] if name_or_id.startswith("/") else name_or_id
    for sql, arg in (
        ("SELECT * FROM containers WHERE id=?", name_or_id),
        ("SELECT * FROM containers WHERE name=?", name),
        ("SELECT * FROM containers WHERE id LIKE ?", name_or_id + "%"),
    ):
        if not arg or (sql.endswith("LIKE ?") and not _is_hex(name_or_id)):
            continue
        rows = conn.execute(sql, (arg,)).fetchall()
        if rows:
            return [_record(r) for r in rows]
    return []


def _is_hex(s: str) -> bool:
    return bool(s) and all(c in "0123456789abcdef" for c in s)


def all_records(conn: sqlite3.Connection) -> list[ContainerRecord]:
    return [_record(r) for r in conn.execute("SELECT * FROM containers ORDER BY created DESC, rowid DESC")]


def insert(conn: sqlite3.Connection, rec: ContainerRecord) -> None:
    with db.write(conn) as c:
        c.execute(
            "INSERT INTO containers(id, name, image_id, image_ref, created, config, state)"
            " VALUES (?,?,?,?,?,?,?)",
            (
                rec.id,
                rec.name,
                rec.image_id,
                rec.image_ref,
                rec.created,
                json.dumps(rec.config),
                json.dumps(rec.state),
            ),
        )


def update_state(conn: sqlite3.Connection, cid: str, **fields: Any) -> dict[str, Any] | None:
    """Merge fields into State atomically (read-modify-write under the write lock)."""
    with db.write(conn) as c:
        row = c.execute("SELECT state FROM containers WHERE id=?", (cid,)).fetchone()
        if row is None:
            return None
        state: dict[str, Any] = json.loads(row[0])
        state.update(fields)
        c.execute("UPDATE containers SET state=? WHERE id=?", (json.dumps(state), cid))
        return state


def update_config(conn: sqlite3.Connection, cid: str, config: dict[str, Any]) -> None:
    with db.write(conn) as c:
        c.execute("UPDATE containers SET config=? WHERE id=?", (json.dumps(config), cid))


def delete(conn: sqlite3.Connection, cid: str) -> None:
    with db.write(conn) as c:
        c.execute("DELETE FROM containers WHERE id=?", (cid,))
