"""Measurements (printed and written to <basetemp>/network-bench.json), with only sanity asserts:

- TCP throughput between two namespaces on one bridge (a Python sender and receiver, 1.5 s, median
  of 3);
- host -> container through a 127.0.0.1 published port: nftables (route_localnet + DNAT) vs the
  userland proxy, with the direct route to the container's address as the baseline;
- connection setup latency through a published port: connect, 1-byte request/response, close;
- embedded DNS query latency from a container.

Run: pytest tests/integration/test_network_bench.py -s
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_network_support as support
from dnslib import DNSRecord
from test_network_support import NetEnv

from pallet.network import netns
from pallet.network.bridge import BridgeDriver, DriverSettings
from pallet.network.ports import PortRequest

net_env = support.net_env  # fixture
pytestmark = [*support.pytestmark, pytest.mark.slow]

SECONDS = 1.5
REPEATS = 3
CONNECTS = 300
CHUNK = 1 << 20

SERVER = r"""
import socket, sys, threading
port, mode = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(256)
print("ready", flush=True)
def sink(c):
    buf, n = bytearray(1 << 20), 0
    while True:
        k = c.recv_into(buf)
        if not k:
            break
        n += k
    c.sendall(str(n).encode())
    c.close()
def echo(c):
    while True:
        d = c.recv(64)
        if not d:
            break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=sink if mode == "sink" else echo, args=(c,), daemon=True).start()
"""

SENDER = r"""
import socket, sys, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
data = b"x" * (1 << 20)
s = socket.create_connection((host, port))
t0 = time.perf_counter()
while time.perf_counter() - t0 < secs:
    s.sendall(data)
s.shutdown(socket.SHUT_WR)
n = int(s.recv(64))
print(n / (time.perf_counter() - t0))
"""


def _server(env: NetEnv, ns: Path, port: int, mode: str) -> subprocess.Popen[bytes]:
    argv = [*netns.nsenter_argv(ns), sys.executable, "-I", "-c", SERVER, str(port), mode]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    env.procs.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


def _throughput(ns: Path | None, host: str, port: int) -> float:
    """Bytes per second from a sender process in ns (None: the host); median of REPEATS runs."""
    argv = [sys.executable, "-I", "-c", SENDER, host, str(port), str(SECONDS)]
    if ns is not None:
        argv = [*netns.nsenter_argv(ns), *argv]
    runs = [
        float(subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout)
        for _ in range(REPEATS)
    ]
    return statistics.median(runs)


def _dns_latencies(ns: Path, server: str, name: str) -> list[float]:
    def ask_many() -> list[float]:
        out = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            for i in range(CONNECTS):
                q = DNSRecord.question(name)
                q.header.id = i
                t0 = time.perf_counter()
                s.sendto(q.pack(), (server, 53))
                s.recvfrom(4096)
                out.append(time.perf_counter() - t0)
        return out

    return netns.run_in(ns, ask_many)


def _latencies(host: str, port: int) -> list[float]:
    """Seconds per connect + 1-byte round trip + close, from the host."""
    out = []
    for _ in range(CONNECTS):
        t0 = time.perf_counter()
        with socket.create_connection((host, port)) as s:
            s.sendall(b"?")
            assert s.recv(1) == b"?"
        out.append(time.perf_counter() - t0)
    return out


def _summary(lat: list[float]) -> dict[str, float]:
    lat = sorted(lat)
    return {
        "median_us": round(statistics.median(lat) * 1e6, 1),
        "p90_us": round(lat[int(len(lat) * 0.9)] * 1e6, 1),
    }


def _gbit(bps: float) -> float:
    return round(bps * 8 / 1e9, 2)


def test_measure_network_paths(net_env: NetEnv, tmp_path_factory: pytest.TempPathFactory) -> None:
    env = net_env
    proxy_drv = env.driver
    nat_drv = BridgeDriver(env.paths, proxy_drv.conn, DriverSettings(dns_upstreams=[], userland_proxy=False))
    results: dict[str, object] = {}

    t0 = time.perf_counter()
    net = proxy_drv.create("bench")
    results["network_create_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
    ns_a, ns_b, ns_c = env.netns("bench-a"), env.netns("bench-b"), env.netns("bench-c")
    t0 = time.perf_counter()
    a = proxy_drv.connect(net.id, "a" * 64, name="a", netns_path=ns_a)
    results["connect_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
    proxy_drv.connect(net.id, "b" * 64, name="b", netns_path=ns_b)
    c = proxy_drv.connect(net.id, "c" * 64, name="c", netns_path=ns_c)
    a_ip, c_ip = str(a.address.ip), str(c.address.ip)

    _server(env, ns_a, 5001, "sink")
    _server(env, ns_c, 5002, "echo")
    # a: throughput sink, published by the proxy; c: echo, published by nftables.
    t0 = time.perf_counter()
    (pa,) = proxy_drv.publish(net.id, "a" * 64, [PortRequest(5001, "tcp", "127.0.0.1")])
    results["publish_proxy_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
    t0 = time.perf_counter()
    (pc,) = nat_drv.publish(net.id, "c" * 64, [PortRequest(5002, "tcp", "127.0.0.1")])
    results["publish_nat_ms"] = round((time.perf_counter() - t0) * 1e3, 1)

    tp = {
        "netns_to_netns_same_bridge": _throughput(ns_b, a_ip, 5001),
        "host_to_container_ip_direct": _throughput(None, a_ip, 5001),
        "host_to_127_published_via_proxy": _throughput(None, "127.0.0.1", pa.host_port),
    }
    proxy_drv.unpublish(net.id, "a" * 64)
    (pa2,) = nat_drv.publish(net.id, "a" * 64, [PortRequest(5001, "tcp", "127.0.0.1")])
    tp["host_to_127_published_via_nftables"] = _throughput(None, "127.0.0.1", pa2.host_port)
    results["throughput_gbit_s"] = {k: _gbit(v) for k, v in tp.items()}

    lat = {"direct_to_container_ip": _summary(_latencies(c_ip, 5002))}
    lat["published_127_via_nftables"] = _summary(_latencies("127.0.0.1", pc.host_port))
    nat_drv.unpublish(net.id, "c" * 64)
    (pc2,) = proxy_drv.publish(net.id, "c" * 64, [PortRequest(5002, "tcp", "127.0.0.1")])
    lat["published_127_via_proxy"] = _summary(_latencies("127.0.0.1", pc2.host_port))
    results["connect_roundtrip_close"] = lat
    assert net.ipam
    results["dns_query_from_container"] = _summary(_dns_latencies(ns_b, str(net.ipam.gateway), "a"))
    run = env.paths.runroot / "networks" / net.id
    results["rss_kb"] = {
        "dns_server": _rss_kb(run / "dns.pid"),
        "port_proxy": _rss_kb(next((run / "proxy").glob("*.pid"))),
    }

    t0 = time.perf_counter()
    for cid in ("a" * 64, "b" * 64, "c" * 64):
        proxy_drv.disconnect(net.id, cid)
    results["disconnect_ms_each"] = round((time.perf_counter() - t0) * 1e3 / 3, 1)
    t0 = time.perf_counter()
    proxy_drv.remove(net.id)
    results["network_remove_ms"] = round((time.perf_counter() - t0) * 1e3, 1)

    out = tmp_path_factory.getbasetemp() / "network-bench.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + json.dumps(results, indent=2))
    assert all(v > 0 for v in tp.values())


def _rss_kb(pidfile: Path) -> int:
    pid = int(pidfile.read_text())
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
