"""cgroupfs for the built-in runtime: find the hierarchies, create a container's cgroup, apply
`linux.resources`, join it, and remove it again. Works on v1 (with or without a hybrid v2 mount) and v2.

Joining is the costly part: a move through cgroup.procs waits for an RCU grace period. The runtime's
init is therefore born in its v2 cgroup (linux.clone_into_cgroup) and moves itself into the v1 ones
(`enter_self`), which skips that wait; `move` is the fallback.

A relative cgroupsPath is taken relative to the caller's own cgroup in each hierarchy (as runc does), an
absolute one relative to the hierarchy's root.
"""

from __future__ import annotations

import errno
import os
import signal
import time

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"

# Appended after the spec's device rules, as runc does: mknod of anything, the standard char devices,
# ptys and tun. Docker relies on this for /dev/full and /dev/pts/*.
RUNTIME_DEVICE_RULES: tuple[str, ...] = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
)


class Hierarchy:
    """One mounted cgroup hierarchy. (A plain class: dataclass creation costs ~1 ms on the hot path.)"""

    __slots__ = ("mountpoint", "version", "controllers", "own_path")

    def __init__(self, mountpoint: str, version: int, controllers: tuple[str, ...], own_path: str) -> None:
        self.mountpoint = mountpoint
        self.version = version  # 1 or 2
        self.controllers = controllers  # v1: ("cpu",) or ("name=systemd",); v2: ()
        self.own_path = own_path  # the caller's cgroup, relative to this mount's root

    def __repr__(self) -> str:
        return f"Hierarchy({self.mountpoint!r}, v{self.version}, {self.controllers!r}, own={self.own_path!r})"

    @property
    def name(self) -> str:
        return os.path.basename(self.mountpoint)


