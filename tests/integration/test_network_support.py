"""Fixtures and helpers for the network subsystem tests (imported by the other test_network_* files).

Every test gets its own pallet root and a driver that never forwards DNS queries. Whatever a test
creates (networks, namespaces, servers) is taken down in `finally`, and a last sweep removes any
bridge, nft table, namespace file or helper process left by this root even when a test failed
half-way through.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dnslib import DNSRecord

from pallet.network import daemon, links, netns, nft
from pallet.network.bridge import BridgeDriver, DriverSettings
from pallet.network.store import list_networks
from pallet.state import db
from pallet.state.paths import StatePaths

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, bridges, nftables)"),
    pytest.mark.skipif(not shutil.which("nft"), reason="nft (nftables) is not installed"),
    pytest.mark.skipif(not shutil.which("busybox"), reason="busybox-static is not installed"),
]


@dataclass
class NetEnv:
    paths: StatePaths
    driver: BridgeDriver
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    namespaces: list[Path] = field(default_factory=list)

    def netns(self, name: str) -> Path:
        path = netns.create(self.paths.runroot, name)
        self.namespaces.append(path)
        return path

    def httpd(self, ns: Path, content: str = "hello from web\n", port: int = 80) -> subprocess.Popen[bytes]:
        """busybox httpd serving one index.html inside the namespace, ready when this returns."""
        www = self.paths.root / f"www-{ns.name}-{port}"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text(content)
        argv = [*netns.nsenter_argv(ns), "busybox", "httpd", "-f", "-p", str(port), "-h", str(www)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_listening(ns, port)
        return proc

    def spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> list[str]:
        """Take everything down; return a list of what had to be swept (a leak in the code)."""
        swept: list[str] = []
        try:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            # A fresh connection: the test may have closed (or broken) the driver's own.
            sweeper = BridgeDriver(self.paths, db.connect(self.paths.db), self.driver.settings)
            try:
                self._sweep(sweeper, swept)
            finally:
                sweeper.conn.close()
        finally:
            self.driver.conn.close()
            kill_helpers(self.paths.root)
            for mp in _mounts_under(self.paths.root):  # the shared netns directory mount
                subprocess.run(["umount", "-l", mp], check=False, capture_output=True)
        return swept

    def _sweep(self, driver: BridgeDriver, swept: list[str]) -> None:
        conn = driver.conn
        for rec in list_networks(conn):
            for ep in driver.endpoints(rec.id):
                try:
                    driver.disconnect(rec.id, ep.container_id)
                except Exception as e:  # keep sweeping
                    swept.append(f"disconnect {ep.name}: {e}")
            if rec.driver == "bridge" and rec.name != "bridge":
                try:
                    driver.remove(rec.id)
                except Exception as e:
                    swept.append(f"remove {rec.name}: {e}")
        for ns in self.namespaces:
            netns.delete(ns)
        # Last resort: anything this root's records or run directory still point at.
        for rec in list_networks(conn):
            if rec.bridge:
                with links.host_netlink() as ipr:
                    if links.delete_bridge(ipr, rec.bridge):
                        swept.append(f"bridge {rec.bridge}")
            nft.delete_table(nft.network_table(rec.id))
        for pidfile in self.paths.runroot.rglob("*.pid"):
            if daemon.is_running(pidfile):
                swept.append(f"process {pidfile.name}")
            daemon.stop(pidfile)
        for name in netns.list_names(self.paths.runroot):
            netns.delete(netns.netns_path(self.paths.runroot, name))
            swept.append(f"netns {name}")


def wait_listening(ns: Path, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if netns.run_in(ns, lambda: _can_connect("127.0.0.1", port)):
            return
        time.sleep(0.01)
    raise AssertionError(f"nothing listens on port {port} in {ns}")


def _can_connect(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def can_connect_from(ns: Path | None, host: str, port: int, timeout: float = 1.0) -> bool:
    if ns is None:
        return _can_connect(host, port, timeout)
    return netns.run_in(ns, lambda: _can_connect(host, port, timeout))


def wget(ns: Path | None, url: str, *, resolv_conf: Path | None = None, timeout: int = 3) -> str | None:
    """busybox wget inside ns (None: the host); with resolv_conf, name resolution uses that file
    (bind-mounted over /etc/resolv.conf in a private mount namespace). None on failure."""
    cmd = f"timeout {timeout} busybox wget -qO- {url}"
    if resolv_conf is not None:
        target = os.path.realpath("/etc/resolv.conf")
        cmd = f"mount --bind {resolv_conf} {target} && {cmd}"
    argv = ["unshare", "--mount", "sh", "-c", cmd]
    if ns is not None:
        argv = [*netns.nsenter_argv(ns), *argv]
    proc = subprocess.run(argv, capture_output=True, timeout=timeout + 5, check=False)
    return proc.stdout.decode() if proc.returncode == 0 else None


def dns_query(ns: Path, server: str, name: str, qtype: str = "A", timeout: float = 2.0) -> DNSRecord:
    """One UDP query sent from inside ns (so the server sees that namespace's address)."""
    q = DNSRecord.question(name, qtype)

    def ask() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(q.pack(), (server, 53))
            data, _ = s.recvfrom(4096)
            return data

    return DNSRecord.parse(netns.run_in(ns, ask))


def answers(rec: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in rec.rr)


def helper_pids(root: Path) -> list[int]:
    """Live pallet.network helper processes started for this root."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "pallet.network." in cmd and str(root) in cmd:
            out.append(int(proc.name))
    return out


def kill_helpers(root: Path) -> None:
    for pid in helper_pids(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def make_env(root: Path, **settings: object) -> NetEnv:
    paths = StatePaths(root, root / "run")
    paths.ensure()
    conn = db.connect(paths.db)
    opts = {"dns_upstreams": [], **settings}  # never forward a query off this machine
    return NetEnv(paths, BridgeDriver(paths, conn, DriverSettings(**opts)))  # type: ignore[arg-type]


def pallet_host_state() -> tuple[list[str], list[str]]:
    """The host links and nft tables that look like pallet's (bridges, veths, pallet_* tables)."""
    with links.host_netlink() as ipr:
        names = [n for n in links.link_names(ipr) if n.startswith(("br-", "veth"))]
    return names, sorted(t for t in nft.table_names() if t.startswith(nft.TABLE_PREFIX))


def _checked(env: NetEnv) -> Iterator[NetEnv]:
    """Yield env, take it down, and fail the test if pallet-looking host state is left behind
    (after removing it: one leaky test must not break the next)."""
    before = pallet_host_state()
    try:
        yield env
    finally:
        env.cleanup()
    # The kernel frees a dead namespace's veth ends asynchronously.
    eventually(lambda: pallet_host_state() == before, timeout=5)
    after = pallet_host_state()
    if after != before:
        extra_links = sorted(set(after[0]) - set(before[0]))
        extra_tables = sorted(set(after[1]) - set(before[1]))
        with links.host_netlink() as ipr:
            for name in extra_links:
                links.delete_bridge(ipr, name)
        for table in extra_tables:
            nft.delete_table(table)
        pytest.fail(f"left behind: links {extra_links}, nft tables {extra_tables}")


@pytest.fixture
def net_env(tmp_path: Path) -> Iterator[NetEnv]:
    yield from _checked(make_env(tmp_path / "root"))


@pytest.fixture
def nat_env(tmp_path: Path) -> Iterator[NetEnv]:
    """Like net_env, with loopback-published ports by route_localnet + DNAT instead of the proxy."""
    yield from _checked(make_env(tmp_path / "root", userland_proxy=False))


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        mps = [line.split()[4] for line in f]
    return sorted((m for m in mps if m == prefix or m.startswith(prefix + "/")), key=len, reverse=True)


def mounts_snapshot() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4] for line in f)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Waiter = Callable[[], bool]


def eventually(cond: Waiter, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()
