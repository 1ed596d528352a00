"""The bridge driver: what the engine calls to create and remove networks, attach and detach a
container's network namespace, publish its ports, and write its hosts/resolv.conf.

A network is a database record plus host state: a Linux bridge holding the gateway address, one
nftables table (isolation, --internal, masquerade), and for user-defined networks an embedded DNS
server process. Host state is rebuilt on demand (`ensure_up`), so after a reboot (bridges, tables and
processes gone, /run wiped) the next container to attach brings its network back.

Locking: subnets and bridges are host-wide, so network creation and bring-up hold a host-wide file
lock (two pallet roots on one host must not pick the same subnet); addresses and ports are
serialised by SQLite's write lock.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.network import daemon, hostfiles, ipam, links, netns, nft, ports, publish
from pallet.network.ipam import IpamConfig
from pallet.network.ports import PortBinding, PortRequest
from pallet.network.settings import DriverSettings
from pallet.network.store import (
    PREDEFINED,
    EndpointRecord,
    NetworkRecord,
    delete_endpoint,
    delete_network,
    endpoints_of_container,
    endpoints_of_network,
    find_endpoint,
    find_network,
    get_network,
    insert_endpoint,
    insert_network,
    list_networks,
    new_id,
    now_rfc3339,
    pallet_subnets,
    validate_name,
)
from pallet.state import db
from pallet.state.locks import file_lock
from pallet.state.paths import DEFAULT_ROOT, StatePaths

OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
DEFAULT_NETWORK = "bridge"
Seq = Sequence[str]


_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def mac_for(addr: IPv4Address) -> str:
    """docker 20.10's MAC scheme: 02:42 followed by the four address bytes (unique per network)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)


