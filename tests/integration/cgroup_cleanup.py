"""A fixture for tests that start containers with resource limits: whatever happens in the test,
the containers' processes are killed and their cgroups (/pallet/<id> in every hierarchy) removed
before the root is torn down. (A monitor killed mid-test never gets to remove them itself.)"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Pallet, kill_processes_under


def _container_ids(root: Path) -> set[str]:
    ids = {p.name for p in (root / "containers").glob("*") if p.is_dir()}
    db = root / "pallet.db"
    if db.exists():
        try:
            conn = sqlite3.connect(db, timeout=5)
            ids |= {row[0] for row in conn.execute("SELECT id FROM containers")}
            conn.close()
        except sqlite3.Error:
            pass
    return {i for i in ids if len(i) == 64}


def remove_container_cgroups(root: Path) -> None:
    from pallet.runtime import cgroups

    kill_processes_under(root)
    for cid in _container_ids(root):
        try:
            cgroups.remove(f"/pallet/{cid}", timeout=5.0)
        except OSError:
            pass


@pytest.fixture(autouse=True)
def no_leftover_cgroups(pallet_root: Path) -> Iterator[None]:
    yield
    remove_container_cgroups(pallet_root)


def inspect(p: Pallet, name: str) -> dict[str, Any]:
    """A container's `inspect` document, via the real CLI."""
    found: dict[str, Any] = json.loads(p.out("inspect", name))[0]
    return found
