"""Container records: docker's Config/HostConfig and State, kept as JSON in the database.

Imported by every command and by the monitor's exit child, so it stays lean: json and the state
db module only (no dataclasses, typing or pathlib at import).

Besides Config and HostConfig, the config JSON holds, at its top level as docker's own
config.v2.json does, the keys the restart policy needs between processes:
  RestartCount            restarts done by the monitor since the last user `start`
  HasBeenManuallyStopped  a user stop/kill happened (unless-stopped does not restart)
  ExitOnNext              the restart policy is cancelled for the current run (stop, kill with
                          the stop signal, rm -f): the monitor lets the container go for good
"""

from __future__ import annotations

import json

from pallet.state import db

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    import sqlite3
    from typing import Any

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


class ContainerRecord:
    __slots__ = ("id", "name", "image_id", "image_ref", "created", "config", "state")

    def __init__(
        self,
        id: str,  # noqa: A002 - the record's field is docker's "Id"
        name: str,
        image_id: str | None,
        image_ref: str,
        created: str,
        config: dict[str, Any],  # {"Config": {...}, "HostConfig": {...}, ...}
        state: dict[str, Any],
    ) -> None:
        self.id = id
        self.name = name
        self.image_id = image_id
        self.image_ref = image_ref
        self.created = created
        self.config = config
        self.state = state

    def __repr__(self) -> str:
        return f"ContainerRecord({self.id[:12]!r}, {self.name!r}, {self.state.get('Status')!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContainerRecord):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

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


def update(
    conn: sqlite3.Connection,
    cid: str,
    *,
    state: dict[str, Any] | None = None,
    top: dict[str, Any] | None = None,
    host_config: dict[str, Any] | None = None,
) -> ContainerRecord | None:
    """Merge into State, into the config's top-level keys and into HostConfig, all in one
    transaction; returns the record as written (None if it is gone)."""
    with db.write(conn) as c:
        row = c.execute("SELECT * FROM containers WHERE id=?", (cid,)).fetchone()
        if row is None:
            return None
        rec = _record(row)
        rec.state.update(state or {})
        rec.config.update(top or {})
        if host_config:
            rec.config.setdefault("HostConfig", {}).update(host_config)
        c.execute(
            "UPDATE containers SET state=?, config=? WHERE id=?",
            (json.dumps(rec.state), json.dumps(rec.config), cid),
        )
        return rec


def set_running_unless_cancelled(conn: sqlite3.Connection, cid: str, **fields: Any) -> bool:
    """Record a (re)started container as running, unless a user stop cancelled it meanwhile
    (ExitOnNext): the check and the write are one transaction, so a concurrent `stop` either
    sees the new pid or makes this return False."""
    with db.write(conn) as c:
        row = c.execute("SELECT state, config FROM containers WHERE id=?", (cid,)).fetchone()
        if row is None:
            return False
        config = json.loads(row[1])
        if config.get("ExitOnNext"):
            return False
        state: dict[str, Any] = json.loads(row[0])
        state.update(fields)
        c.execute("UPDATE containers SET state=? WHERE id=?", (json.dumps(state), cid))
        return True


def rename(conn: sqlite3.Connection, cid: str, name: str) -> None:
    """Raises sqlite3.IntegrityError if the name is taken."""
    with db.write(conn) as c:
        c.execute("UPDATE containers SET name=? WHERE id=?", (name, cid))


def delete(conn: sqlite3.Connection, cid: str) -> None:
    with db.write(conn) as c:
        c.execute("DELETE FROM containers WHERE id=?", (cid,))
