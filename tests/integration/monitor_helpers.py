"""Helpers for the monitor/lifecycle/logs/restart tests: polling the real CLI, the processes of a
container, and a fixture that removes whatever cgroups the test's containers left behind (a
monitor killed on purpose never removes them itself)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Pallet, kill_processes_under


def inspect(p: Pallet, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(p.out("inspect", name))[0]
    return found


def state(p: Pallet, name: str) -> dict[str, Any]:
    st: dict[str, Any] = inspect(p, name)["State"]
    return st


def wait_for(
    what: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, message: str = ""
) -> Any:
    """Poll until what() is truthy (generous deadline: the machine is noisy); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message or what}")
        time.sleep(interval)


def cid_of(p: Pallet, name: str) -> str:
    return p.out("inspect", "-f", "{{.Id}}", name).strip()


def monitor_pid(p: Pallet, cid: str) -> int:
    text = (p.root / "run" / "containers" / cid / "monitor.pid").read_text()
    return int(text.split()[0])


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X")


def cgroup_dirs(cid: str) -> list[Path]:
    return [d for d in Path("/sys/fs/cgroup").glob(f"*/pallet/{cid}") if d.is_dir()]


def mounted(cid: str) -> list[str]:
    with open("/proc/mounts") as f:
        return [line for line in f if cid in line]


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


@pytest.fixture(autouse=True)
def remove_leftover_cgroups(pallet_root: Path) -> Iterator[None]:
    """After the test (pass or fail): kill its processes and remove its containers' cgroups."""
    ids: set[str] = set()
    try:
        yield
    finally:
        ids = _container_ids(pallet_root)
        kill_processes_under(pallet_root)
        from pallet.runtime import cgroups

        for cid in ids:
            try:
                cgroups.remove(f"/pallet/{cid}", timeout=5.0)
            except OSError:
                pass


def kill9(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
