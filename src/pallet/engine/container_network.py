"""A container's networking across its life: the networks checked at create, its namespace wired at
every start (veth into each network, published ports, /etc files), and all of it released when the
container stops or is removed -- or, after a crash, by the next command that finds it stale.

Record keys (the container's config JSON, beside Config and HostConfig, as docker keeps them):
  NetworkingConfig  {"EndpointsConfig": {network name: {IPAMConfig, Aliases, MacAddress, NetworkID}}}:
                    what to attach at start (the NetworkMode network first), kept across restarts
  NetworkSettings   what inspect shows: Networks (endpoint per network), Ports, SandboxKey, ...
                    The runtime parts are filled at start and cleared when the container stops.

Giving it back (at exit, rm, after a crash) is network_release.py's job.

Modes: bridge and user networks get a namespace pinned at <runroot>/netns/<container id>; so does
`none` (lo only, up, as docker); `host` shares the host's; `container:<x>` joins the other's.
"""

from __future__ import annotations

import os
from pathlib import Path

from pallet.engine.core import Engine
from pallet.errors import InvalidArgument, NotFound, PalletError
from pallet.records import Record
from pallet.state import containers as records
from pallet.state.containers import ContainerRecord

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

    from pallet.network.bridge import BridgeDriver
    from pallet.network.ports import PortRequest
    from pallet.network.store import EndpointRecord, NetworkRecord

NON_BRIDGE_MODES = ("none", "host")


def uses_bridge(network_mode: str) -> bool:
    """True for the modes that attach the container to bridge networks (default or user-defined)."""
    return network_mode not in NON_BRIDGE_MODES and not network_mode.startswith("container:")


def driver(engine: Engine) -> BridgeDriver:
    from pallet.network.bridge import BridgeDriver, DriverSettings

    return BridgeDriver(engine.paths, engine.conn, DriverSettings.from_env())


# ---- create ---------------------------------------------------------------------------------------


def plan(engine: Engine, hc: dict[str, Any], networking_config: dict[str, Any] | None) -> dict[str, Any]:
    """Check the requested networks at create; returns the record keys to store (NetworkingConfig
    and NetworkSettings), empty for none/host/container: modes."""
    mode = str(hc.get("NetworkMode"))
    given = (networking_config or {}).get("EndpointsConfig") or {}
    wanted: dict[str, Any] = {("bridge" if k == "default" else k): v for k, v in given.items()}
    if not uses_bridge(mode):
        for name, cfg in wanted.items():
            if name != mode or any((cfg or {}).get(k) for k in ("IPAMConfig", "Aliases", "MacAddress")):
                raise InvalidArgument(
                    "container sharing network namespace with another container or host cannot be "
                    "connected to any other network"
                    if name != mode
                    else "user specified IP address, aliases and MAC address are supported on bridge "
                    "networks only"
                )
        return {}
    drv = driver(engine)
    drv.ensure_predefined()
    endpoints: dict[str, Any] = {}
    for name in [mode, *(n for n in wanted if n != mode)]:
        net = bridge_network(drv, name)
        cfg = endpoint_config(net, wanted.get(name) or {})
        endpoints[net.name] = cfg
    networks = {name: idle_endpoint(cfg) for name, cfg in endpoints.items()}
    if mode != next(iter(endpoints)):
        hc["NetworkMode"] = next(iter(endpoints))  # an ID or prefix given: docker shows the name
    return {"NetworkingConfig": {"EndpointsConfig": endpoints}, "NetworkSettings": {"Networks": networks}}


def bridge_network(drv: BridgeDriver, ref: str) -> NetworkRecord:
    try:
        net = drv.get(ref)
    except NotFound:
        raise NotFound(f"network {ref} not found") from None
    if net.driver != "bridge":
        raise InvalidArgument(
            "container cannot be connected to multiple networks with one of the networks in private "
            "(none) mode"
            if net.driver == "null"
            else "container cannot be disconnected from host network or connected to host network"
        )
    return net


