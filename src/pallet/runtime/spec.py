"""Generate OCI runtime-spec config.json documents with Docker's defaults.

The defaults follow what moby's `daemon/pkg/oci/defaults.go` plus the daemon's spec options
(`daemon/oci_linux.go`) produce for a plain `docker run`: 14 capabilities, the standard mounts, masked and
read-only paths, the device cgroup allow-list and the default seccomp profile (seccomp_default.json,
see SECCOMP_NOTICE for its origin and licence).
"""

from __future__ import annotations

import json
import os
import resource
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from pallet.runtime.process import merge_env

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

OCI_VERSION = "1.1.0"  # crun 1.8 (Debian 12) rejects 1.2.x; nothing here needs more
DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
DEFAULT_NOFILE = 1048576

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


def _dev_rule(allow: bool, major: int | None = None, minor: int | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": allow}
    if major is not None:
        rule.update(type="c", major=major, minor=minor)
    rule["access"] = "rwm"
    return rule


# Docker's device cgroup: deny all, then null, zero, full... in defaults.go order; fuse stays denied.
DEVICE_CGROUP_RULES: tuple[dict[str, Any], ...] = (
    _dev_rule(False),
    _dev_rule(True, 1, 5),
    _dev_rule(True, 1, 3),
    _dev_rule(True, 1, 9),
    _dev_rule(True, 1, 8),
    _dev_rule(True, 5, 0),
    _dev_rule(True, 5, 1),
    _dev_rule(False, 10, 229),
)

# Native architecture names as moby's profile uses them (libseccomp's), keyed by uname -m.
_UNAME_TO_NATIVE = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "x86",
    "i686": "x86",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64",
    "loongarch64": "loong64",
}
_NATIVE_TO_SCMP = {
    "x86": "SCMP_ARCH_X86",
    "amd64": "SCMP_ARCH_X86_64",
    "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64",
    "loong64": "SCMP_ARCH_LOONGARCH64",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64n32": "SCMP_ARCH_MIPS64N32",
    "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mips3l64n32": "SCMP_ARCH_MIPSEL64N32",
    "mipsle": "SCMP_ARCH_MIPSEL",
    "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "riscv64": "SCMP_ARCH_RISCV64",
    "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X",
}


def native_arch() -> str:
    """The host architecture in the naming of moby's seccomp profile ("amd64", "arm64", ...)."""
    machine = os.uname().machine
    return _UNAME_TO_NATIVE.get(machine, machine)


def load_default_profile() -> dict[str, Any]:
    """Docker's default seccomp profile (moby's profiles/seccomp/default.json)."""
    data: dict[str, Any] = json.loads(Path(__file__).with_name("seccomp_default.json").read_bytes())
    return data


def _kernel_at_least(version: str, release: str) -> bool:
    def parse(v: str) -> tuple[int, ...]:
        nums: list[int] = []
        for part in v.split("-")[0].split(".")[:2]:
            digits = "".join(ch for ch in part if ch.isdigit())
            nums.append(int(digits or 0))
        return tuple(nums)

    return parse(release) >= parse(version)


def seccomp_for(
    profile: Mapping[str, Any], caps: Sequence[str], arch: str, *, kernel: str | None = None
) -> dict[str, Any]:
    """Resolve a moby-format seccomp profile into the OCI `linux.seccomp` section.

    `caps` is the container's bounding set; `arch` is moby's native name ("amd64") or `uname -m`.
    Entries are kept when all their `includes` hold and none of their `excludes` do, as moby does.
    """
    native = _UNAME_TO_NATIVE.get(arch, arch)
    release = kernel if kernel is not None else os.uname().release
    if profile.get("architectures") and profile.get("archMap"):
        raise ValueError("seccomp profile has both 'architectures' and 'archMap'")
    out: dict[str, Any] = {}
    for key in ("defaultAction", "defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"):
        if profile.get(key) not in (None, "", []):
            out[key] = profile[key]
    arches = list(profile.get("architectures") or [])
    scmp = _NATIVE_TO_SCMP.get(native)
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == scmp:
            arches = [scmp, *(entry.get("subArchitectures") or [])]
            break
    if arches:
        out["architectures"] = arches
    capset = set(caps)
    syscalls: list[dict[str, Any]] = []
    for call in profile.get("syscalls") or []:
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        if call.get("name") and call.get("names"):
            raise ValueError("seccomp syscall entry has both 'name' and 'names'")
        exc = call.get("excludes") or {}
        if native in (exc.get("arches") or []):
            continue
        if any(c in capset for c in exc.get("caps") or []):
            continue
        if exc.get("minKernel") and _kernel_at_least(exc["minKernel"], release):
            continue
        inc = call.get("includes") or {}
        if inc.get("arches") and native not in inc["arches"]:
            continue
        if any(c not in capset for c in inc.get("caps") or []):
            continue
        if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"], release):
            continue
        rule: dict[str, Any] = {"names": list(names), "action": call["action"]}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [dict(a) for a in call["args"]]
        syscalls.append(rule)
    if syscalls:
        out["syscalls"] = syscalls
    return out


