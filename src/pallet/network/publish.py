"""Host-side programming of an endpoint's published ports: the DNAT table, route_localnet when the
loopback path goes through nftables, and the userland proxy holding the host sockets.
(Reservation of the ports in the database is ports.py's job; the driver strings the two together.)"""

from __future__ import annotations

from pathlib import Path

from pallet.network import daemon, links, nft, ports
from pallet.network.ports import PortBinding
from pallet.network.store import EndpointRecord, NetworkRecord


def proxy_pidfile(runroot: Path, ep: EndpointRecord) -> Path:
    return runroot / "networks" / ep.network_id / "proxy" / f"{ep.id}.pid"


def _needs_loopback(b: PortBinding) -> bool:
    return b.host_ip == "0.0.0.0" or b.host_ip.startswith("127.")


def install(
    runroot: Path,
    rec: NetworkRecord,
    ep: EndpointRecord,
    bindings: list[PortBinding],
    *,
    userland_proxy: bool,
) -> None:
    """Bind every host port first (so "address already in use" is reported here), then the DNAT
    table, then hand the sockets to the proxy (proxy mode) or drop them (they were only a check)."""
    socks = ports.open_listeners(bindings, f"{ep.name} ({ep.id})")
    try:
        by_nat = not userland_proxy
        if by_nat and rec.bridge and any(_needs_loopback(b) for b in bindings):
            # Lets 127.0.0.1-sourced packets leave through the bridge (masqueraded by the network's
            # table); the network's raw rule still drops anything addressed to 127/8 from containers.
            links.set_ipv4_conf(rec.bridge, "route_localnet", 1)
        if by_nat:
            # A container reaching its own published port through a host address comes back out of
            # its own bridge port (with br_netfilter the DNAT happens at the bridge level).
            links.set_hairpin(ep.host_ifname)
        reinstall_rules(rec, ep, bindings, userland_proxy=userland_proxy)
        if userland_proxy:
            args: list[str] = []
            for s, b in zip(socks, bindings, strict=True):
                args += ["--map", f"{s.fileno()}:{b.proto}:{b.container_ip}:{b.container_port}"]
            daemon.spawn(
                "pallet.network.proxy", args, proxy_pidfile(runroot, ep), pass_fds=[s.fileno() for s in socks]
            )
    finally:
        for s in socks:
            s.close()


def reinstall_rules(
    rec: NetworkRecord, ep: EndpointRecord, bindings: list[PortBinding], *, userland_proxy: bool
) -> None:
    """(Re)create the endpoint's DNAT table; also used after a firewall reload flushed it."""
    rules = nft.dnat_rules(
        [b.as_rule() for b in bindings], bridge=rec.bridge or "", loopback_by_nat=not userland_proxy
    )
    nft.replace_table(nft.endpoint_table(ep.id), rules)


def uninstall(runroot: Path, ep: EndpointRecord) -> None:
    daemon.stop(proxy_pidfile(runroot, ep))
    nft.delete_table(nft.endpoint_table(ep.id))


def installed(runroot: Path, ep: EndpointRecord) -> bool:
    return proxy_pidfile(runroot, ep).exists()