def endpoint_config(net: NetworkRecord, given: dict[str, Any]) -> dict[str, Any]:
    """Check one EndpointsConfig entry against its network, as dockerd does at create/connect."""
    ipam = given.get("IPAMConfig") or {}
    ip = ipam.get("IPv4Address") or None
    aliases = [a for a in given.get("Aliases") or [] if a]
    mac = given.get("MacAddress") or ""
    if not net.user_defined:
        if ip:
            raise InvalidArgument("user specified IP address is supported on user defined networks only")
        if aliases:
            raise InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks"
            )
    if ip:
        from ipaddress import IPv4Address

        if not net.ipam_user_configured:
            raise InvalidArgument(
                "user specified IP address is supported only when connecting to networks with user "
                "configured subnets"
            )
        try:
            addr = IPv4Address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {ip}") from None
        if net.ipam is None or addr not in net.ipam.subnet:
            raise InvalidArgument(
                f"Invalid address {ip}: It does not belong to any of this network's subnets"
            )
    if mac:
        from pallet.network.bridge import _MAC

        if not _MAC.match(mac):
            raise InvalidArgument(f"invalid MAC address: {mac}")
    return {
        "IPAMConfig": {"IPv4Address": ip} if ip else None,
        "Aliases": aliases or None,
        "MacAddress": mac,
        "NetworkID": net.id,
    }


def idle_endpoint(cfg: dict[str, Any]) -> dict[str, Any]:
    """NetworkSettings.Networks[...] of a container that is not running: the configuration only."""
    return {
        "IPAMConfig": cfg.get("IPAMConfig"),
        "Links": None,
        "Aliases": cfg.get("Aliases"),
        "MacAddress": cfg.get("MacAddress") or "",
        "NetworkID": cfg.get("NetworkID") or "",
    }


# ---- start ----------------------------------------------------------------------------------------


class Attached(Record):
    """What the bundle needs from the network: the namespace to join (None: the host's, for host
    mode), the /etc files to bind, and the hostname (container: mode takes the other's)."""

    __slots__ = ("netns_path", "etc_mounts", "hostname")

    def __init__(
        self,
        netns_path: str | None = None,
        etc_mounts: list[dict[str, Any]] | None = None,
        hostname: str = "",
    ) -> None:
        self.netns_path = netns_path
        self.etc_mounts = etc_mounts if etc_mounts is not None else []
        self.hostname = hostname


def attach(engine: Engine, rec: ContainerRecord) -> Attached:
    """Wire the container's network for a start. On failure nothing of it is left behind."""
    from pallet.engine import container_etc

    cfg = rec.config["Config"]
    hc = rec.config["HostConfig"]
    cdir = engine.paths.container_dir(rec.id)
    mode = str(hc.get("NetworkMode") or "none")
    hostname = cfg.get("Hostname") or rec.id[:12]
    if mode == "host":
        hosts, resolv = container_etc.host_mode_files(hc, _host_gateway(engine, hc))
        return Attached(
            None, container_etc.write(cdir, hostname=hostname, hosts=hosts, resolv=resolv), hostname
        )
    if mode == "none":
        hosts, resolv = container_etc.none_mode_files(hc, hostname, _host_gateway(engine, hc))
        mounts = container_etc.write(cdir, hostname=hostname, hosts=hosts, resolv=resolv)
        return Attached(str(_loopback_only(engine, rec)), mounts, hostname)
    if mode.startswith("container:"):
        return _join_other(engine, rec, mode.split(":", 1)[1])
    drv = driver(engine)
    from pallet.engine.network_release import release_container, sweep_stale

    release_container(engine.paths, engine.conn, rec.id, drv=drv)  # what a crashed earlier run left
    sweep_stale(engine, drv, skip=rec.id)
    from pallet.network import netns

    ns_path = netns.create(engine.paths.runroot, rec.id)
    try:
        settings = _connect_all(engine, drv, rec, ns_path)
        first = next(iter(settings["Networks"]), None)
        hosts = drv.hosts(
            rec.id,
            hostname=hostname,
            domainname=cfg.get("Domainname") or "",
            extra_hosts=hc.get("ExtraHosts") or (),
        )
        resolv = _resolv_conf(drv, first, hc)
        mounts = container_etc.write(cdir, hostname=hostname, hosts=hosts, resolv=resolv)
        records.update(engine.conn, rec.id, top={"NetworkSettings": settings})
    except BaseException:
        release_container(engine.paths, engine.conn, rec.id, drv=drv)
        raise
    return Attached(str(ns_path), mounts, hostname)


