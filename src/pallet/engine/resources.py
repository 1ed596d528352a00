"""A container's resource limits: dockerd's checks and defaults for HostConfig's memory, CPU, pids
and ulimit fields at create (adaptContainerSettings + verifyPlatformContainerResources), and their
OCI form (linux.resources, process.rlimits) for the bundle."""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping

from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

MIN_MEMORY = 6 * 1024 * 1024  # dockerd's linuxMinMemory
MIN_CPU_SHARES, MAX_CPU_SHARES = 2, 262144
CFS_PERIOD_US = 100_000  # what --cpus turns into: quota = cpus * period
ULIMIT_NAMES = frozenset(
    {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss"}
    | {"rtprio", "rttime", "sigpending", "stack"}
)


def host_cpus() -> int:
    """sysinfo.NumCPU: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


def _memory_hierarchy_version() -> tuple[int, str] | None:
    from pallet.runtime import cgroups

    for h in cgroups.hierarchies():
        if h.version == 1 and "memory" in h.controllers:
            return 1, h.mountpoint
        if h.version == 2 and h.mountpoint == cgroups.CGROUP_ROOT:
            return 2, h.mountpoint
    return None


def _swap_accounting(memory: tuple[int, str] | None) -> bool:
    if memory is None:
        return False
    version, mountpoint = memory
    if version == 2:
        return True
    return os.path.exists(os.path.join(mountpoint, "memory.memsw.limit_in_bytes"))


def _cpu_list(spec: str) -> set[int] | None:
    """A cpuset list ("0-3,5") as a set, None when malformed."""
    out: set[int] = set()
    for part in spec.split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            return None
        a, b = int(lo), int(hi) if dash else int(lo)
        if b < a:
            return None
        out.update(range(a, b + 1))
    return out


def _host_set(name: str, fallback: set[int]) -> set[int]:
    for path in (f"/sys/fs/cgroup/cpuset/cpuset.{name}", f"/sys/fs/cgroup/cpuset.{name}.effective"):
        try:
            with open(path) as f:
                found = _cpu_list(f.read().strip())
        except OSError:
            continue
        if found is not None:
            return found
    return fallback


def _check_cpuset(value: str, kind: str, available: set[int]) -> None:
    if not value:
        return
    wanted = _cpu_list(value)
    label = "cpus" if kind == "cpus" else "mems"
    if wanted is None:
        raise InvalidArgument(f"Invalid value {value} for cpuset {label}")
    if not wanted <= available:
        what = "CPUs" if kind == "cpus" else "memory nodes"
        shown = ",".join(str(c) for c in sorted(available))
        raise InvalidArgument(f"Requested {what} are not available - requested {value}, available: {shown}")


def _check_memory(hc: dict[str, Any], warnings: list[str]) -> None:
    mem = int(hc.get("Memory") or 0)
    swap = int(hc.get("MemorySwap") or 0)
    reservation = int(hc.get("MemoryReservation") or 0)
    oom_kill_disable = bool(hc.get("OomKillDisable"))
    # Only limits need to know the memory hierarchy (reading mountinfo is not free on the hot path).
    memory_cg = _memory_hierarchy_version() if mem or swap or oom_kill_disable else None
    if mem != 0 and mem < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if mem > 0 and swap == 0:
        swap = 2 * mem  # dockerd's default: as much swap as memory
    if mem > 0 and swap != -1 and not _swap_accounting(memory_cg):
        warnings.append(
            "Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
            "Memory limited without swap."
        )
        swap = -1
    if mem > 0 and swap > 0 and swap < mem:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if mem == 0 and swap > 0:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and int(swappiness) != -1:
        if not 0 <= int(swappiness) <= 100:
            raise InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    else:
        swappiness = None
    if reservation != 0 and reservation < MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if mem > 0 and reservation > 0 and mem < reservation:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    if oom_kill_disable and memory_cg is not None and memory_cg[0] == 2:
        warnings.append("Your kernel does not support OomKillDisable. OomKillDisable discarded.")
        oom_kill_disable = False
    elif oom_kill_disable and mem == 0:
        warnings.append(
            "OOM killer is disabled for the container, but no memory limit is set, this can result in "
            "the system running out of resources."
        )
    hc.update(Memory=mem, MemorySwap=swap, MemoryReservation=reservation, MemorySwappiness=swappiness)
    hc["OomKillDisable"] = oom_kill_disable


def check_cpu_conflicts(nano: int, period: int, quota: int) -> None:
    """--cpus excludes --cpu-period and --cpu-quota (dockerd's messages; create and update)."""
    if nano > 0 and period > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")


def check_cfs(period: int, quota: int) -> None:
    """The CFS period and quota the kernel takes (dockerd's messages; create and update)."""
    if period != 0 and not 1000 <= period <= 1_000_000:
        raise InvalidArgument(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if 0 < quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")


def _check_cpu(hc: dict[str, Any], warnings: list[str]) -> None:
    nano = int(hc.get("NanoCpus") or 0)
    period = int(hc.get("CpuPeriod") or 0)
    quota = int(hc.get("CpuQuota") or 0)
    shares = int(hc.get("CpuShares") or 0)
    ncpu = host_cpus()
    check_cpu_conflicts(nano, period, quota)
    # Below 0.01 CPU the quota would be under the kernel's 1 ms minimum.
    if nano < 0 or nano > ncpu * 1_000_000_000 or 0 < nano * CFS_PERIOD_US // 1_000_000_000 < 1000:
        raise InvalidArgument(
            f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )
    check_cfs(period, quota)
    if shares < 0:
        raise InvalidArgument(f"invalid CPU shares ({shares}): value must be a positive integer")
    if 0 < shares < MIN_CPU_SHARES:
        warnings.append(f"Changing requested CPUShares of {shares} to minimum allowed of {MIN_CPU_SHARES}")
        hc["CpuShares"] = MIN_CPU_SHARES
    elif shares > MAX_CPU_SHARES:
        warnings.append(f"Changing requested CPUShares of {shares} to maximum allowed of {MAX_CPU_SHARES}")
        hc["CpuShares"] = MAX_CPU_SHARES
    if hc.get("CpusetCpus"):
        _check_cpuset(str(hc["CpusetCpus"]), "cpus", _host_set("cpus", set(range(ncpu))))
    if hc.get("CpusetMems"):
        _check_cpuset(str(hc["CpusetMems"]), "mems", _host_set("mems", {0}))


def ulimit_warnings(ulimits: list[Mapping[str, Any]] | None) -> list[str]:
    """A ulimit above this host's hard limit can't be granted without CAP_SYS_RESOURCE: it is clamped
    (in the spec) and said so here."""
    out = []
    for u in ulimits or []:
        res = getattr(resource, "RLIMIT_" + str(u.get("Name", "")).upper(), None)
        if res is None:
            continue
        cap = resource.getrlimit(res)[1]
        if cap == resource.RLIM_INFINITY:
            continue
        soft, hard = int(u["Soft"]), int(u["Hard"])
        if hard < 0 or hard > cap or soft < 0 or soft > cap:
            new_hard = cap if hard < 0 else min(hard, cap)
            new_soft = min(new_hard, cap if soft < 0 else soft)
            out.append(
                f"ulimit {u['Name']}={soft}:{hard} exceeds the host's hard limit ({cap}); "
                f"clamped to {new_soft}:{new_hard}"
            )
    return out


def _check_ulimits(hc: dict[str, Any], warnings: list[str]) -> None:
    for u in hc.get("Ulimits") or []:
        name = str(u.get("Name", ""))
        if name not in ULIMIT_NAMES:
            raise InvalidArgument(f"invalid ulimit type: {name}")
        if int(u["Hard"]) != -1 and int(u["Soft"]) > int(u["Hard"]):
            raise InvalidArgument(
                f"ulimit soft limit must be less than or equal to hard limit: {u['Soft']} > {u['Hard']}"
            )
    warnings += ulimit_warnings(hc.get("Ulimits"))


def check(hc: dict[str, Any], warnings: list[str]) -> None:
    """Validate and normalize (in place) HostConfig's resources, as dockerd does at create."""
    _check_memory(hc, warnings)
    _check_cpu(hc, warnings)
    limit = hc.get("PidsLimit")
    hc["PidsLimit"] = int(limit) if limit is not None and int(limit) > 0 else None
    _check_ulimits(hc, warnings)


def oci_resources(hc: Mapping[str, Any]) -> dict[str, Any]:
    """HostConfig -> the OCI linux.resources fields (devices aside), as dockerd's spec builder."""
    out: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if hc.get("Memory"):
        memory["limit"] = int(hc["Memory"])
    if hc.get("MemorySwap"):
        memory["swap"] = int(hc["MemorySwap"])
    if hc.get("MemoryReservation"):
        memory["reservation"] = int(hc["MemoryReservation"])
    if hc.get("MemorySwappiness") is not None:
        memory["swappiness"] = int(hc["MemorySwappiness"])
    if hc.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    cpu: dict[str, Any] = {}
    if hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    if hc.get("NanoCpus"):
        cpu["period"] = CFS_PERIOD_US
        cpu["quota"] = int(hc["NanoCpus"]) * CFS_PERIOD_US // 1_000_000_000
    if hc.get("CpuPeriod"):
        cpu["period"] = int(hc["CpuPeriod"])
    if hc.get("CpuQuota"):
        cpu["quota"] = int(hc["CpuQuota"])
    if hc.get("CpusetCpus"):
        cpu["cpus"] = str(hc["CpusetCpus"])
    if hc.get("CpusetMems"):
        cpu["mems"] = str(hc["CpusetMems"])
    if memory:
        out["memory"] = memory
    if cpu:
        out["cpu"] = cpu
    if hc.get("PidsLimit"):
        out["pids"] = {"limit": int(hc["PidsLimit"])}
    return out


def oci_rlimits(hc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"type": "RLIMIT_" + str(u["Name"]).upper(), "soft": int(u["Soft"]), "hard": int(u["Hard"])}
        for u in hc.get("Ulimits") or []
    ]
