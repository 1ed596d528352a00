"""The key order and zero values docker prints in ContainerInspectResponse (API v1.45): dockerd
fills every HostConfig key, omits the `omitempty` ones of Config, and describes none/host networking
with one endpoint of zero values. Stored values win; keys we do not know are kept, at the end."""

from __future__ import annotations

import os
from typing import Any

# (key, zero value) in Go struct order; OMIT keys are printed only when set (json:",omitempty").
HOST_CONFIG: list[tuple[str, Any]] = [
    ("Binds", None),
    ("ContainerIDFile", ""),
    ("LogConfig", {"Type": "json-file", "Config": {}}),
    ("NetworkMode", "none"),
    ("PortBindings", {}),
    ("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0}),
    ("AutoRemove", False),
    ("VolumeDriver", ""),
    ("VolumesFrom", None),
    ("ConsoleSize", [0, 0]),
    ("Annotations", None),
    ("CapAdd", None),
    ("CapDrop", None),
    ("CgroupnsMode", "private"),
    ("Dns", []),
    ("DnsOptions", []),
    ("DnsSearch", []),
    ("ExtraHosts", None),
    ("GroupAdd", None),
    ("IpcMode", "private"),
    ("Cgroup", ""),
    ("Links", None),
    ("OomScoreAdj", 0),
    ("PidMode", ""),
    ("Privileged", False),
    ("PublishAllPorts", False),
    ("ReadonlyRootfs", False),
    ("SecurityOpt", None),
    ("StorageOpt", None),
    ("Tmpfs", None),
    ("UTSMode", ""),
    ("UsernsMode", ""),
    ("ShmSize", 64 * 1024 * 1024),
    ("Sysctls", None),
    ("Runtime", "pallet"),
    ("Isolation", ""),
    ("CpuShares", 0),
    ("Memory", 0),
    ("NanoCpus", 0),
    ("CgroupParent", ""),
    ("BlkioWeight", 0),
    ("BlkioWeightDevice", []),
    ("BlkioDeviceReadBps", []),
    ("BlkioDeviceWriteBps", []),
    ("BlkioDeviceReadIOps", []),
    ("BlkioDeviceWriteIOps", []),
    ("CpuPeriod", 0),
    ("CpuQuota", 0),
    ("CpuRealtimePeriod", 0),
    ("CpuRealtimeRuntime", 0),
    ("CpusetCpus", ""),
    ("CpusetMems", ""),
    ("Devices", []),
    ("DeviceCgroupRules", None),
    ("DeviceRequests", None),
    ("KernelMemoryTCP", 0),
    ("MemoryReservation", 0),
    ("MemorySwap", 0),
    ("MemorySwappiness", None),
    ("OomKillDisable", None),
    ("PidsLimit", None),
    ("Ulimits", []),
    ("CpuCount", 0),
    ("CpuPercent", 0),
    ("IOMaximumIOps", 0),
    ("IOMaximumBandwidth", 0),
    ("Mounts", None),
    ("MaskedPaths", None),
    ("ReadonlyPaths", None),
    ("Init", None),
]
HOST_CONFIG_OMIT = frozenset(
    {"Annotations", "StorageOpt", "Tmpfs", "Sysctls", "KernelMemoryTCP", "Mounts", "Init"}
)

CONFIG: list[tuple[str, Any]] = [
    ("Hostname", ""),
    ("Domainname", ""),
    ("User", ""),
    ("AttachStdin", False),
    ("AttachStdout", False),
    ("AttachStderr", False),
    ("ExposedPorts", None),
    ("Tty", False),
    ("OpenStdin", False),
    ("StdinOnce", False),
    ("Env", None),
    ("Cmd", None),
    ("Healthcheck", None),
    ("ArgsEscaped", False),
    ("Image", ""),
    ("Volumes", None),
    ("WorkingDir", ""),
    ("Entrypoint", None),
    ("NetworkDisabled", False),
    ("MacAddress", ""),
    ("OnBuild", None),
    ("Labels", None),
    ("StopSignal", ""),
    ("StopTimeout", None),
    ("Shell", None),
]
CONFIG_OMIT = frozenset(
    {
        "ExposedPorts",
        "Healthcheck",
        "ArgsEscaped",
        "NetworkDisabled",
        "MacAddress",
        "StopSignal",
        "StopTimeout",
        "Shell",
    }
)

STATE_KEYS = [
    "Status",
    "Running",
    "Paused",
    "Restarting",
    "OOMKilled",
    "Dead",
    "Pid",
    "ExitCode",
    "Error",
    "StartedAt",
    "FinishedAt",
    "Health",
]

NETWORK_SETTINGS: list[tuple[str, Any]] = [
    ("Bridge", ""),
    ("SandboxID", ""),
    ("SandboxKey", ""),
    ("Ports", {}),
    ("HairpinMode", False),
    ("LinkLocalIPv6Address", ""),
    ("LinkLocalIPv6PrefixLen", 0),
    ("SecondaryIPAddresses", None),
    ("SecondaryIPv6Addresses", None),
    ("EndpointID", ""),
    ("Gateway", ""),
    ("GlobalIPv6Address", ""),
    ("GlobalIPv6PrefixLen", 0),
    ("IPAddress", ""),
    ("IPPrefixLen", 0),
    ("IPv6Gateway", ""),
    ("MacAddress", ""),
    ("Networks", {}),
]

ENDPOINT: list[tuple[str, Any]] = [
    ("IPAMConfig", None),
    ("Links", None),
    ("Aliases", None),
    ("MacAddress", ""),
    ("DriverOpts", None),
    ("NetworkID", ""),
    ("EndpointID", ""),
    ("Gateway", ""),
    ("IPAddress", ""),
    ("IPPrefixLen", 0),
    ("IPv6Gateway", ""),
    ("GlobalIPv6Address", ""),
    ("GlobalIPv6PrefixLen", 0),
    ("DNSNames", None),
]


def _empty(value: Any) -> bool:
    return value is None or value is False or value == 0 or value == "" or value == [] or value == {}


def shaped(
    stored: dict[str, Any], keys: list[tuple[str, Any]], omit: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """`stored` in docker's key order, missing keys at their zero value, empty omitempty keys left out."""
    out: dict[str, Any] = {}
    for key, zero in keys:
        value = stored.get(key, zero)
        if key in omit and _empty(value):
            continue
        out[key] = _copy(value)
    known = {k for k, _ in keys}
    out.update({k: v for k, v in stored.items() if k not in known})
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def host_config(stored: dict[str, Any]) -> dict[str, Any]:
    from pallet.runtime.spec import READONLY_PATHS, default_masked_paths

    defaults = dict(stored)
    defaults.setdefault("MaskedPaths", default_masked_paths())
    defaults.setdefault("ReadonlyPaths", list(READONLY_PATHS))
    # cgroup v1 reports the memory controller's oom_kill_disable (false); v2 has none (null)
    defaults.setdefault("OomKillDisable", False if os.path.isdir("/sys/fs/cgroup/memory") else None)
    return shaped(defaults, HOST_CONFIG, HOST_CONFIG_OMIT)


def config(stored: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(stored)
    if not cfg.get("Env"):
        cfg["Env"] = None  # Go prints an empty slice of a container without variables as null
    return shaped(cfg, CONFIG, CONFIG_OMIT)


def state(stored: dict[str, Any]) -> dict[str, Any]:
    """State without our bookkeeping (PidStart); Health only for a container with a healthcheck."""
    return {k: _copy(stored[k]) for k in STATE_KEYS if k in stored and (k != "Health" or stored[k])}


def network_settings(network_mode: str, stored: dict[str, Any], ports: dict[str, Any]) -> dict[str, Any]:
    """What docker shows for none/host (and container:) networking, with whatever the network
    engine recorded under the container's NetworkSettings laid over it."""
    settings = shaped({**stored, "Ports": ports}, NETWORK_SETTINGS)
    if not stored.get("Networks"):
        name = network_mode or "none"
        settings["Networks"] = {} if name.startswith("container:") else {name: shaped({}, ENDPOINT)}
    else:
        settings["Networks"] = {k: shaped(v or {}, ENDPOINT) for k, v in stored["Networks"].items()}
    return settings
