"""A container's HostConfig as dockerd completes and checks it at create: docker's defaults for
every field it shows in `inspect`, the namespace modes, --init, tmpfs, sysctls, extra hosts, shm,
restart and log settings; resources and security are checked by their own modules. Also how the
namespace modes turn into the bundle's namespaces at start."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pallet.errors import Conflict, InvalidArgument

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

DOCKER_INIT = "/usr/bin/tini-static"  # Debian's static tini, docker's docker-init
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
# Sysctls that are namespaced (so a container may set them): opts.ValidateSysctl's list.
IPC_SYSCTLS = frozenset(
    {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax"}
    | {"kernel.shmmni", "kernel.shm_rmid_forced"}
)
_RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
_LOG_OPTS = {
    "json-file": {"max-size", "max-file", "labels", "labels-regex", "env", "env-regex", "compress", "tag"},
    "local": {"max-size", "max-file", "compress"},
    "none": set(),
}


def go_quote(s: str) -> str:
    """Go's %q, which docker's messages use for user input."""
    import json

    return json.dumps(s, ensure_ascii=False)


def sysctl_allowed(key: str) -> bool:
    return key in IPC_SYSCTLS or key.startswith(("net.", "fs.mqueue."))


def defaults() -> dict[str, Any]:
    """HostConfig as `docker inspect` shows it for a plain `docker run` (cgroup v1 host)."""
    return {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "none", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0],
        "Annotations": None, "CapAdd": None, "CapDrop": None, "CgroupnsMode": "private", "Dns": [],
        "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private",
        "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
        "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "",
        "UsernsMode": "", "ShmSize": DEFAULT_SHM_SIZE, "Runtime": "", "Isolation": "", "CpuShares": 0,
        "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
        "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
        "OomKillDisable": False, "PidsLimit": None, "Ulimits": [], "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None,
    }  # fmt: skip


def complete(
    given: Mapping[str, Any], config: Mapping[str, Any], lookup: Any
) -> tuple[dict[str, Any], list[str]]:
    """The stored HostConfig for a create request, and dockerd's warnings about it.

    `config` is the request's Config (for the hostname checks); `lookup(ref)` finds another container
    (for `--pid container:NAME`). Raises InvalidArgument on anything dockerd would refuse.
    """
    hc = defaults()
    for key, value in given.items():
        if value is not None or key not in hc:
            hc[key] = value
    warnings: list[str] = []
    _check_namespaces(hc, config, lookup)
    _check_network_mode(hc, config, warnings)
    _check_process(hc)
    _check_mounts(hc)
    _check_policies(hc)
    from pallet.engine import resources, security

    resources.check(hc, warnings)
    security.check(hc, warnings)
    if not hc.get("Privileged"):
        # dockerd records the defaults it will apply (a --privileged container gets none).
        from pallet.runtime.spec import READONLY_PATHS, default_masked_paths

        if hc.get("MaskedPaths") is None:
            hc["MaskedPaths"] = default_masked_paths()
        if hc.get("ReadonlyPaths") is None:
            hc["ReadonlyPaths"] = list(READONLY_PATHS)
    return hc, warnings


def _check_namespaces(hc: dict[str, Any], config: Mapping[str, Any], lookup: Any) -> None:
    network = hc.get("NetworkMode") or "default"
    if network == "default":
        hc["NetworkMode"] = network = "bridge"  # docker's default network (the networks are checked later)
    if network.startswith("container:"):
        lookup(network.split(":", 1)[1])  # NotFound: "No such container: NAME"
    ipc = hc.get("IpcMode") or "private"
    if ipc.startswith("container:"):
        lookup(ipc.split(":", 1)[1])  # NotFound: "No such container: NAME"
    elif ipc not in ("private", "shareable", "host", "none"):
        raise InvalidArgument("--ipc: invalid IPC mode")
    hc["IpcMode"] = ipc
    pid = hc.get("PidMode") or ""
    if pid.startswith("container:"):
        lookup(pid.split(":", 1)[1])  # NotFound: "No such container: NAME"
    elif pid not in ("", "host"):
        raise InvalidArgument("--pid: invalid PID mode")
    if (hc.get("UTSMode") or "") not in ("", "host"):
        raise InvalidArgument("--uts: invalid UTS mode")
    if hc.get("UTSMode") == "host" and config.get("Hostname"):
        raise InvalidArgument("conflicting options: hostname and the UTS mode")
    cgroupns = hc.get("CgroupnsMode") or default_cgroupns_mode()
    if cgroupns not in ("private", "host"):
        raise InvalidArgument("--cgroupns: invalid CGROUP mode")
    hc["CgroupnsMode"] = cgroupns
    if (hc.get("UsernsMode") or "") not in ("", "host"):
        raise InvalidArgument("--userns: user namespaces are not supported by pallet")
    for key in hc.get("Sysctls") or {}:
        if not sysctl_allowed(key):
            raise InvalidArgument(f"sysctl '{key}' is not allowed")
        if key.startswith("net.") and network == "host":
            raise InvalidArgument(f"sysctl '{key}' is not allowed in the host's network namespace")
        if not key.startswith("net.") and ipc == "host":
            raise InvalidArgument(f"sysctl '{key}' is not allowed in the host's IPC namespace")


def _check_network_mode(hc: dict[str, Any], config: Mapping[str, Any], warnings: list[str]) -> None:
    """dockerd's verifyNetworkingConfig/validateNetMode conflicts of the mode with other options."""
    mode = str(hc.get("NetworkMode"))
    if mode == "host" and (hc.get("PortBindings") or hc.get("PublishAllPorts")):
        warnings.append("Published ports are discarded when using host network mode")
    if not mode.startswith("container:"):
        return
    if config.get("Hostname"):
        raise InvalidArgument("conflicting options: hostname and the network mode")
    if hc.get("PortBindings") or hc.get("PublishAllPorts") or config.get("ExposedPorts"):
        raise InvalidArgument("conflicting options: port publishing and the container type network mode")
    if hc.get("Dns") or hc.get("DnsSearch") or hc.get("DnsOptions"):
        raise InvalidArgument("conflicting options: dns and the network mode")
    if hc.get("ExtraHosts"):
        raise InvalidArgument("conflicting options: custom host-to-IP mapping and the network mode")