class BridgeDriver:
    def __init__(self, paths: StatePaths, conn: sqlite3.Connection, settings: DriverSettings | None = None):
        self.paths = paths
        self.conn = conn
        self.settings = settings or DriverSettings.from_env()

    # ---- records ---------------------------------------------------------------------------------

    def get(self, ref: str) -> NetworkRecord:
        return get_network(self.conn, ref)

    def networks(self) -> list[NetworkRecord]:
        return list_networks(self.conn)

    def inspect(self, ref: str) -> dict[str, object]:
        rec = self.get(ref)
        containers = {ep.container_id: ep.to_docker_network_container() for ep in self.endpoints(rec.id)}
        return rec.to_docker(containers)

    def endpoints(self, network_id: str) -> list[EndpointRecord]:
        return endpoints_of_network(self.conn, network_id)

    def container_endpoints(self, container_id: str) -> list[tuple[NetworkRecord, EndpointRecord]]:
        """The networks a container is attached to, in attach order (for NetworkSettings.Networks)."""
        out = []
        for ep in endpoints_of_container(self.conn, container_id):
            out.append((get_network(self.conn, ep.network_id), ep))
        return out

    def _run_dir(self, *parts: str) -> Path:
        return self.paths.runroot.joinpath("networks", *parts)

    def _dns_pidfile(self, rec: NetworkRecord) -> Path:
        return self._run_dir(rec.id, "dns.pid")

    # ---- networks --------------------------------------------------------------------------------

    def ensure_predefined(self) -> None:
        """The records docker always lists: bridge (the default network), host and none. The default
        bridge's host state appears when the first container attaches to it."""
        if all(find_network(self.conn, n) for n in PREDEFINED):
            return
        with file_lock(self.settings.host_lock), db.write(self.conn):
            for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
                if find_network(self.conn, name):
                    continue
                rec = NetworkRecord(new_id(), name, now_rfc3339(), driver, ipam_options=None)
                if driver == "bridge":
                    rec.bridge = self.settings.default_bridge_name or (
                        "pallet0" if str(self.paths.root) == DEFAULT_ROOT else f"br-{rec.id[:12]}"
                    )
                    rec.ipam = ipam.pick_subnet(pallet_subnets(self.conn) + self._host_networks())
                    rec.options = {
                        "com.docker.network.bridge.default_bridge": "true",
                        "com.docker.network.bridge.enable_icc": "true",
                        OPT_MASQUERADE: "true",
                        "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                        OPT_BRIDGE_NAME: rec.bridge,
                        OPT_MTU: str(self.settings.mtu),
                    }
                insert_network(self.conn, rec)
                if rec.ipam is not None:
                    ipam.reserve_gateway(self.conn, rec.id, rec.ipam)
                    # Up at once, still under the host lock: the subnet is only claimed against other
                    # pallet roots (and the host) once its bridge holds the gateway address.
                    try:
                        self._bring_up(rec)
                    except BaseException:
                        self._tear_down(rec)
                        raise

    def _host_networks(self) -> list[IPv4Network]:
        with links.host_netlink() as ipr:
            return links.host_ipv4_networks(ipr)

    def create(
        self,
        name: str,
        *,
        driver: str = "bridge",
        subnet: str | None = None,
        gateway: str | None = None,
        ip_range: str | None = None,
        internal: bool = False,
        attachable: bool = False,
        enable_ipv6: bool = False,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
    ) -> NetworkRecord:
        """`docker network create`. Returns the record (its id is what the CLI prints)."""
        validate_name(name)
        if name in PREDEFINED:
            raise Conflict(f"network with name {name} already exists")
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        if enable_ipv6:
            raise InvalidArgument("IPv6 networks are not supported by pallet's bridge driver")
        options = dict(options or {})
        net_id = new_id()
        bridge = options.get(OPT_BRIDGE_NAME) or f"br-{net_id[:12]}"
        if len(bridge) > links.IFNAMSIZ:
            raise InvalidArgument(f"bridge name {bridge!r} is longer than {links.IFNAMSIZ} characters")
        with file_lock(self.settings.host_lock):
            with db.write(self.conn):
                if find_network(self.conn, name) is not None:
                    raise Conflict(f"network with name {name} already exists")
                taken = pallet_subnets(self.conn)
                cfg = ipam.config_from_user(subnet, gateway, ip_range, taken)
                user_configured = cfg is not None
                if cfg is None:
                    cfg = ipam.pick_subnet(taken + self._host_networks())
                rec = NetworkRecord(
                    net_id,
                    name,
                    now_rfc3339(),
                    "bridge",
                    bridge=bridge,
                    ipam=cfg,
                    internal=internal,
                    attachable=attachable,
                    labels=dict(labels or {}),
                    options=options,
                    ipam_user_configured=user_configured,
                )
                insert_network(self.conn, rec)
                ipam.reserve_gateway(self.conn, net_id, cfg)
            try:
                self._bring_up(rec)
            except BaseException:
                self._tear_down(rec)
                with db.write(self.conn):
                    delete_network(self.conn, rec.id)
                raise
        return rec

    def _ipam(self, rec: NetworkRecord) -> IpamConfig:
        if rec.ipam is None:
            raise PalletError(f"network {rec.name} has no IPAM configuration")
        return rec.ipam

    def _bring_up(self, rec: NetworkRecord) -> None:
        """Make the host match the record; every step is idempotent."""
        cfg = self._ipam(rec)
        assert rec.bridge is not None
        mtu = int(rec.options.get(OPT_MTU, self.settings.mtu))
        gw = IPv4Interface(f"{cfg.gateway}/{cfg.subnet.prefixlen}")
        with links.host_netlink() as ipr:
            links.ensure_bridge(ipr, rec.bridge, gw, mac=mac_for(cfg.gateway), mtu=mtu)
        # Forwarding on this bridge only: the host's other interfaces keep their setting.
        links.set_ipv4_conf(rec.bridge, "forwarding", 0 if rec.internal else 1)
        if self.settings.host_ip_forward and not rec.internal:
            links.set_ipv4_conf("all", "forwarding", 1)
        masquerade = rec.options.get(OPT_MASQUERADE, "true").lower() != "false"
        rules = nft.network_rules(rec.bridge, cfg.subnet, internal=rec.internal, masquerade=masquerade)
        nft.replace_table(nft.network_table(rec.id), rules)
        if rec.user_defined and not daemon.is_running(self._dns_pidfile(rec)):
            self._start_dns(rec, cfg)

    def _start_dns(self, rec: NetworkRecord, cfg: IpamConfig) -> None:
        upstreams = self.settings.dns_upstreams
        if upstreams is None:
            upstreams = hostfiles.host_upstreams()
        args = ["--db", str(self.paths.db), "--network", rec.id, "--listen", str(cfg.gateway)]
        args += ["--port", str(self.settings.dns_port), "--log", str(self._run_dir(rec.id, "dns.log"))]
        for u in upstreams:
            args += ["--upstream", u]
        daemon.spawn("pallet.network.dns", args, self._dns_pidfile(rec))

    def _tear_down(self, rec: NetworkRecord) -> None:
        daemon.stop(self._dns_pidfile(rec))
        nft.delete_table(nft.network_table(rec.id))
        if rec.bridge:
            with links.host_netlink() as ipr:
                links.delete_bridge(ipr, rec.bridge)
        run = self._run_dir(rec.id)
        for p in sorted(run.rglob("*"), reverse=True) if run.exists() else []:
            p.rmdir() if p.is_dir() else p.unlink(missing_ok=True)
        if run.exists():
            run.rmdir()

    def ensure_up(self, rec: NetworkRecord) -> None:
        """Cheap when everything is there (one netlink query, one pid check); rebuilds otherwise."""
        if rec.driver != "bridge" or rec.bridge is None:
            return
        with links.host_netlink() as ipr:
            present = links.link_exists(ipr, rec.bridge)
        if present and (not rec.user_defined or daemon.is_running(self._dns_pidfile(rec))):
            return
        with file_lock(self.settings.host_lock):
            self._bring_up(rec)

    def restore(self, ref: str) -> None:
        """Re-install all host state of a network: bridge, rules, DNS server, and the DNAT tables of
        its endpoints (after a firewall reload or `nft flush ruleset` took pallet's rules away)."""
        rec = self.get(ref)
        if rec.driver != "bridge":
            return
        with file_lock(self.settings.host_lock):
            self._bring_up(rec)
        for ep in self.endpoints(rec.id):
            bindings = ports.bindings_of(self.conn, ep.id, str(ep.address.ip))
            if bindings:
                publish.reinstall_rules(rec, ep, bindings, userland_proxy=self.settings.userland_proxy)

    def remove(self, ref: str) -> None:
        """`docker network rm`: refused while containers are attached."""
        rec = self.get(ref)
        if rec.name in PREDEFINED:
            raise PalletError(f"{rec.name} is a pre-defined network and cannot be removed")
        with file_lock(self.settings.host_lock):
            if endpoints_of_network(self.conn, rec.id):
                raise Conflict(
                    f"error while removing network: network {rec.name} id {rec.id} has active endpoints"
                )
            self._tear_down(rec)
            with db.write(self.conn):
                delete_network(self.conn, rec.id)

    # ---- endpoints -------------------------------------------------------------------------------

    def connect(
        self,
        ref: str,
        container_id: str,
        *,
        name: str,
        netns_path: Path,
        aliases: Seq = (),
        ipv4: str | None = None,
        mac: str | None = None,
        dns: Seq = (),
    ) -> EndpointRecord:
        """Attach the namespace at netns_path: a veth pair (ethN inside), an address, a default route
        unless the namespace has one or the network is internal, and DNS names (name, short ID,
        aliases). `dns` are the container's --dns servers, used by the embedded server for it."""
        rec = self.get(ref)
        if rec.driver != "bridge":
            raise InvalidArgument(f"container cannot be connected to the {rec.name} network this way")
        cfg = self._ipam(rec)
        if find_endpoint(self.conn, rec.id, container_id) is not None:
            raise Conflict(f"endpoint with name {name} already exists in network {rec.name}")
        if ipv4 and not rec.ipam_user_configured:
            raise InvalidArgument(
                "user specified IP address is supported only when connecting to networks with user "
                "configured subnets"
            )
        if not netns.is_netns(netns_path):
            raise InvalidArgument(f"{netns_path} is not a network namespace")
        if mac and not _MAC.match(mac):
            raise InvalidArgument(f"invalid MAC address: {mac}")
        self.ensure_up(rec)
        assert rec.bridge is not None
        ifname = links.next_ifname(netns_path)
        ep_id = new_id()
        with db.write(self.conn):
            addr = ipam.allocate(self.conn, rec.id, cfg, ep_id, ipv4)
            ep = EndpointRecord(
                id=ep_id,
                network_id=rec.id,
                container_id=container_id,
                name=name.lstrip("/"),
                aliases=[a for a in aliases if a],
                address=IPv4Interface(f"{addr}/{cfg.subnet.prefixlen}"),
                mac=(mac or mac_for(addr)).lower(),
                ifname=ifname,
                host_ifname="veth" + secrets.token_hex(4)[:7],
                netns=str(netns_path),
                dns=list(dns),
            )
            insert_endpoint(self.conn, ep)
        mtu = int(rec.options.get(OPT_MTU, self.settings.mtu))
        try:
            with links.host_netlink() as ipr:
                links.add_veth(
                    ipr,
                    host_name=ep.host_ifname,
                    bridge=rec.bridge,
                    netns_path=netns_path,
                    ifname=ifname,
                    mac=ep.mac,
                    mtu=mtu,
                )
            gateway = None if rec.internal else cfg.gateway
            links.configure_container_side(netns_path, ifname, ep.address, gateway)
        except BaseException:
            with links.host_netlink() as ipr:
                links.delete_link(ipr, ep.host_ifname)
            self._forget_endpoint(rec, ep)
            raise
        return ep

    def _forget_endpoint(self, rec: NetworkRecord, ep: EndpointRecord) -> None:
        with db.write(self.conn):
            ports.release(self.conn, ep.id)
            delete_endpoint(self.conn, ep.id)
            ipam.release(self.conn, rec.id, ep.id)

    def _endpoint(self, rec: NetworkRecord, container_id: str) -> EndpointRecord:
        ep = find_endpoint(self.conn, rec.id, container_id)
        if ep is None:
            raise NotFound(f"container {container_id[:12]} is not connected to network {rec.name}")
        return ep

    def disconnect(self, ref: str, container_id: str) -> None:
        """Detach: its ports, its veth pair (the container end dies with the host end), its address
        and names. Works whether or not the container's namespace still exists."""
        rec = self.get(ref)
        ep = self._endpoint(rec, container_id)
        self._unpublish(ep)
        with links.host_netlink() as ipr:
            links.delete_link(ipr, ep.host_ifname)
        self._forget_endpoint(rec, ep)
        self._hand_over_default_route(container_id, Path(ep.netns))

    def _hand_over_default_route(self, container_id: str, netns_path: Path) -> None:
        """The default route left with the interface it used: let the next attached network with a
        gateway provide it, as docker does."""
        if not netns.is_netns(netns_path):
            return
        for rec, ep in self.container_endpoints(container_id):
            if rec.internal or rec.ipam is None:
                continue
            links.ensure_default_route(netns_path, ep.ifname, rec.ipam.gateway)
            return

    def disconnect_all(self, container_id: str) -> None:
        """Every network of a container (on stop or removal), latest attachment first."""
        for rec, _ep in reversed(self.container_endpoints(container_id)):
            self.disconnect(rec.id, container_id)

    def release_container(self, container_id: str) -> None:
        """disconnect_all for a container whose namespace is going away (its exit, its removal, a
        crash's leftovers): ports, veth pairs, addresses and names, with no default route to hand
        over and no pyroute2 import (this runs on every container exit). Safe to run twice at once."""
        for ep in reversed(endpoints_of_container(self.conn, container_id)):
            self._unpublish(ep)
            links.delete_link_by_name(ep.host_ifname)
            with db.write(self.conn):
                ports.release(self.conn, ep.id)
                delete_endpoint(self.conn, ep.id)
                ipam.release(self.conn, ep.network_id, ep.id)

    # ---- published ports -------------------------------------------------------------------------

    def publish(self, ref: str, container_id: str, requests: list[PortRequest]) -> list[PortBinding]:
        """Publish ports of the container's endpoint on this network; returns the host bindings
        (with the ports picked for -P). Errors: "Bind for IP:PORT failed: port is already allocated"
        when pallet holds the port, docker-proxy's "address already in use" when another program does."""
        rec = self.get(ref)
        ep = self._endpoint(rec, container_id)
        if not requests:
            return []
        with db.write(self.conn):
            if ports.bindings_of(self.conn, ep.id, str(ep.address.ip)):
                raise Conflict(f"endpoint {ep.name} already has published ports")
            bindings = ports.reserve(self.conn, ep.id, str(ep.address.ip), requests)
        try:
            publish.install(
                self.paths.runroot, rec, ep, bindings, userland_proxy=self.settings.userland_proxy
            )
        except BaseException:
            self._unpublish(ep)
            raise
        return bindings

    def unpublish(self, ref: str, container_id: str) -> None:
        rec = self.get(ref)
        self._unpublish(self._endpoint(rec, container_id))

    def _unpublish(self, ep: EndpointRecord) -> None:
        had = bool(ports.bindings_of(self.conn, ep.id, str(ep.address.ip)))
        if had or publish.installed(self.paths.runroot, ep):
            publish.uninstall(self.paths.runroot, ep)
        if had:
            with db.write(self.conn):
                ports.release(self.conn, ep.id)

    def port_bindings(self, container_id: str) -> list[PortBinding]:
        out: list[PortBinding] = []
        for ep in endpoints_of_container(self.conn, container_id):
            out += ports.bindings_of(self.conn, ep.id, str(ep.address.ip))
        return out

    # ---- /etc files ------------------------------------------------------------------------------

    def resolv_conf(
        self, ref: str | None, *, dns: Seq = (), dns_search: Seq = (), dns_options: Seq = ()
    ) -> str:
        """resolv.conf for a container whose first network is `ref` (None: host/none networking)."""
        rec = self.get(ref) if ref else None
        embedded = str(rec.ipam.gateway) if rec and rec.user_defined and rec.ipam else None
        host = hostfiles.read_host_resolv_conf()
        return hostfiles.resolv_conf(
            host=host, embedded_dns=embedded, dns=[*dns], dns_search=[*dns_search], dns_options=[*dns_options]
        )

    def hosts(self, container_id: str, *, hostname: str, domainname: str = "", extra_hosts: Seq = ()) -> str:
        """/etc/hosts with the container's first address (none: no own line); `host-gateway` in
        --add-host is the default bridge's gateway, as in docker."""
        eps = endpoints_of_container(self.conn, container_id)
        default = find_network(self.conn, DEFAULT_NETWORK)
        return hostfiles.hosts(
            hostname=hostname,
            domainname=domainname,
            address=str(eps[0].address.ip) if eps else None,
            extra_hosts=[*extra_hosts],
            host_gateway=str(default.ipam.gateway) if default and default.ipam else None,
        )
