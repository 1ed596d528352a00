"""The networking and storage flags of `run`/`create` (--network, --ip, -p, -P, --expose, --dns*,
-v, --mount, --volumes-from) parsed as docker's CLI parses them, into the ContainerCreate body's
HostConfig, Config and NetworkingConfig fields. The engine validates what needs the state
(networks, containers, host paths)."""

from __future__ import annotations

from pallet.cli.args import Namespace, Parser
from pallet.cli.run_opts import flag_error
from pallet.errors import InvalidArgument
from pallet.gounits import ram_in_bytes

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

_MOUNT_TYPES = ("bind", "volume", "tmpfs")
_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_BIND_MODES = {"ro", "rw", "z", "Z", "nocopy", *_PROPAGATIONS}


def add_flags(p: Parser) -> None:
    p.add_argument("--network", "--net", action="append", default=[])
    p.add_argument("--network-alias", "--net-alias", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("--ip6")
    p.add_argument("--mac-address")
    p.add_argument("--dns", action="append", default=[])
    p.add_argument("--dns-search", action="append", default=[])
    p.add_argument("--dns-option", "--dns-opt", action="append", default=[])
    p.add_argument("-p", "--publish", action="append", default=[])
    p.add_argument("-P", "--publish-all", action="store_true")
    p.add_argument("--expose", action="append", default=[])
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("--mount", action="append", default=[])
    p.add_argument("--volumes-from", action="append", default=[])


def apply(ns: Namespace, body: dict[str, Any]) -> None:
    """Fill the body's networking and storage fields from the parsed flags."""
    hc = body.setdefault("HostConfig", {})
    mode, endpoints = networking(ns)
    hc["NetworkMode"] = mode
    if endpoints:
        body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    hc["Dns"] = [_dns_server(d) for d in ns.dns]
    hc["DnsSearch"] = list(ns.dns_search)
    hc["DnsOptions"] = list(ns.dns_option)
    exposed, bindings = ports(ns.publish, ns.expose)
    if exposed:
        body["ExposedPorts"] = exposed
    hc["PortBindings"] = bindings
    hc["PublishAllPorts"] = bool(ns.publish_all)
    volumes, binds = volume_flags(ns.volume)
    if volumes:
        body["Volumes"] = volumes
    hc["Binds"] = binds or None
    hc["Mounts"] = [mount_flag(m) for m in ns.mount] or None
    hc["VolumesFrom"] = list(ns.volumes_from) or None


# ---- networks -----------------------------------------------------------------------------------


def _network_flag(value: str) -> dict[str, Any]:
    """`--network NAME` or the long form `name=NAME,alias=A,ip=IP,mac-address=M`."""
    if "=" not in value:
        return {"name": value}
    out: dict[str, Any] = {"aliases": []}
    for field in value.split(","):
        key, eq, val = field.partition("=")
        key = key.strip().lower()
        if not eq:
            raise InvalidArgument(f"invalid field {field!r}: must be a key=value pair")
        if key == "name":
            out["name"] = val
        elif key == "alias":
            out["aliases"].append(val)
        elif key == "ip":
            out["ip"] = val
        elif key in ("mac-address", "mac_address"):
            out["mac"] = val
        elif key in ("ip6", "driver-opt", "link-local-ip"):
            raise InvalidArgument(f"network option {key} is not supported by pallet")
        else:
            raise InvalidArgument(f"invalid field key {key}")
    if not out.get("name"):
        raise InvalidArgument(f"invalid network argument {value!r}: name is required")
    return out


def networking(ns: Namespace) -> tuple[str, dict[str, Any]]:
    """(HostConfig.NetworkMode, NetworkingConfig.EndpointsConfig). The first --network is the mode;
    --ip, --network-alias and --mac-address apply to it, as docker's CLI does."""
    flags = [_network_flag(v) for v in ns.network]
    if ns.ip6:
        raise InvalidArgument("IPv6 addresses (--ip6) are not supported by pallet's bridge driver")
    if not flags:
        flags = [{"name": "default"}]
    first = flags[0]
    first.setdefault("aliases", []).extend(ns.network_alias)
    if ns.ip:
        first["ip"] = ns.ip
    if ns.mac_address:
        first["mac"] = ns.mac_address
    if len(flags) > 1 and any(
        f["name"] in ("host", "none") or f["name"].startswith("container:") for f in flags
    ):
        raise InvalidArgument(
            "conflicting options: cannot attach both user-defined and non-user-defined network-modes"
        )
    endpoints: dict[str, Any] = {}
    for f in flags:
        ep: dict[str, Any] = {}
        if f.get("ip"):
            ep["IPAMConfig"] = {"IPv4Address": _ip(f["ip"], "--ip")}
        if f.get("aliases"):
            ep["Aliases"] = list(f["aliases"])
        if f.get("mac"):
            ep["MacAddress"] = f["mac"]
        if ep or len(flags) > 1:
            endpoints[f["name"]] = ep
    return first["name"], endpoints


def _ip(value: str, flag: str) -> str:
    try:
        import ipaddress

        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise flag_error(flag, value, f"invalid IPv4 address: {value}") from None


def _dns_server(value: str) -> str:
    try:
        import ipaddress

        return str(ipaddress.ip_address(value))
    except ValueError:
        raise flag_error("--dns", value, f"{value} is not an ip address") from None


# ---- ports --------------------------------------------------------------------------------------


def _port_key(text: str, proto: str) -> list[str]:
    lo_s, _, hi_s = text.partition("-")
    try:
        lo, hi = int(lo_s), int(hi_s or lo_s)
    except ValueError:
        raise InvalidArgument(f"invalid range format for --expose: {text}") from None
    if not 0 < lo <= hi <= 65535:
        raise InvalidArgument(f"invalid range format for --expose: {text}")
    return [f"{n}/{proto}" for n in range(lo, hi + 1)]


def ports(publish: list[str], expose: list[str]) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    """(Config.ExposedPorts, HostConfig.PortBindings) as nat.ParsePortSpecs makes them: every
    published port is exposed too; HostIp "" means every address, HostPort "" picks a free port."""
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in publish:
        from pallet.network.ports import parse_publish

        for req in parse_publish(spec):
            key = f"{req.container_port}/{req.proto}"
            exposed[key] = {}
            host_port = ""
            if req.host_port:
                host_port = str(req.host_port)
                if req.host_port_end and req.host_port_end != req.host_port:
                    host_port += f"-{req.host_port_end}"
            host_ip = "" if req.host_ip == "0.0.0.0" else req.host_ip
            bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": host_port})
    for spec in expose:
        number, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid proto: {proto}")
        for key in _port_key(number, proto):
            exposed[key] = {}
    return exposed, bindings


# ---- volumes and mounts -------------------------------------------------------------------------


def volume_flags(values: list[str]) -> tuple[dict[str, Any], list[str]]:
    """-v: `/ctr` is an anonymous volume (Config.Volumes); `SRC:/ctr[:MODE]` a bind or a named
    volume (HostConfig.Binds, checked further by the engine)."""
    volumes: dict[str, Any] = {}
    binds: list[str] = []
    for spec in values:
        parts = spec.split(":")
        if len(parts) == 1:
            if not spec.startswith("/"):
                raise InvalidArgument(
                    f"invalid mount config for type \"volume\": invalid mount path: '{spec}' "
                    "mount path must be absolute"
                )
            volumes[spec] = {}
            continue
        if len(parts) > 3 or not parts[0] or not parts[1]:
            raise InvalidArgument(f"invalid volume specification: '{spec}'")
        if len(parts) == 3:
            for mode in parts[2].split(","):
                if mode not in _BIND_MODES:
                    raise InvalidArgument(f"invalid mode: {parts[2]}")
        binds.append(spec)
    return volumes, binds


def _bool(key: str, value: str | None) -> bool:
    if value is None:
        return True
    low = value.lower()
    if low in ("1", "true", "t", "yes"):
        return True
    if low in ("0", "false", "f", "no"):
        return False
    raise InvalidArgument(f"invalid value for {key}: {value}")


def mount_flag(value: str) -> dict[str, Any]:
    """--mount type=bind|volume|tmpfs,source=,target=,readonly,... as docker's MountOpt: a
    HostConfig.Mounts entry (mount.Mount)."""
    fields: dict[str, Any] = {"Type": "volume"}
    bind: dict[str, Any] = {}
    volume: dict[str, Any] = {}
    tmpfs: dict[str, Any] = {}
    for field in value.split(","):
        key, eq, val = field.partition("=")
        key = key.strip().lower()
        raw: str | None = val if eq else None
        if key == "type":
            if raw not in _MOUNT_TYPES:
                raise _mount_error(value, f"invalid mount type {raw!r}")
            fields["Type"] = raw
        elif key in ("source", "src"):
            fields["Source"] = raw or ""
        elif key in ("target", "dst", "destination"):
            fields["Target"] = raw or ""
        elif key in ("readonly", "ro"):
            fields["ReadOnly"] = _bool(key, raw)
        elif key == "consistency":
            fields["Consistency"] = raw or ""
        elif key == "bind-propagation":
            if raw not in _PROPAGATIONS:
                raise _mount_error(value, f"invalid bind propagation {raw!r}")
            bind["Propagation"] = raw
        elif key == "bind-nonrecursive":
            bind["NonRecursive"] = _bool(key, raw)
        elif key == "volume-nocopy":
            volume["NoCopy"] = _bool(key, raw)
        elif key == "volume-label":
            k, _, v = (raw or "").partition("=")
            volume.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = raw or ""
        elif key == "volume-opt":
            k, _, v = (raw or "").partition("=")
            volume.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "tmpfs-size":
            try:
                tmpfs["SizeBytes"] = ram_in_bytes(raw or "")
            except ValueError as e:
                raise _mount_error(value, str(e)) from None
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(raw or "", 8)
            except ValueError:
                raise _mount_error(value, f"invalid tmpfs-mode {raw!r}") from None
        else:
            raise _mount_error(value, f"unexpected key '{key}' in '{field}'")
    if not fields.get("Target"):
        raise _mount_error(value, "target is required")
    kind = fields["Type"]
    if bind:
        if kind != "bind":
            raise _mount_error(value, f"cannot mix 'bind-*' options with mount type '{kind}'")
        fields["BindOptions"] = bind
    if volume:
        if kind != "volume":
            raise _mount_error(value, f"cannot mix 'volume-*' options with mount type '{kind}'")
        fields["VolumeOptions"] = volume
    if tmpfs:
        if kind != "tmpfs":
            raise _mount_error(value, f"cannot mix 'tmpfs-*' options with mount type '{kind}'")
        fields["TmpfsOptions"] = tmpfs
    return fields


def _mount_error(value: str, reason: str) -> InvalidArgument:
    return flag_error("--mount", value, reason)
