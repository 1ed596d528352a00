"""A fixture for tests that start containers with resource limits: whatever happens in the test,
the containers' processes are killed and their cgroups (/pallet/<id> in every hierarchy) removed
before the root is torn down. (A monitor killed mid-test never gets to remove them itself.) Also the
clean-up of the runtime tests that drive the runtimes directly (private_seccomp_cache_then_remove)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
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


def private_seccomp_cache_then_remove(
    tmp_path_factory: pytest.TempPathFactory, parent: str
) -> Iterator[None]:
    """For a module-scoped fixture of runtime tests: a private seccomp program cache while the tests
    run; afterwards the test cgroups' parent `parent` is removed from every hierarchy (relative
    cgroupsPaths land under the runtime's own cgroup or under the root, depending on the runtime)."""
    old = os.environ.get("PALLET_SECCOMP_CACHE")
    os.environ["PALLET_SECCOMP_CACHE"] = str(tmp_path_factory.mktemp("seccomp-cache"))
    yield
    if old is None:
        os.environ.pop("PALLET_SECCOMP_CACHE", None)
    else:
        os.environ["PALLET_SECCOMP_CACHE"] = old
    from pallet.runtime import cgroups

    deadline = time.monotonic() + 5
    for h in cgroups.hierarchies():
        for base in (h.own_path, "/"):
            p = os.path.normpath(f"{h.mountpoint}/{base}/{parent}")
            while os.path.isdir(p):
                try:
                    os.rmdir(p)
                except OSError:  # EBUSY while its removed children are still being released
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
