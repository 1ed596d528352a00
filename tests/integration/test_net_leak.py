"""50 cycles of: network create -> two containers with published ports, a named and an anonymous
volume -> remove everything, through the CLI. Afterwards the host must be as it was: links, mounts,
the nftables ruleset, the IPAM table, namespace pins, helper processes, volumes.

Other test suites may run on this machine at the same time and create links and tables of their
own: the comparison ignores only objects that did not come from this test (every bridge, veth and
table this test's networks and endpoints used is recorded while they exist)."""

from __future__ import annotations

import re
import subprocess
import time

import net_helpers
from net_helpers import client, db_rows, http_get, netns_files

from conftest import Pallet, mounts_under

pytestmark = net_helpers.pytestmark
net = net_helpers.net  # fixture

CYCLES = 50
_TABLE = re.compile(r"^table (\S+) (\S+) \{", re.M)


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, check=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def _ruleset() -> dict[str, str]:
    """Every nft table, name -> its text."""
    text = subprocess.run(["nft", "list", "ruleset"], capture_output=True, check=True, text=True).stdout
    starts = [(m.start(), f"{m.group(1)} {m.group(2)}") for m in _TABLE.finditer(text)]
    return {
        name: text[pos : (starts[i + 1][0] if i + 1 < len(starts) else len(text))]
        for i, (pos, name) in enumerate(starts)
    }


def _snapshot(p: Pallet) -> dict[str, object]:
    return {
        "links": _links(),
        "nft": _ruleset(),
        "mounts": mounts_under(p.root),
        "netns": netns_files(p.root),
        "ipam": db_rows(p.root, "SELECT * FROM network_addresses ORDER BY 1, 2"),
        "endpoints": db_rows(p.root, "SELECT * FROM network_endpoints"),
        "ports": db_rows(p.root, "SELECT * FROM network_ports"),
        "networks": db_rows(p.root, "SELECT id FROM networks ORDER BY id"),
        "volumes": db_rows(p.root, "SELECT name FROM volumes"),
        "helpers": sorted(str(f.relative_to(p.root)) for f in (p.root / "run").rglob("*.pid")),
        "containers": p.out("ps", "-aq"),
    }


def _record_ours(p: Pallet, links: set[str], tables: set[str]) -> None:
    for net_id, bridge in db_rows(p.root, "SELECT id, bridge FROM networks"):
        links.add(bridge)
        tables.add(f"ip pallet_net_{net_id[:12]}")
    for ep_id, host_ifname in db_rows(p.root, "SELECT id, host_ifname FROM network_endpoints"):
        links.add(host_ifname)
        tables.add(f"ip pallet_ep_{ep_id[:12]}")


def _cycle(p: Pallet, i: int, ours_links: set[str], ours_tables: set[str], check_traffic: bool) -> None:
    p("network", "create", f"leak{i}")
    for k in range(2):
        cmd = "mkdir /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"
        p(
            "run",
            "-d",
            "--name",
            f"c{k}",
            "--network",
            f"leak{i}",
            "-p",
            "127.0.0.1::80",
            "-v",
            f"vol{k}:/data",
            "-v",
            "/anon",
            "busybox",
            "sh",
            "-c",
            cmd,
        )
    _record_ours(p, ours_links, ours_tables)
    if check_traffic:
        port = p.out("port", "c0", "80").strip().rsplit(":", 1)[1]
        assert http_get(f"http://127.0.0.1:{port}/") == "hello\n"
        assert client(p, "--network", f"leak{i}", url="http://c1/") == "hello\n"
    p("rm", "-f", "-v", "c0", "c1")
    p("network", "rm", f"leak{i}")
    p("volume", "rm", "vol0", "vol1")


def test_fifty_cycles_leave_nothing_behind(net: Pallet) -> None:
    p = net
    ours_links: set[str] = set()
    ours_tables: set[str] = set()
    _cycle(p, 999, ours_links, ours_tables, check_traffic=True)  # warm-up: the shared netns dir mount
    before = _snapshot(p)
    t0 = time.monotonic()
    for i in range(CYCLES):
        _cycle(p, i, ours_links, ours_tables, check_traffic=i % 10 == 0)
    elapsed = time.monotonic() - t0
    after = _snapshot(p)
    # ours only: a veth end of a dead namespace goes asynchronously (the kernel's cleanup_net)
    deadline = time.monotonic() + 5
    while ours_links & after["links"] - before["links"] and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)
        after = _snapshot(p)
    left_links = sorted(ours_links & after["links"] - before["links"])  # type: ignore[operator]
    assert left_links == [], "links of this test left behind"
    left_tables = sorted(ours_tables & set(after["nft"]) - set(before["nft"]))  # type: ignore[arg-type]
    assert left_tables == [], "nft tables of this test left behind"
    # everything else: as before, apart from what other processes on the machine did meanwhile
    foreign_links = (after["links"] ^ before["links"]) - ours_links  # type: ignore[operator]
    assert {n for n in foreign_links if not n.startswith(("br-", "veth"))} == set()
    nft_before, nft_after = before["nft"], after["nft"]
    assert isinstance(nft_before, dict) and isinstance(nft_after, dict)
    for name in set(nft_before) | set(nft_after):
        if name.startswith("ip pallet_") and name not in ours_tables:
            continue  # another pallet root's
        assert nft_before.get(name) == nft_after.get(name), name
    for key in (
        "mounts",
        "netns",
        "ipam",
        "endpoints",
        "ports",
        "networks",
        "volumes",
        "helpers",
        "containers",
    ):
        assert after[key] == before[key], key
    print(f"\n{CYCLES} cycles in {elapsed:.1f} s ({elapsed / CYCLES * 1000:.0f} ms per cycle)")