def _loopback_only(engine: Engine, rec: ContainerRecord) -> Path:
    """--network none: a namespace of its own with lo up, as docker gives it (pinned like a bridge
    container's, so that `container:` joiners and inspect's SandboxKey find it)."""
    from pallet.network import links, netns

    ns_path = netns.netns_path(engine.paths.runroot, rec.id)
    if ns_path.exists():
        netns.delete(ns_path)  # what a crashed earlier run left
    ns_path = netns.create(engine.paths.runroot, rec.id, inside=links.loopback_up_here)
    try:
        sandbox = {"SandboxID": os.urandom(32).hex(), "SandboxKey": str(ns_path)}
        records.update(engine.conn, rec.id, top={"NetworkSettings": sandbox})
    except BaseException:
        netns.delete(ns_path)
        raise
    return ns_path


def _resolv_conf(drv: BridgeDriver, first: str | None, hc: dict[str, Any]) -> str:
    from pallet.engine import container_etc

    net = drv.get(first) if first else None
    if net is not None and net.user_defined:
        return drv.resolv_conf(
            net.id,
            dns=hc.get("Dns") or (),
            dns_search=hc.get("DnsSearch") or (),
            dns_options=hc.get("DnsOptions") or (),
        )
    return container_etc.plain_resolv_conf(hc)


def _host_gateway(engine: Engine, hc: dict[str, Any]) -> str | None:
    """The default bridge's gateway for --add-host NAME:host-gateway (looked up only when asked)."""
    from pallet.engine.container_etc import host_gateway_needed

    if not host_gateway_needed(hc.get("ExtraHosts") or []):
        return None
    drv = driver(engine)
    drv.ensure_predefined()
    net = drv.get("bridge")
    return str(net.ipam.gateway) if net.ipam else None


def _join_other(engine: Engine, rec: ContainerRecord, ref: str) -> Attached:
    from pallet.engine import container_etc
    from pallet.engine.containers import lookup
    from pallet.engine.lifecycle import refresh

    other = refresh(engine, lookup(engine, ref))
    pid = int(other.state.get("Pid") or 0)
    if not other.state.get("Running") or pid <= 0:
        raise PalletError(f"cannot join network of a non running container: {other.id}")
    if other.id == rec.id:
        raise InvalidArgument("cannot join own network")
    other_mode = str(other.config["HostConfig"].get("NetworkMode") or "")
    if other_mode.startswith("container:"):
        raise InvalidArgument(f"cannot join network of container {other.name}: it shares another's network")
    sandbox = (other.config.get("NetworkSettings") or {}).get("SandboxKey") or ""
    ns_path = sandbox if sandbox and Path(sandbox).exists() else f"/proc/{pid}/ns/net"
    hostname = other.config["Config"].get("Hostname") or other.id[:12]
    cdir = engine.paths.container_dir(rec.id)
    mounts = container_etc.write(
        cdir, hostname=hostname, hosts="", resolv="", shared_from=engine.paths.container_dir(other.id)
    )
    return Attached(None if other_mode == "host" else ns_path, mounts, hostname)


