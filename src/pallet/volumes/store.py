"""Volume records (the local driver's only): name, options and labels in the database, data
under volumes/<name>/_data."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pallet.errors import Conflict, InvalidArgument, NotFound
from pallet.state import db

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
LOCAL_OPTIONS = {"type", "device", "o", "size"}
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


@dataclass
class VolumeRecord:
    name: str
    driver: str
    created: str
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False

    def mountpoint(self, volumes_dir: Path) -> Path:
        return volumes_dir / self.name / "_data"

    def to_docker(self, volumes_dir: Path) -> dict[str, Any]:
        """The Engine API's Volume object."""
        return {
            "CreatedAt": self.created,
            "Driver": self.driver,
            "Labels": self.labels or None,
            "Mountpoint": str(self.mountpoint(volumes_dir)),
            "Name": self.name,
            "Options": self.options or None,
            "Scope": "local",
        }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def validate_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
            "use absolute path"
        )


def validate_options(driver: str, options: dict[str, str]) -> None:
    if driver != "local":
        raise NotFound(f'plugin "{driver}" not found: only the local volume driver is available')
    for key in options:
        if key not in LOCAL_OPTIONS:
            raise InvalidArgument(f'invalid option key: "{key}"')
    if options.get("type") and not options.get("device"):
        raise InvalidArgument('missing required option: "device"')
    if options.get("device") and not options.get("type"):
        raise InvalidArgument('missing required option: "type"')


def _record(row: sqlite3.Row) -> VolumeRecord:
    return VolumeRecord(
        row["name"],
        row["driver"],
        row["created"],
        json.loads(row["labels"]),
        json.loads(row["options"]),
        bool(row["anonymous"]),
    )


def get(conn: sqlite3.Connection, name: str) -> VolumeRecord:
    row = conn.execute("SELECT * FROM volumes WHERE name=?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"get {name}: no such volume")
    return _record(row)


def find(conn: sqlite3.Connection, name: str) -> VolumeRecord | None:
    row = conn.execute("SELECT * FROM volumes WHERE name=?", (name,)).fetchone()
    return _record(row) if row else None


def all_volumes(conn: sqlite3.Connection) -> list[VolumeRecord]:
    return [_record(r) for r in conn.execute("SELECT * FROM volumes ORDER BY name")]


def insert(conn: sqlite3.Connection, rec: VolumeRecord) -> bool:
    """Insert; False when a volume of that name exists already (docker's create is idempotent)."""
    with db.write(conn) as c:
        if c.execute("SELECT 1 FROM volumes WHERE name=?", (rec.name,)).fetchone():
            return False
        c.execute(
            "INSERT INTO volumes(name, driver, created, labels, options, anonymous) VALUES (?,?,?,?,?,?)",
            (
                rec.name,
                rec.driver,
                rec.created,
                json.dumps(rec.labels),
                json.dumps(rec.options),
                int(rec.anonymous),
            ),
        )
    return True


def new_record(
    name: str | None, driver: str, labels: dict[str, str], options: dict[str, str]
) -> VolumeRecord:
    anonymous = name is None
    if name is None:
        name = secrets.token_hex(32)
        labels = {**labels, ANONYMOUS_LABEL: ""}
    validate_name(name)
    validate_options(driver, options)
    return VolumeRecord(name, driver, _now(), labels, options, anonymous)


def users(conn: sqlite3.Connection, name: str) -> list[str]:
    """IDs of the containers (running or not) that mount the volume."""
    rows = conn.execute(
        "SELECT DISTINCT c.id FROM containers c, json_each(c.config, '$.Mounts') m "
        "WHERE json_extract(m.value, '$.Type') = 'volume' AND json_extract(m.value, '$.Name') = ?",
        (name,),
    ).fetchall()
    return [r[0] for r in rows]


def delete(conn: sqlite3.Connection, name: str, *, force: bool = False) -> None:
    """Remove the record; refused while a container mounts the volume, unless `force` (the caller
    then checked that none of them runs)."""
    with db.write(conn) as c:
        used = users(c, name)
        if used and not force:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(used)}]")
        c.execute("DELETE FROM volumes WHERE name=?", (name,))
