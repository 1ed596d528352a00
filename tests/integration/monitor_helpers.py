"""Helpers for the monitor/lifecycle/logs/restart tests: polling the real CLI and the processes of a
container. (What a test's containers leave behind, a monitor killed on purpose included, is taken
down by conftest.teardown_root.)"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cgroup_cleanup import inspect

from conftest import Pallet


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


def kill9(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