def _own_cgroups() -> dict[str, str]:
    """Controller list (as in /proc/self/cgroup, "" for v2) -> the caller's cgroup path."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            out[ctrls] = path
    return out


def hierarchies() -> list[Hierarchy]:
    """Every cgroup hierarchy mounted in the caller's mount namespace, first mount of each."""
    own = _own_cgroups()
    seen: set[tuple[int, tuple[str, ...]]] = set()
    found: list[Hierarchy] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, _source, superopts = (right.split() + ["", ""])[:3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            root, mountpoint = fields[3], fields[4].replace("\\040", " ")
            ctrls: tuple[str, ...] = ()
            if fstype == "cgroup2":
                version, key = 2, ""
            else:
                opts = superopts.split(",")
                ctrls = tuple(o for o in opts if o.startswith("name=") or o in _V1_CONTROLLERS)
                version, key = 1, ",".join(ctrls)
            if (version, ctrls) in seen:
                continue
            seen.add((version, ctrls))
            path = own.get(key, "/")
            rel = path[len(root) :] if root != "/" and path.startswith(root) else path
            found.append(Hierarchy(mountpoint, version, ctrls, rel or "/"))
    return found


_V1_CONTROLLERS = frozenset(
    {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio", "blkio"}
    | {"perf_event", "hugetlb", "pids", "rdma", "misc"}
)


def comount_links() -> list[tuple[str, str]]:
    """Symlinks in the host's /sys/fs/cgroup (cpu -> cpu,cpuacct), to repeat inside containers."""
    try:
        return [(e.name, os.readlink(e.path)) for e in os.scandir(CGROUP_ROOT) if e.is_symlink()]
    except OSError:
        return []


def is_unified(hs: list[Hierarchy]) -> bool:
    return any(h.version == 2 and h.mountpoint == CGROUP_ROOT for h in hs)


def container_dir(h: Hierarchy, cgroups_path: str) -> str:
    base = cgroups_path if cgroups_path.startswith("/") else os.path.join(h.own_path, cgroups_path)
    return os.path.normpath(h.mountpoint + "/" + base.lstrip("/"))


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    # cgroupfs files are small; os.read skips the cost of a text-mode file object.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode().strip()


def _makedirs_cpuset(path: str, mountpoint: str) -> None:
    # A new v1 cpuset cgroup starts with empty cpus/mems and refuses tasks until they are copied down.
    parent = os.path.dirname(path)
    if parent != mountpoint and not os.path.isdir(parent):
        _makedirs_cpuset(parent, mountpoint)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not _read(f"{path}/{name}"):
            _write(f"{path}/{name}", _read(f"{parent}/{name}"))


def _enable_v2_controllers(h: Hierarchy, path: str, warnings: list[str]) -> None:
    """Enable controllers in every ancestor's subtree_control between the mount root and `path`."""
    rel = os.path.relpath(os.path.dirname(path), h.mountpoint)
    cur = h.mountpoint
    parts = [] if rel == "." else rel.split("/")
    for part in ["", *parts]:
        cur = os.path.join(cur, part) if part else cur
        try:
            available = _read(f"{cur}/cgroup.controllers").split()
        except OSError:
            return
        for ctrl in ("cpu", "cpuset", "memory", "pids", "io"):
            if ctrl in available:
                try:
                    _write(f"{cur}/cgroup.subtree_control", f"+{ctrl}")
                except OSError as e:
                    warnings.append(f"cgroup v2: cannot enable {ctrl} in {cur}: {e.strerror}")


def _device_line(rule: Mapping[str, Any]) -> str:
    def num(v: Any) -> str:
        return "*" if v is None or v == -1 else str(v)

    kind = rule.get("type") or "a"
    if kind == "a":
        return f"a *:* {rule.get('access') or 'rwm'}"
    return f"{kind} {num(rule.get('major'))}:{num(rule.get('minor'))} {rule.get('access') or 'rwm'}"


def _v1_settings(ctrls: tuple[str, ...], res: Mapping[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    mem = res.get("memory") or {}
    cpu = res.get("cpu") or {}
    if "memory" in ctrls:
        if mem.get("limit") is not None:
            out.append(("memory.limit_in_bytes", str(mem["limit"])))
        if mem.get("swap") is not None:
            out.append(("memory.memsw.limit_in_bytes", str(mem["swap"])))
        if mem.get("reservation") is not None:
            out.append(("memory.soft_limit_in_bytes", str(mem["reservation"])))
        if mem.get("swappiness") is not None:
            out.append(("memory.swappiness", str(mem["swappiness"])))
        if mem.get("disableOOMKiller"):
            out.append(("memory.oom_control", "1"))
    if "cpu" in ctrls:
        if cpu.get("shares"):
            out.append(("cpu.shares", str(cpu["shares"])))
        if cpu.get("period"):
            out.append(("cpu.cfs_period_us", str(cpu["period"])))
        if cpu.get("quota"):
            out.append(("cpu.cfs_quota_us", str(cpu["quota"])))
        if cpu.get("realtimePeriod"):
            out.append(("cpu.rt_period_us", str(cpu["realtimePeriod"])))
        if cpu.get("realtimeRuntime"):
            out.append(("cpu.rt_runtime_us", str(cpu["realtimeRuntime"])))
    if "cpuset" in ctrls:
        if cpu.get("cpus"):
            out.append(("cpuset.cpus", cpu["cpus"]))
        if cpu.get("mems"):
            out.append(("cpuset.mems", cpu["mems"]))
    if "pids" in ctrls and (res.get("pids") or {}).get("limit") is not None:
        limit = int(res["pids"]["limit"])
        out.append(("pids.max", str(limit) if limit > 0 else "max"))
    if "blkio" in ctrls and (res.get("blockIO") or {}).get("weight"):
        out.append(("blkio.weight", str(res["blockIO"]["weight"])))
    if "devices" in ctrls and res.get("devices") is not None:
        for rule in res["devices"]:
            out.append(("devices.allow" if rule.get("allow") else "devices.deny", _device_line(rule)))
        out += [("devices.allow", line) for line in RUNTIME_DEVICE_RULES]
    return out


def _v2_settings(res: Mapping[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    mem = res.get("memory") or {}
    cpu = res.get("cpu") or {}
    limit = mem.get("limit")
    if limit is not None:
        out.append(("memory.max", "max" if limit < 0 else str(limit)))
        swap = mem.get("swap")
        if swap is not None:
            out.append(("memory.swap.max", "max" if swap < 0 else str(max(swap - limit, 0))))
    if mem.get("reservation") is not None:
        out.append(("memory.low", str(mem["reservation"])))
    if cpu.get("shares"):
        # runc's conversion of v1 shares [2, 262144] to v2 weight [1, 10000].
        out.append(("cpu.weight", str(1 + ((int(cpu["shares"]) - 2) * 9999) // 262142)))
    if cpu.get("quota") or cpu.get("period"):
        quota = cpu.get("quota")
        out.append(("cpu.max", f"{quota if quota and quota > 0 else 'max'} {cpu.get('period') or 100000}"))
    if cpu.get("cpus"):
        out.append(("cpuset.cpus", cpu["cpus"]))
    if cpu.get("mems"):
        out.append(("cpuset.mems", cpu["mems"]))
    if (res.get("pids") or {}).get("limit") is not None:
        limit = int(res["pids"]["limit"])
        out.append(("pids.max", str(limit) if limit > 0 else "max"))
    return out


def make_dir(h: Hierarchy, cgroups_path: str, unified: bool, warnings: list[str]) -> str:
    """Create the container's cgroup directory in `h` (v1 cpuset: with cpus and mems copied down; v2 on
    a unified host: with the controllers enabled above it); returns its path."""
    path = container_dir(h, cgroups_path)
    if "cpuset" in h.controllers:
        _makedirs_cpuset(path, h.mountpoint)
    else:
        os.makedirs(path, 0o755, exist_ok=True)
    if h.version == 2 and unified:
        _enable_v2_controllers(h, path, warnings)
    return path


def apply(h: Hierarchy, path: str, resources: Mapping[str, Any] | None, unified: bool) -> list[str]:
    """Write `resources` into the container's cgroup directory `path` of `h`.

    Returns warnings (settings this kernel lacks); raises OSError on anything that must not be ignored.
    """
    warnings: list[str] = []
    res = resources or {}
    if h.version == 1:
        settings = _v1_settings(h.controllers, res)
    elif unified:
        settings = _v2_settings(res)
        if res.get("devices") is not None:
            # v2 has no devices controller: the allow-list is an eBPF program on the cgroup.
            from pallet.runtime import devices_bpf

            devices_bpf.attach(path, [*res["devices"], *RUNTIME_DEVICE_RULES])
    else:
        settings = []  # the hybrid v2 mount only tracks membership
    for name, value in settings:
        try:
            _write(f"{path}/{name}", value)
        except OSError as e:
            if e.errno == errno.ENOENT and name in ("memory.memsw.limit_in_bytes", "blkio.weight"):
                warnings.append(f"cgroup: {name} is not supported by this kernel; ignored")
                continue
            raise OSError(e.errno, f"cgroup write {value!r}: {e.strerror}", f"{path}/{name}") from None
    return warnings


def move(path: str, pid: int) -> None:
    """Move process `pid` into the cgroup directory `path` through cgroup.procs. That takes the cgroup
    threadgroup lock, whose writer waits for an RCU grace period (6-15 ms): see `enter_self` and
    linux.clone_into_cgroup for the ways around it."""
    _write(f"{path}/cgroup.procs", str(pid))


def relative_dir(h: Hierarchy, cgroups_path: str) -> str:
    """The container's cgroup directory relative to the mount point of `h`."""
    path = container_dir(h, cgroups_path)
    if path.startswith(h.mountpoint + "/"):
        return path[len(h.mountpoint) + 1 :]
    return os.path.relpath(path, h.mountpoint)


def enter_self(mount_fd: int, rel: str) -> None:
    """Move the calling thread into the v1 cgroup `rel` of the hierarchy mounted at `mount_fd`.

    Writing "0" to `tasks` moves only the writer's thread, so the kernel skips the cgroup threadgroup lock
    (whose writer waits for an RCU grace period, ~10 ms): for a single-threaded process, that is the whole
    process, at a fraction of a millisecond. (v2 refuses single threads across domains.)
    """
    fd = os.open(f"{rel}/tasks", os.O_WRONLY | os.O_CLOEXEC, dir_fd=mount_fd)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)


def _pids(path: str) -> list[int]:
    try:
        return [int(p) for p in _read(f"{path}/cgroup.procs").split()]
    except OSError:
        return []


def remove(cgroups_path: str, hs: list[Hierarchy] | None = None, *, timeout: float = 2.0) -> None:
    """Kill anything left in the container's cgroup and remove its directory in every hierarchy."""
    hs = hierarchies() if hs is None else hs
    paths = [p for p in (container_dir(h, cgroups_path) for h in hs) if os.path.isdir(p)]
    for pid in {pid for p in paths for pid in _pids(p)}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for path in paths:
        # Children first: cgroup dirs can only be removed leaf-up.
        for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda t: -t[0].count("/")):
            while True:
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    # EBUSY while the last tasks are still exiting; retry briefly.
                    if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)


def container_pids(cgroups_path: str, hs: list[Hierarchy] | None = None) -> list[int]:
    """Every process in the container's cgroup (and below it), in any hierarchy: what `top` lists."""
    hs = hierarchies() if hs is None else hs
    found: set[int] = set()
    for h in hs:
        top = container_dir(h, cgroups_path)
        if not os.path.isdir(top):
            continue
        for dirpath, _dirs, _files in os.walk(top):
            found.update(_pids(dirpath))
    return sorted(found)