def _thermal_throttle_paths() -> list[str]:
    # moby masks per-CPU thermal_throttle dirs too (GHSA-6fw5-f8r9-fgfm).
    paths: list[str] = []
    try:
        possible = Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        return paths
    for part in possible.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit():
            continue
        for cpu in range(int(lo), int(hi or lo) + 1):
            p = f"/sys/devices/system/cpu/cpu{cpu}/thermal_throttle"
            if os.path.exists(p):
                paths.append(p)
    return paths


def default_sysctls(host_network: bool) -> dict[str, str]:
    """Docker's safe defaults for a container with its own network namespace."""
    sysctl: dict[str, str] = {}
    if not host_network:
        if os.path.exists("/proc/sys/net/ipv4/ping_group_range"):
            sysctl["net.ipv4.ping_group_range"] = "0 2147483647"
        if os.path.exists("/proc/sys/net/ipv4/ip_unprivileged_port_start"):
            sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
    return sysctl


def default_masked_paths() -> list[str]:
    """Docker's masked paths on this host (what dockerd stores in HostConfig.MaskedPaths)."""
    return [*MASKED_PATHS, *_thermal_throttle_paths()]


def _nofile_rlimit(wanted: int) -> dict[str, Any]:
    # No CAP_SYS_RESOURCE on some hosts: never ask for more than the current hard limit.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    return {"type": "RLIMIT_NOFILE", "hard": value, "soft": value}


def default_mounts(shm_size: int = DEFAULT_SHM_SIZE) -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["ro", "nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"],
        },
    ]