def _check_process(hc: dict[str, Any]) -> None:
    if hc.get("Init") and not os.access(DOCKER_INIT, os.X_OK):
        raise InvalidArgument(f"--init needs docker-init: {DOCKER_INIT} is missing (Debian package tini)")
    adj = int(hc.get("OomScoreAdj") or 0)
    if not -1000 <= adj <= 1000:
        raise InvalidArgument(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
    shm = int(hc.get("ShmSize") or 0)
    if shm < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    hc["ShmSize"] = shm or DEFAULT_SHM_SIZE


def _check_mounts(hc: dict[str, Any]) -> None:
    for path in hc.get("Tmpfs") or {}:
        if not path.startswith("/"):
            raise InvalidArgument(
                'invalid mount config for type "tmpfs": '
                f"invalid mount path: '{path}' mount path must be absolute"
            )
        if os.path.normpath(path) == "/":
            raise InvalidArgument("invalid mount config for type \"tmpfs\": destination can't be '/'")
    for entry in hc.get("ExtraHosts") or []:
        sep = "=" if "=" in entry else ":"
        host, found, ip = entry.partition(sep)
        if not found or not host:
            raise InvalidArgument(f"bad format for add-host: {go_quote(entry)}")


def _check_policies(hc: dict[str, Any]) -> None:
    from pallet.runtime import jsonlog

    try:
        jsonlog.options(hc.get("LogConfig"))  # a bad --log-opt must fail before anything exists
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
    policy = dict(hc.get("RestartPolicy") or {})
    name = policy.get("Name") or "no"
    retries = int(policy.get("MaximumRetryCount") or 0)
    if name in ("always", "unless-stopped", "no") and retries != 0:
        msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        raise InvalidArgument(msg + (" and cannot be negative" if retries < 0 else ""))
    if name == "on-failure" and retries < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if name not in _RESTART_POLICIES:
        raise InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', "
            "or 'unless-stopped'"
        )
    if hc.get("AutoRemove") and name != "no":
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    hc["RestartPolicy"] = {"Name": name, "MaximumRetryCount": retries}
    log = dict(hc.get("LogConfig") or {})
    driver = log.get("Type") or "json-file"
    opts = dict(log.get("Config") or {})
    if driver not in _LOG_OPTS:
        raise InvalidArgument(f"logger: no log driver named '{driver}' is registered")
    for key in opts:
        if key not in _LOG_OPTS[driver]:
            raise InvalidArgument(f"unknown log opt '{key}' for {driver} log driver")
    hc["LogConfig"] = {"Type": driver, "Config": opts}


def default_cgroupns_mode() -> str:
    """dockerd's default: a private cgroup namespace on a cgroup v2 host, the host's on v1 (a hybrid
    host counts as v1, as it does for dockerd)."""
    return "private" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "host"


def namespaces(hc: Mapping[str, Any], lookup: Any) -> tuple[set[str], dict[str, str], str]:
    """(namespaces shared with the host, namespaces joined by path, /dev/shm mode) for the bundle.
    `lookup(ref)` returns another container's record (for `--pid container:NAME`)."""
    shared: set[str] = set()
    paths: dict[str, str] = {}
    if hc.get("NetworkMode") == "host":
        shared.add("network")
    pid_mode = str(hc.get("PidMode") or "")
    if pid_mode == "host":
        shared.add("pid")
    elif pid_mode.startswith("container:"):
        other = lookup(pid_mode.split(":", 1)[1])
        pid = int(other.state.get("Pid") or 0) if other.state.get("Running") else 0
        if pid <= 0:
            raise InvalidArgument(f"cannot join PID of a non running container: {pid_mode.split(':', 1)[1]}")
        paths["pid"] = f"/proc/{pid}/ns/pid"
    ipc = hc.get("IpcMode") or "private"
    # /dev/shm: "private" (a tmpfs of the container's own), "host", "none", "shareable" (a tmpfs
    # on the host, for joiners: engine/container_ipc.py) or "container:ID" (the donor's).
    shm = ipc if ipc in ("host", "none", "shareable") else "private"
    if ipc == "host":
        shared.add("ipc")
    elif ipc.startswith("container:"):
        other = lookup(ipc.split(":", 1)[1])
        pid = int(other.state.get("Pid") or 0) if other.state.get("Running") else 0
        if pid <= 0:
            raise Conflict(f"Container {other.id} is not running")  # dockerd's errNotRunning
        paths["ipc"] = f"/proc/{pid}/ns/ipc"
        shm = f"container:{other.id}"
    if hc.get("UTSMode") == "host":
        shared.add("uts")
    if hc.get("CgroupnsMode") == "host":
        shared.add("cgroup")
    return shared, paths, shm
