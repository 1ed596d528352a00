"""Shared fixtures: every test that touches state gets its own pallet root, and everything it
started (monitors, containers, mounts) is taken down afterwards, even when it fails."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PALLET = [sys.executable, "-m", "pallet.cli.main"]
if (REPO / ".venv/bin/pallet").exists():
    PALLET = [str(REPO / ".venv/bin/pallet")]


def needs_root() -> pytest.MarkDecorator:
    return pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, namespaces, cgroups)")


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix + "/"):
                out.append(mp)
    return out


def kill_processes_under(root: Path) -> None:
    """Kill every process whose monitor pid file or command line belongs to this root."""
    run = root / "run" / "containers"
    pids: set[int] = set()
    if run.is_dir():
        for pidfile in run.glob("*/monitor.pid"):
            try:
                pids.add(int(pidfile.read_text().split()[0]))
            except (ValueError, OSError):
                pass
    import json
    import sqlite3

    db = root / "pallet.db"
    if db.exists():
        try:
            conn = sqlite3.connect(db, timeout=5)
            for (state,) in conn.execute("SELECT state FROM containers"):
                pid = json.loads(state).get("Pid") or 0
                if pid:
                    pids.add(int(pid))
            conn.close()
        except sqlite3.Error:
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if Path(f"/proc/{p}").exists() and _not_zombie(p)}
        time.sleep(0.02)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cgroups_of(root_name: str) -> list[Path]:
    base = Path("/sys/fs/cgroup")
    found = []
    for ctrl in base.iterdir():
        d = ctrl / "pallet"
        if d.is_dir():
            found += [p for p in d.iterdir() if p.is_dir() and p.name.startswith(root_name)]
    return found


def _kill_pidfile_helpers(root: Path) -> None:
    """Network helpers (DNS servers, port proxies) keep pid files under the run dir."""
    for pidfile in (root / "run").rglob("*.pid") if (root / "run").is_dir() else []:
        try:
            pid = int(pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (ValueError, OSError, IndexError):
            continue
        if str(pidfile).encode() in cmdline or b"pallet" in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _remove_network_leftovers(root: Path) -> None:
    """Bridges, veths and nft tables of this root's networks, whatever state the test left."""
    import sqlite3

    db = root / "pallet.db"
    if not db.exists():
        return
    try:
        conn = sqlite3.connect(db, timeout=5)
        nets = conn.execute("SELECT id, bridge FROM networks").fetchall()
        eps = conn.execute("SELECT id, host_ifname FROM network_endpoints").fetchall()
        conn.close()
    except sqlite3.Error:
        return
    for eid, ifname in eps:
        if ifname:
            subprocess.run(["ip", "link", "del", ifname], capture_output=True, check=False)
        subprocess.run(
            ["nft", "delete", "table", "ip", f"pallet_ep_{eid[:12]}"], capture_output=True, check=False
        )
    for nid, bridge in nets:
        if bridge:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        subprocess.run(
            ["nft", "delete", "table", "ip", f"pallet_net_{nid[:12]}"], capture_output=True, check=False
        )


def _container_ids(root: Path) -> set[str]:
    import sqlite3

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
    """The containers' cgroups (/pallet/<id> in every hierarchy, whatever the runtime): a container
    whose monitor was killed, or that still ran when its test ended, never removes its own."""
    from pallet.runtime import cgroups

    for cid in _container_ids(root):
        try:
            cgroups.remove(f"/pallet/{cid}", timeout=5.0)
        except OSError:
            pass


def teardown_root(root: Path) -> list[str]:
    """Take down everything under root; return what had leaked (for assertions)."""
    kill_processes_under(root)
    _kill_pidfile_helpers(root)
    remove_container_cgroups(root)
    _remove_network_leftovers(root)
    leaked = mounts_under(root)
    for mp in sorted(leaked, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    return leaked


class Pallet:
    """Runs the real `pallet` command against one temporary root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # No DNS upstream: no container of a test ever sends a query off the machine (PEERS.md).
        self.env = {**os.environ, "PALLET_ROOT": str(root), "PALLET_DNS_UPSTREAMS": ""}
        self.env.pop("PALLET_RUNROOT", None)

    def __call__(
        self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            [*PALLET, *args],
            input=input,
            capture_output=True,
            env=self.env,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"pallet {' '.join(args)} exited {proc.returncode}:\n"
                f"stdout: {proc.stdout.decode(errors='replace')}\n"
                f"stderr: {proc.stderr.decode(errors='replace')}"
            )
        return proc

    def out(self, *args: str, input: bytes | None = None) -> str:
        return self(*args, input=input).stdout.decode()


def _empty_pallet_cgroups() -> set[str]:
    """Container cgroups (/pallet/<id>) with no process in them, in the cpu hierarchy (v1) or the
    v2 one: what a container that was taken down without its cgroups leaves."""
    found = set()
    for base in ("/sys/fs/cgroup/cpu/pallet", "/sys/fs/cgroup/pallet"):
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(base, name, "cgroup.procs")) as f:
                    if not f.read().strip():
                        found.add(name)
            except OSError:
                pass
    return found


@pytest.fixture(scope="session", autouse=True)
def no_cgroup_leaks() -> Iterator[None]:
    """The whole run leaves no container cgroup behind (every root's teardown removes its own)."""
    before = _empty_pallet_cgroups()
    yield
    leaked = _empty_pallet_cgroups() - before
    if leaked:
        raise AssertionError(f"{len(leaked)} container cgroups leaked, e.g. /pallet/{sorted(leaked)[0]}")


@pytest.fixture
def pallet_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("pallet-root")
    yield root
    teardown_root(root)


@pytest.fixture
def pallet(pallet_root: Path) -> Pallet:
    return Pallet(pallet_root)


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """busybox:latest bootstrapped once per session and saved; tests load it (fast)."""
    if not shutil.which("busybox"):
        pytest.skip("busybox-static is not installed")
    root = tmp_path_factory.mktemp("busybox-src")
    p = Pallet(root)
    p("image", "bootstrap", "busybox")
    archive = root.parent / "busybox.tar"
    p("save", "-o", str(archive), "busybox")
    yield archive
    teardown_root(root)


@pytest.fixture
def busybox(pallet: Pallet, busybox_archive: Path) -> Pallet:
    pallet("load", "-i", str(busybox_archive))
    return pallet


def runtime_available(name: str) -> str | None:
    """None when the runtime can run here, else why not (for a skip reason)."""
    if name == "pallet":
        return None
    if not shutil.which(name):
        return f"{name} is not installed"
    if (
        name == "crun"
        and not Path("/sys/fs/cgroup/hugetlb").is_mount()
        and Path("/sys/fs/cgroup/memory").is_dir()
    ):
        return "crun refuses this hybrid cgroup layout until hugetlb is mounted as v1 (scripts/setup does it)"
    return None


@pytest.fixture(params=["pallet", "crun", "runc"])
def runtime_busybox(request: pytest.FixtureRequest, busybox: Pallet) -> Pallet:
    """`busybox`, with every container created on the given OCI runtime (parametrized)."""
    reason = runtime_available(request.param)
    if reason:
        pytest.skip(reason)
    busybox.env["PALLET_DEFAULT_RUNTIME"] = request.param
    return busybox


Run = Callable[..., subprocess.CompletedProcess[bytes]]
