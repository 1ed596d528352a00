"""`stats` and `top` as docker prints them: usage read from the container's cgroup (CPU % from two
samples), and the container's processes as the host's ps shows them."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from conftest import Pallet, needs_root
from pallet.cli.stats import stats_row
from pallet.engine.top import parse_ps

pytestmark = [needs_root(), pytest.mark.integration]

STATS_HEADER = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
STATS_FIELDS = ("BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage", "Name", "NetIO", "PIDs")
TOP_TITLES = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]


def test_stats_no_stream(runtime_busybox: Pallet) -> None:
    # --network none: no byte on the network at all (a bridge's multicast would show in NET I/O)
    cid = runtime_busybox.out("run", "-d", "--name", "busy", "--network", "none", "--memory", "64m",
                              "--cpus", "0.5", "busybox", "sh", "-c", "while :; do :; done")  # fmt: skip
    cid = cid.strip()
    idle = runtime_busybox.out("create", "--name", "idle", "busybox").strip()
    table = runtime_busybox.out("stats", "--no-stream", "-a").splitlines()
    assert re.split(r" {2,}", table[0]) == STATS_HEADER
    rows = {cells[1]: cells for cells in (re.split(r" {2,}", line) for line in table[1:])}
    assert sorted(rows) == ["busy", "idle"]
    busy = rows["busy"]
    assert busy[0] == cid[:12] and busy[3].endswith(" / 64MiB") and busy[5:] == ["0B / 0B", "0B / 0B", "1"]
    # Capped at half a CPU by its quota; some of it surely, on a machine however busy.
    assert 0.5 < float(busy[2].rstrip("%")) < 75
    assert rows["idle"][2:] == ["0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"]
    # A container that isn't running is read without waiting for a second sample.
    fmt = "{{.Container}} {{.Name}} {{.ID}}"
    assert runtime_busybox.out("stats", "--no-stream", "--no-trunc", "--format", fmt, "idle").split() == [
        "idle",
        "idle",
        idle,
    ]
    doc = json.loads(runtime_busybox.out("stats", "--no-stream", "--format", "json", "idle"))
    assert list(doc) == sorted(doc) == [*STATS_FIELDS]
    assert (doc["Container"], doc["ID"], doc["MemPerc"]) == ("idle", idle[:12], "0.00%")
    runtime_busybox("rm", "-f", "busy")


def test_stats_of_unknown_container(busybox: Pallet) -> None:
    proc = busybox("stats", "--no-stream", "nosuch", check=False)
    assert proc.returncode == 1 and proc.stderr == b"Error: No such container: nosuch\n"


def _top_when(p: Pallet, name: str, ready: Any, *ps_args: str) -> list[str]:
    deadline = time.monotonic() + 20
    while True:
        lines = p.out("top", name, *ps_args).splitlines()
        if ready(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_top(runtime_busybox: Pallet) -> None:
    runtime_busybox("run", "-d", "--name", "tp", "busybox", "sh", "-c", "sleep 101 & sleep 102; exit 0")
    lines = _top_when(runtime_busybox, "tp", lambda ls: len(ls) == 4)
    assert lines[0].split() == TOP_TITLES
    assert lines[0].startswith("UID                 PID                 PPID")  # docker's 20-wide columns
    cmds = sorted(line.split(None, 7)[7] for line in lines[1:])
    assert cmds == ["sh -c sleep 101 & sleep 102; exit 0", "sleep 101", "sleep 102"]
    lines = runtime_busybox.out("top", "tp", "-o", "pid,comm").splitlines()
    assert lines[0].split() == ["PID", "COMMAND"] and sorted(ln.split()[1] for ln in lines[1:]) == [
        "sh",
        "sleep",
        "sleep",
    ]
    runtime_busybox("rm", "-f", "tp")


def test_top_of_a_stopped_container(busybox: Pallet) -> None:
    cid = busybox.out("create", "--name", "stopped", "busybox").strip()
    proc = busybox("top", "stopped", check=False)
    assert proc.returncode == 1 and proc.stderr.decode() == f"Error: container {cid} is not running\n"


def test_cpu_and_memory_arithmetic() -> None:
    """docker's CPU % (delta of container over delta of host, times online CPUs) and memory without
    the inactive page cache."""
    doc = {
        "id": "a" * 64,
        "name": "/c",
        "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}, "system_cpu_usage": 20_000_000_000,
                      "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}, "system_cpu_usage": 16_000_000_000},
        "memory_stats": {"usage": 50 << 20, "limit": 100 << 20, "stats": {"total_inactive_file": 10 << 20}},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 1500},
            {"major": 8, "minor": 0, "op": "Write", "value": 2_000_000},
            {"major": 8, "minor": 0, "op": "Total", "value": 2_001_500},
        ]},
        "networks": {"eth0": {"rx_bytes": 1000, "tx_bytes": 12345678}},
        "pids_stats": {"current": 3},
    }  # fmt: skip
    row = stats_row(doc, "c", no_trunc=False)
    assert row["CPUPerc"] == "50.00%"
    assert (row["MemUsage"], row["MemPerc"]) == ("40MiB / 100MiB", "40.00%")
    assert (row["BlockIO"], row["NetIO"], row["PIDs"]) == ("1.5kB / 2MB", "1kB / 12.3MB", "3")


def test_parse_ps_keeps_the_container_rows() -> None:
    out = (
        "UID          PID    PPID  C STIME TTY          TIME CMD\n"
        "root           1       0  0 10:00 ?        00:00:01 /sbin/init splash\n"
        "root         100       1  0 10:01 ?        00:00:00 sh -c sleep 5 & wait\n"
        "root         101     100  0 10:01 ?        00:00:00 sleep 5\n"
    )
    listing = parse_ps(out, {100, 101})
    assert listing["Titles"] == TOP_TITLES
    assert [p[1] for p in listing["Processes"]] == ["100", "101"]
    assert listing["Processes"][0][-1] == "sh -c sleep 5 & wait"
