"""50 full cycles of network create -> two attached namespaces with published ports -> remove all,
after which the host must look exactly as before: links, mounts, nftables ruleset, namespace files,
the IPAM table, helper processes, and this process's own file descriptors and threads."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
import test_network_support as support
from test_network_support import NetEnv, helper_pids, mounts_snapshot, wget

from pallet.network import links, netns
from pallet.network.bridge import BridgeDriver, DriverSettings
from pallet.network.ports import PortRequest

net_env = support.net_env  # fixture
pytestmark = [*support.pytestmark, pytest.mark.slow]

CYCLES = 50


def _snapshot(env: NetEnv) -> dict[str, object]:
    conn = env.driver.conn
    with links.host_netlink() as ipr:
        host_links = links.link_names(ipr)
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, check=True).stdout.decode()
    return {
        "links": host_links,
        # Other suites mount things concurrently on this machine: only this root's mounts count.
        "mounts": [m for m in mounts_snapshot() if m.startswith(str(env.paths.root))],
        "nft": ruleset,
        "netns": netns.list_names(env.paths.runroot),
        "ipam": conn.execute("SELECT * FROM network_addresses").fetchall(),
        "endpoints": conn.execute("SELECT count(*) FROM network_endpoints").fetchone()[0],
        "ports": conn.execute("SELECT count(*) FROM network_ports").fetchone()[0],
        "networks": conn.execute("SELECT count(*) FROM networks").fetchone()[0],
        "helpers": helper_pids(env.paths.root),
        "fds": sorted(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "run files": sorted(str(p.relative_to(env.paths.runroot)) for p in env.paths.runroot.rglob("*")),
    }


def _cycle(env: NetEnv, driver: BridgeDriver, i: int, check_traffic: bool) -> None:
    net = driver.create(f"cycle{i}")
    ns = [netns.create(env.paths.runroot, f"cyc{i}-{k}") for k in range(2)]
    try:
        for k in range(2):
            cid = f"{k:x}{i:03x}".ljust(64, "0")
            driver.connect(net.id, cid, name=f"c{k}", netns_path=ns[k], aliases=["both"])
            driver.publish(
                net.id, cid, [PortRequest(80, "tcp", "127.0.0.1"), PortRequest(53, "udp", "127.0.0.1")]
            )
        if check_traffic:
            web = env.httpd(ns[0])
            (b,) = [b for b in driver.port_bindings(f"0{i:03x}".ljust(64, "0")) if b.proto == "tcp"]
            assert wget(None, f"http://127.0.0.1:{b.host_port}/") == "hello from web\n"
            web.kill()
            web.wait()
    finally:
        for k in range(2):
            cid = f"{k:x}{i:03x}".ljust(64, "0")
            if any(ep.container_id == cid for ep in driver.endpoints(net.id)):
                driver.disconnect(net.id, cid)
            netns.delete(ns[k])
        driver.remove(net.id)


def test_fifty_cycles_leave_nothing_behind(net_env: NetEnv) -> None:
    proxy_driver = net_env.driver
    nat_driver = BridgeDriver(
        net_env.paths, proxy_driver.conn, DriverSettings(dns_upstreams=[], userland_proxy=False)
    )
    _cycle(net_env, proxy_driver, 999, check_traffic=True)  # warm-up: the shared netns dir mount
    before = _snapshot(net_env)
    t0 = time.monotonic()
    for i in range(CYCLES):
        driver = proxy_driver if i % 2 == 0 else nat_driver  # both loopback designs
        _cycle(net_env, driver, i, check_traffic=i % 10 == 0)
    elapsed = time.monotonic() - t0
    # The kernel frees a namespace's veth ends asynchronously (cleanup_net); give it a moment.
    deadline = time.monotonic() + 5
    after = _snapshot(net_env)
    while after["links"] != before["links"] and time.monotonic() < deadline:
        time.sleep(0.05)
        after = _snapshot(net_env)
    for key in before:
        assert after[key] == before[key], key
    print(f"\n{CYCLES} cycles in {elapsed:.1f} s ({elapsed / CYCLES * 1000:.0f} ms per cycle)")
