"""Resource usage of a container's cgroup, read from cgroupfs (v1 or v2), in the shape of the
Engine API's stats (cpu_stats, memory_stats, pids_stats, blkio_stats), plus the host-wide numbers
docker computes percentages against (/proc/stat, /proc/meminfo)."""

from __future__ import annotations

import os
from typing import Any

from pallet.runtime import cgroups

_NS_PER_TICK = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _int(path: str) -> int:
    text = _read(path)
    try:
        return int(text) if text else 0
    except ValueError:
        return 0  # "max" and the like


def _kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def system_cpu_usage() -> tuple[int, int]:
    """(host CPU time in ns since boot, online CPUs), from /proc/stat as docker's collector reads it."""
    total, cpus = 0, 0
    for line in (_read("/proc/stat") or "").splitlines():
        if line.startswith("cpu "):
            total = sum(int(v) for v in line.split()[1:8]) * _NS_PER_TICK
        elif line.startswith("cpu"):
            cpus += 1
    return total, cpus


def host_memory() -> int:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _dirs(cgroups_path: str) -> dict[str, str]:
    """Controller (v1) or "unified" (v2) -> the container's cgroup directory."""
    out: dict[str, str] = {}
    for h in cgroups.hierarchies():
        path = cgroups.container_dir(h, cgroups_path)
        if h.version == 2 and h.mountpoint == cgroups.CGROUP_ROOT:
            out["unified"] = path
        for ctrl in h.controllers:
            out.setdefault(ctrl, path)
    return out


def _cpu_v1(d: dict[str, str]) -> dict[str, Any]:
    acct, cpu = d.get("cpuacct", ""), d.get("cpu", "")
    ticks = _kv(f"{acct}/cpuacct.stat")
    percpu = [int(v) for v in (_read(f"{acct}/cpuacct.usage_percpu") or "").split()]
    throttle = _kv(f"{cpu}/cpu.stat")
    return {
        "cpu_usage": {
            "total_usage": _int(f"{acct}/cpuacct.usage"),
            "percpu_usage": percpu,
            "usage_in_kernelmode": ticks.get("system", 0) * _NS_PER_TICK,
            "usage_in_usermode": ticks.get("user", 0) * _NS_PER_TICK,
        },
        "throttling_data": {
            "periods": throttle.get("nr_periods", 0),
            "throttled_periods": throttle.get("nr_throttled", 0),
            "throttled_time": throttle.get("throttled_time", 0),
        },
    }


def _cpu_v2(path: str) -> dict[str, Any]:
    st = _kv(f"{path}/cpu.stat")
    return {
        "cpu_usage": {
            "total_usage": st.get("usage_usec", 0) * 1000,
            "usage_in_kernelmode": st.get("system_usec", 0) * 1000,
            "usage_in_usermode": st.get("user_usec", 0) * 1000,
        },
        "throttling_data": {
            "periods": st.get("nr_periods", 0),
            "throttled_periods": st.get("nr_throttled", 0),
            "throttled_time": st.get("throttled_usec", 0) * 1000,
        },
    }


def _memory(d: dict[str, str], machine: int) -> dict[str, Any]:
    if "memory" in d:
        m = d["memory"]
        out: dict[str, Any] = {
            "usage": _int(f"{m}/memory.usage_in_bytes"),
            "max_usage": _int(f"{m}/memory.max_usage_in_bytes"),
            "failcnt": _int(f"{m}/memory.failcnt"),
            "stats": _kv(f"{m}/memory.stat"),
            "limit": _int(f"{m}/memory.limit_in_bytes"),
        }
    elif "unified" in d:
        u = d["unified"]
        out = {"usage": _int(f"{u}/memory.current"), "stats": _kv(f"{u}/memory.stat")}
        out["limit"] = _int(f"{u}/memory.max") or machine
    else:
        return {}
    # No limit of its own: dockerd reports the machine's memory.
    if machine and (out["limit"] <= 0 or out["limit"] > machine):
        out["limit"] = machine
    return out


def _pids(d: dict[str, str]) -> dict[str, Any]:
    path = d.get("pids") or d.get("unified")
    if not path:
        return {}
    out = {"current": _int(f"{path}/pids.current")}
    limit = _int(f"{path}/pids.max")
    if limit:
        out["limit"] = limit
    return out


def _blkio(d: dict[str, str]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    if "blkio" in d:
        for name in ("blkio.io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive"):
            for line in (_read(f"{d['blkio']}/{name}") or "").splitlines():
                fields = line.split()
                if len(fields) == 3 and ":" in fields[0]:
                    major, _, minor = fields[0].partition(":")
                    entries.append({"major": int(major), "minor": int(minor), "op": fields[1],
                                    "value": int(fields[2])})  # fmt: skip
            if entries:
                break
    elif "unified" in d:
        for line in (_read(f"{d['unified']}/io.stat") or "").splitlines():
            dev, *pairs = line.split()
            major, _, minor = dev.partition(":")
            values = dict(p.split("=", 1) for p in pairs if "=" in p)
            for key, op in (("rbytes", "read"), ("wbytes", "write")):
                if key in values:
                    entries.append({"major": int(major), "minor": int(minor), "op": op,
                                    "value": int(values[key])})  # fmt: skip
    return {"io_service_bytes_recursive": entries or None}


def read(cgroups_path: str) -> dict[str, Any]:
    """One sample of the container's usage: {"cpu_stats", "memory_stats", "pids_stats", "blkio_stats"}."""
    d = _dirs(cgroups_path)
    system, online = system_cpu_usage()
    cpu = _cpu_v1(d) if "cpuacct" in d else _cpu_v2(d["unified"]) if "unified" in d else {}
    cpu.update(system_cpu_usage=system, online_cpus=online)
    return {
        "cpu_stats": cpu,
        "memory_stats": _memory(d, host_memory()),
        "pids_stats": _pids(d),
        "blkio_stats": _blkio(d),
    }