def _with_extra_mounts(
    defaults: list[dict[str, Any]], extra: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    # As docker: a user mount replaces a default one at the same destination; parents mount before children.
    taken = {os.path.normpath(m["destination"]) for m in extra}
    kept = [m for m in defaults if m["destination"] not in taken]
    ordered = sorted((dict(m) for m in extra), key=lambda m: os.path.normpath(m["destination"]).count("/"))
    return [*kept, *ordered]


def default_spec(
    *,
    args: Sequence[str],
    env: Sequence[str],
    cwd: str = "/",
    hostname: str = "",
    domainname: str = "",
    user: tuple[int, int, Sequence[int]] = (0, 0, ()),
    terminal: bool = False,
    readonly_rootfs: bool = False,
    rootfs: str = "rootfs",
    cgroups_path: str | None = None,
    netns_path: str | None = None,
    host_network: bool = False,
    extra_mounts: Sequence[Mapping[str, Any]] = (),
    capabilities: Sequence[str] | None = None,
    no_new_privileges: bool = False,
    seccomp_profile: Mapping[str, Any] | str | None = "default",
    sysctl: Mapping[str, str] | None = None,
    resources: Mapping[str, Any] | None = None,
    shm_size: int = DEFAULT_SHM_SIZE,
    nofile: int = DEFAULT_NOFILE,
    oom_score_adj: int = 0,
    annotations: Mapping[str, str] | None = None,
    shared_namespaces: Collection[str] = (),
    namespace_paths: Mapping[str, str] | None = None,
    rlimits: Sequence[Mapping[str, Any]] | None = None,
    devices: Sequence[Mapping[str, Any]] = (),
    device_rules: Sequence[Mapping[str, Any]] = (),
    masked_paths: Sequence[str] | None = None,
    readonly_paths: Sequence[str] | None = None,
    privileged: bool = False,
    shm: str = "private",
) -> dict[str, Any]:
    """A config.json dict for one container, with Docker's defaults for everything not given.

    `user` is (uid, gid, supplementary gids); `seccomp_profile` is "default" (Docker's), "unconfined"/None,
    or a moby-format profile dict. `resources` is merged into `linux.resources` (OCI form: memory, cpu,
    pids, ...). With `host_network` the container shares the host's network namespace; with `netns_path`
    it joins that one.

    `shared_namespaces` names the namespaces ("network", "pid", "ipc", "uts", "cgroup") the container
    shares with the host; `namespace_paths` joins existing ones by path. `rlimits` (OCI form) replace
    the defaults of the same type; every rlimit is clamped to this process's hard limit. `devices` are
    OCI `linux.devices` and `device_rules` extra `resources.devices` entries. `privileged` is docker's
    --privileged: all devices allowed, /sys and cgroupfs writable, no masked or read-only paths (unless
    given). `shm` is "private" (a tmpfs of `shm_size`), "host" (the host's /dev/shm), "none", or the
    absolute path of a host directory to bind (a shareable container's tmpfs).
    """
    caps = list(DEFAULT_CAPABILITIES if capabilities is None else capabilities)
    uid, gid, extra_gids = user
    additional = [gid, *(g for g in extra_gids if g != gid)]
    base_env = [f"PATH={DEFAULT_PATH_ENV}"]
    if hostname:
        base_env.append(f"HOSTNAME={hostname}")
    if terminal:
        base_env.append("TERM=xterm")

    shared = set(shared_namespaces) | ({"network"} if host_network else set())
    paths = dict(namespace_paths or {})
    if netns_path:
        paths["network"] = netns_path
    namespaces: list[dict[str, Any]] = [{"type": "mount"}]
    for kind in ("network", "uts", "pid", "ipc", "cgroup"):
        if kind in shared:
            continue
        namespaces.append({"type": kind, "path": paths[kind]} if paths.get(kind) else {"type": kind})

    if sysctl is None:
        sysctl = default_sysctls("network" in shared)

    rules = [{"allow": True, "access": "rwm"}] if privileged else [dict(r) for r in DEVICE_CGROUP_RULES]
    if masked_paths is None:
        masked_paths = [] if privileged else default_masked_paths()
    if readonly_paths is None:
        readonly_paths = [] if privileged else list(READONLY_PATHS)
    linux: dict[str, Any] = {
        "resources": {"devices": [*rules, *(dict(r) for r in device_rules)], **dict(resources or {})},
        "namespaces": namespaces,
        "maskedPaths": list(masked_paths),
        "readonlyPaths": list(readonly_paths),
    }
    if devices:
        linux["devices"] = [dict(d) for d in devices]
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    if sysctl:
        linux["sysctl"] = dict(sysctl)
    if seccomp_profile == "default":
        linux["seccomp"] = seccomp_for(load_default_profile(), caps, native_arch())
    elif isinstance(seccomp_profile, Mapping):
        linux["seccomp"] = seccomp_for(seccomp_profile, caps, native_arch())
    elif seccomp_profile not in (None, "unconfined"):
        raise ValueError(f"unknown seccomp profile {seccomp_profile!r}")

    limits = {"RLIMIT_NOFILE": _nofile_rlimit(nofile)}
    for rl in rlimits or ():
        limits[rl["type"]] = _clamped_rlimit(rl)
    process: dict[str, Any] = {
        "terminal": terminal,
        "user": {"uid": uid, "gid": gid, "additionalGids": additional},
        "args": list(args),
        "env": merge_env(base_env, env),
        "cwd": cwd or "/",
        "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
        "rlimits": list(limits.values()),
        "noNewPrivileges": no_new_privileges,
        "oomScoreAdj": oom_score_adj,
    }
    mounts = default_mounts(shm_size)
    if privileged:
        mounts = [_writable(m) if m["destination"] in ("/sys", "/sys/fs/cgroup") else m for m in mounts]
    if shm != "private":
        mounts = [m for m in mounts if m["destination"] != "/dev/shm"]
        if shm == "host" or shm.startswith("/"):
            source = "/dev/shm" if shm == "host" else shm
            shm_bind = {"destination": "/dev/shm", "type": "bind", "source": source}
            mounts.append({**shm_bind, "options": ["rbind", "rprivate"]})
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": readonly_rootfs},
        "hostname": "" if "uts" in shared else hostname,
        "mounts": _with_extra_mounts(mounts, extra_mounts),
        "linux": linux,
    }
    if domainname and "uts" not in shared:
        spec["domainname"] = domainname
    if annotations:
        spec["annotations"] = dict(annotations)
    return spec


def _writable(mount: Mapping[str, Any]) -> dict[str, Any]:
    # --privileged: docker drops "ro" from /sys and the cgroup mount.
    return {**mount, "options": [o for o in mount.get("options") or [] if o != "ro"]}


def _clamped_rlimit(rl: Mapping[str, Any]) -> dict[str, Any]:
    # No CAP_SYS_RESOURCE on some hosts: never ask for more than this process's hard limit.
    kind = str(rl["type"])
    res = getattr(resource, kind, None)
    unlimited = (1 << 64) - 1  # OCI rlimits are uint64; docker's -1 is "unlimited"
    soft, hard = (unlimited if v < 0 else v for v in (int(rl["soft"]), int(rl["hard"])))
    if res is not None:
        cur = resource.getrlimit(res)[1]
        if cur != resource.RLIM_INFINITY:
            hard = min(hard, cur)
            soft = min(soft, hard)
    return {"type": kind, "hard": hard, "soft": soft}