def _connect_all(engine: Engine, drv: BridgeDriver, rec: ContainerRecord, ns_path: Path) -> dict[str, Any]:
    """Attach every configured network, publish the ports on the first one with a way out; return
    NetworkSettings."""
    hc = rec.config["HostConfig"]
    if "NetworkingConfig" in rec.config:
        wanted = (rec.config["NetworkingConfig"] or {}).get("EndpointsConfig") or {}
    else:  # a record made before networks existed: its NetworkMode network
        wanted = {str(hc.get("NetworkMode")): {}}
    if not wanted:  # disconnected from every network: loopback only, as docker leaves it
        from pallet.network import links

        links.loopback_up(ns_path)
    networks: dict[str, Any] = {}
    attached: list[tuple[NetworkRecord, EndpointRecord, dict[str, Any]]] = []
    for name, cfg in wanted.items():
        net = bridge_network(drv, cfg.get("NetworkID") or name)
        ep = drv.connect(
            net.id,
            rec.id,
            name=rec.name,
            netns_path=ns_path,
            aliases=cfg.get("Aliases") or (),
            ipv4=(cfg.get("IPAMConfig") or {}).get("IPv4Address") or None,
            mac=cfg.get("MacAddress") or None,
            dns=hc.get("Dns") or (),
        )
        attached.append((net, ep, cfg))
    requests = port_requests(rec)
    bindings = []
    outward = next((net for net, _, _ in attached if not net.internal), None)
    if requests and outward is not None:
        bindings = drv.publish(outward.id, rec.id, requests)
    for net, ep, cfg in attached:
        networks[net.name] = running_endpoint(rec, net, ep, cfg)
    return settings_for(rec, ns_path, networks, bindings)


def running_endpoint(
    rec: ContainerRecord, net: NetworkRecord, ep: EndpointRecord, cfg: dict[str, Any]
) -> dict[str, Any]:
    """NetworkSettings.Networks[net] of a running container (API v1.45: DNSNames on user networks)."""
    out = ep.to_docker_endpoint_settings(None if net.internal or net.ipam is None else net.ipam.gateway)
    out["IPAMConfig"] = cfg.get("IPAMConfig")
    out["Aliases"] = cfg.get("Aliases")
    if net.user_defined:
        out["DNSNames"] = [rec.name, *(cfg.get("Aliases") or []), rec.id[:12]]
    return out


def settings_for(
    rec: ContainerRecord, ns_path: Path, networks: dict[str, Any], bindings: list[Any]
) -> dict[str, Any]:
    from pallet.network.ports import docker_ports

    ports: dict[str, Any] = {key: None for key in rec.config["Config"].get("ExposedPorts") or {}}
    ports.update(docker_ports(bindings))
    settings: dict[str, Any] = {
        "SandboxID": os.urandom(32).hex(),
        "SandboxKey": str(ns_path),
        "Ports": ports,
        "Networks": networks,
    }
    default = networks.get("bridge")
    if default:
        # docker repeats the default bridge's endpoint at the top level
        for key in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress"):
            settings[key] = default.get(key)
    return settings


def port_requests(rec: ContainerRecord) -> list[PortRequest]:
    """HostConfig.PortBindings (and, with -P, every exposed port without one) as publish requests."""
    from pallet.network.ports import PortRequest

    hc = rec.config["HostConfig"]
    out: list[PortRequest] = []
    bound = hc.get("PortBindings") or {}
    for key, bindings in bound.items():
        port, proto = _port_key(key)
        for b in bindings or [{}]:
            lo, hi = _host_ports(b.get("HostPort") or "")
            out.append(PortRequest(port, proto, b.get("HostIp") or "0.0.0.0", lo, hi))
    if hc.get("PublishAllPorts"):
        for key in rec.config["Config"].get("ExposedPorts") or {}:
            if key not in bound:
                port, proto = _port_key(key)
                out.append(PortRequest(port, proto, "0.0.0.0", 0))
    return out


def _port_key(key: str) -> tuple[int, str]:
    number, _, proto = key.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidArgument(f"publishing {proto} ports is not supported by pallet")
    return int(number), proto


def _host_ports(text: str) -> tuple[int, int]:
    if not text:
        return 0, 0
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or 0)
