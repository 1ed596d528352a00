"""docker update: change a container's resource limits and restart policy.

The new values go into HostConfig, into the bundle's linux.resources (so that a restart by the
monitor keeps them) and, for a running container, into its live cgroup files. Checks are
dockerd's for an update: the request's own values first (verifyPlatformContainerResources),
then against what the container already has (Container.UpdateContainer).
"""

from __future__ import annotations

import json
import os
from typing import Any

from pallet.engine.containers import lookup
from pallet.engine.core import Engine
from pallet.errors import Conflict, InvalidArgument, PalletError
from pallet.state import containers as records

RESOURCE_KEYS = (
    "Memory",
    "MemorySwap",
    "MemoryReservation",
    "NanoCpus",
    "CpuShares",
    "CpuQuota",
    "CpuPeriod",
    "CpusetCpus",
    "CpusetMems",
    "PidsLimit",
)


def update(
    engine: Engine, ref: str, changes: dict[str, Any], restart_policy: dict[str, Any] | None = None
) -> list[str]:
    """`changes`: HostConfig resource keys, docker's zero meaning "leave as is" (PidsLimit None).
    Returns dockerd's warnings."""
    from pallet.engine.lifecycle import container_lock, refresh

    warnings = verify(changes)
    if restart_policy is not None:
        from pallet.runtime import restart

        try:
            restart.validate(restart_policy)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
    rec = lookup(engine, ref)
    with container_lock(engine, rec.id):
        rec = refresh(engine, rec)
        old = dict(rec.config["HostConfig"])
        try:
            new = merge(old, changes, restart_policy)
        except ValueError as e:
            raise Conflict(f"Cannot update container {rec.id}: {e}") from None
        records.update(engine.conn, rec.id, host_config=new)
        st = rec.state
        try:
            if st.get("Running") and not st.get("Restarting"):
                apply_live(engine, rec, new)
        except OSError as e:
            records.update(engine.conn, rec.id, host_config=old)
            raise PalletError(f"Cannot update container {rec.id}: {e.strerror or e}") from None
        _patch_bundle(engine, rec.id, new)
    return warnings


def verify(changes: dict[str, Any]) -> list[str]:
    """dockerd's checks of the requested values alone (with update=true)."""
    from pallet.engine import resources

    mem = int(changes.get("Memory") or 0)
    swap = int(changes.get("MemorySwap") or 0)
    reservation = int(changes.get("MemoryReservation") or 0)
    nano = int(changes.get("NanoCpus") or 0)
    period = int(changes.get("CpuPeriod") or 0)
    quota = int(changes.get("CpuQuota") or 0)
    if mem != 0 and mem < resources.MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if mem > 0 and swap > 0 and swap < mem:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if reservation != 0 and reservation < resources.MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if mem > 0 and reservation > 0 and mem < reservation:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    resources.check_cpu_conflicts(nano, period, quota)
    ncpu = resources.host_cpus()
    if nano < 0 or nano > ncpu * 1_000_000_000:
        raise InvalidArgument(
            f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )
    resources.check_cfs(period, quota)
    if changes.get("CpusetCpus"):
        _check_cpuset(str(changes["CpusetCpus"]), ncpu)
    return []


def _check_cpuset(value: str, ncpu: int) -> None:
    wanted: set[int] = set()
    for part in value.split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()) or (dash and int(hi) < int(lo)):
            raise InvalidArgument(f"Invalid value {value} for cpuset cpus")
        wanted.update(range(int(lo), int(hi if dash else lo) + 1))
    available = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(ncpu))
    if not wanted <= available:
        shown = ",".join(str(c) for c in sorted(available))
        raise InvalidArgument(f"Requested CPUs are not available - requested {value}, available: {shown}")


def merge(
    hc: dict[str, Any], changes: dict[str, Any], restart_policy: dict[str, Any] | None
) -> dict[str, Any]:
    """docker's Container.UpdateContainer: the new HostConfig, or ValueError (a conflict)."""
    cur = dict(hc)

    def has(key: str) -> bool:
        return bool(int(cur.get(key) or 0) > 0)

    nano, period, quota = (int(changes.get(k) or 0) for k in ("NanoCpus", "CpuPeriod", "CpuQuota"))
    if nano > 0 and has("CpuPeriod"):
        raise ValueError(
            "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"
        )
    if nano > 0 and has("CpuQuota"):
        raise ValueError("Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set")
    if period > 0 and has("NanoCpus"):
        raise ValueError("Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set")
    if quota > 0 and has("NanoCpus"):
        raise ValueError("Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set")
    for key in ("CpuShares", "NanoCpus", "CpuPeriod", "CpuQuota", "MemoryReservation", "MemorySwap"):
        if changes.get(key):
            cur[key] = int(changes[key])
    for key in ("CpusetCpus", "CpusetMems"):
        if changes.get(key):
            cur[key] = str(changes[key])
    mem = int(changes.get("Memory") or 0)
    if mem:
        if mem > int(hc.get("MemorySwap") or 0) and not changes.get("MemorySwap"):
            raise ValueError(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap "
                "at the same time"
            )
        cur["Memory"] = mem
    if changes.get("PidsLimit") is not None:
        limit = int(changes["PidsLimit"])
        cur["PidsLimit"] = limit if limit > 0 else None
    if restart_policy is not None and restart_policy.get("Name"):
        if hc.get("AutoRemove") and restart_policy["Name"] != "no":
            raise ValueError(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
            )
        cur["RestartPolicy"] = dict(restart_policy)
    return cur


