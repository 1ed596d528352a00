"""Container resource usage as the Engine API's GET /containers/{id}/stats returns it: one sample
read from the container's cgroup and network namespace, with the previous sample as precpu_stats
(docker's CPU % is the delta between the two)."""

from __future__ import annotations

import time
from typing import Any

from pallet.engine.containers import now_rfc3339
from pallet.state.containers import ContainerRecord

ZERO_TIME = "0001-01-01T00:00:00Z"


def cgroups_path(rec: ContainerRecord) -> str:
    """Where the bundle puts the container's cgroup (engine/bundle.py)."""
    return f"/pallet/{rec.id}"


def _networks(rec: ContainerRecord) -> dict[str, Any] | None:
    """Per-interface counters of the container's own network namespace (none for --network host, whose
    interfaces are the host's, nor for loopback)."""
    pid = int(rec.state.get("Pid") or 0)
    if pid <= 0 or rec.config["HostConfig"].get("NetworkMode") == "host":
        return None
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return None
    out: dict[str, Any] = {}
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        v = [int(x) for x in rest.split()]
        if name == "lo" or len(v) < 16:
            continue
        out[name] = {
            "rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
            "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11],
        }  # fmt: skip
    return out or None


def _empty() -> dict[str, Any]:
    return {
        "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
        "memory_stats": {},
        "pids_stats": {},
        "blkio_stats": {"io_service_bytes_recursive": None},
    }


def sample(rec: ContainerRecord, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stats document for `rec`; `previous` (an earlier sample of the same container) fills the
    pre* fields. A container that isn't running reads as zeros, as dockerd reports it."""
    running = bool(rec.state.get("Running"))
    if running:
        from pallet.runtime import cgroup_stats

        doc = cgroup_stats.read(cgroups_path(rec))
    else:
        doc = _empty()
    doc = {
        "read": now_rfc3339() if running else ZERO_TIME,
        "preread": (previous or {}).get("read", ZERO_TIME),
        "pids_stats": doc["pids_stats"],
        "blkio_stats": doc["blkio_stats"],
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": doc["cpu_stats"],
        "precpu_stats": (previous or {}).get("cpu_stats") or _empty()["cpu_stats"],
        "memory_stats": doc["memory_stats"],
        "name": "/" + rec.name,
        "id": rec.id,
    }
    networks = _networks(rec) if running else None
    if networks:
        doc["networks"] = networks
    return doc


def samples(recs: list[ContainerRecord], interval: float) -> list[dict[str, Any]]:
    """Two samples of each container `interval` seconds apart; the second, with the first as precpu
    (what dockerd's non-streaming stats return)."""
    first = [sample(r) for r in recs]
    if any(r.state.get("Running") for r in recs):
        time.sleep(interval)
    return [sample(r, prev) for r, prev in zip(recs, first, strict=True)]