def apply_live(engine: Engine, rec: records.ContainerRecord, hc: dict[str, Any]) -> None:
    """Write the limits into the running container's cgroups (v1 or v2)."""
    from pallet.engine import resources
    from pallet.engine.lifecycle import cgroups_path
    from pallet.runtime import cgroups

    res = resources.oci_resources(hc)
    mem, cpu = res.get("memory") or {}, res.get("cpu") or {}
    pids = (hc.get("PidsLimit") or 0) if "PidsLimit" in hc else None
    path = cgroups_path(engine, rec)
    hs = cgroups.hierarchies()
    unified = cgroups.is_unified(hs)
    for h in hs:
        d = cgroups.container_dir(h, path)
        if not os.path.isdir(d):
            continue
        if h.version == 1:
            ctrls = h.controllers
            if "memory" in ctrls:
                _v1_memory(d, mem)
            if "cpu" in ctrls:
                _write_each(d, [("cpu.shares", cpu.get("shares")), ("cpu.cfs_period_us", cpu.get("period")),
                                ("cpu.cfs_quota_us", cpu.get("quota"))])  # fmt: skip
            if "cpuset" in ctrls:
                _write_each(d, [("cpuset.cpus", cpu.get("cpus")), ("cpuset.mems", cpu.get("mems"))])
            if "pids" in ctrls and pids is not None:
                _write(d, "pids.max", str(pids) if int(pids) > 0 else "max")
        elif unified:
            _v2(d, mem, cpu, pids)


def _v1_memory(d: str, mem: dict[str, Any]) -> None:
    limit, swap = mem.get("limit"), mem.get("swap")
    memsw = os.path.join(d, "memory.memsw.limit_in_bytes")
    pairs = [("memory.limit_in_bytes", limit)]
    if swap is not None and os.path.exists(memsw):
        pairs.append(("memory.memsw.limit_in_bytes", swap))
        current = int(_read(memsw))
        # The kernel wants memory <= memsw at every step: raise memsw first when growing.
        if swap == -1 or int(swap) > current:
            pairs.reverse()
    pairs.append(("memory.soft_limit_in_bytes", mem.get("reservation")))
    _write_each(d, pairs)


def _v2(d: str, mem: dict[str, Any], cpu: dict[str, Any], pids: Any) -> None:
    limit, swap = mem.get("limit"), mem.get("swap")
    pairs: list[tuple[str, Any]] = []
    if limit is not None:
        pairs.append(("memory.max", "max" if int(limit) < 0 else limit))
        if swap is not None:
            pairs.append(("memory.swap.max", "max" if int(swap) < 0 else max(int(swap) - int(limit), 0)))
    pairs.append(("memory.low", mem.get("reservation")))
    if cpu.get("shares"):
        pairs.append(("cpu.weight", 1 + ((int(cpu["shares"]) - 2) * 9999) // 262142))
    if cpu.get("quota") or cpu.get("period"):
        quota = cpu.get("quota")
        pairs.append(
            ("cpu.max", f"{quota if quota and int(quota) > 0 else 'max'} {cpu.get('period') or 100000}")
        )
    pairs += [("cpuset.cpus", cpu.get("cpus")), ("cpuset.mems", cpu.get("mems"))]
    if pids is not None:
        pairs.append(("pids.max", str(pids) if int(pids) > 0 else "max"))
    _write_each(d, pairs)


def _write_each(d: str, pairs: list[tuple[str, Any]]) -> None:
    for name, value in pairs:
        if value is not None and value != "":
            _write(d, name, str(value))


def _write(d: str, name: str, value: str) -> None:
    try:
        with open(os.path.join(d, name), "w") as f:
            f.write(value)
    except OSError as e:
        raise OSError(e.errno, f"failed to write {value} to {name}: {e.strerror}") from None


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _patch_bundle(engine: Engine, cid: str, hc: dict[str, Any]) -> None:
    """Carry the new limits into config.json: the monitor restarts from this bundle."""
    from pallet.engine import resources

    path = engine.paths.container_dir(cid) / "config.json"
    try:
        spec = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return  # never started: the bundle is written from HostConfig at the first start
    res = spec.setdefault("linux", {}).setdefault("resources", {})
    for key in ("memory", "cpu", "pids"):
        res.pop(key, None)
    res.update(resources.oci_resources(hc))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(json.dumps(spec).encode())
    os.replace(tmp, path)
