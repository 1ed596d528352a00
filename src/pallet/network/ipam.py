"""IP address management: subnets for new networks and addresses inside them.

Subnets come from docker's default local pools (172.17-31.0.0/16, then 192.168.0.0/16 in /20s) and
must not overlap the host's own addresses and routes nor another pallet network. Addresses live in
the `network_addresses` table, one row per address in use, so an address is never handed out twice
(the primary key enforces it across processes) and is free again as soon as its row is deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network

from pallet.errors import Conflict, InvalidArgument, PalletError

GATEWAY_OWNER = "gateway"


def default_pools() -> list[IPv4Network]:
    pools = [IPv4Network(f"172.{i}.0.0/16") for i in range(17, 32)]
    pools += list(IPv4Network("192.168.0.0/16").subnets(new_prefix=20))
    return pools


@dataclass(frozen=True)
class IpamConfig:
    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None

    def to_docker(self) -> dict[str, str]:
        cfg = {"Subnet": str(self.subnet), "Gateway": str(self.gateway)}
        if self.ip_range is not None:
            cfg["IPRange"] = str(self.ip_range)
        return cfg


def _parse_network(value: str, what: str) -> IPv4Network:
    try:
        net = ip_network(value, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid {what}: {value}")
    if not isinstance(net, IPv4Network):
        raise InvalidArgument(f"invalid {what} {value}: IPv6 is not supported")
    return net


def _parse_address(value: str, what: str) -> IPv4Address:
    try:
        addr = ip_address(value)
    except ValueError:
        raise InvalidArgument(f"invalid {what}: {value}")
    if not isinstance(addr, IPv4Address):
        raise InvalidArgument(f"invalid {what} {value}: IPv6 is not supported")
    return addr


def first_host(net: IPv4Network) -> IPv4Address:
    return net.network_address + 1 if net.prefixlen < 31 else net.network_address


def overlaps(candidate: IPv4Network, taken: Iterable[IPv4Network]) -> bool:
    return any(candidate.overlaps(t) for t in taken)


def config_from_user(
    subnet: str | None, gateway: str | None, ip_range: str | None, taken_by_pallet: Iterable[IPv4Network]
) -> IpamConfig | None:
    """Validate --subnet/--gateway/--ip-range as docker does; None when no subnet was given (the
    caller then picks one). A user subnet is checked against other pallet networks only, as docker
    checks only its own pools: the user is trusted to know the host's routing."""
    if subnet is None:
        if gateway or ip_range:
            raise InvalidArgument("every ip-range or gateway must have a corresponding subnet")
        return None
    net = _parse_network(subnet, "subnet")
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {net}: the subnet is too small for any container")
    if overlaps(net, taken_by_pallet):
        raise Conflict("Pool overlaps with other one on this address space")
    gw = first_host(net)
    if gateway:
        gw = _parse_address(gateway, "gateway")
        if gw not in net:
            raise InvalidArgument(f"no matching subnet for gateway {gateway}")
        if gw in (net.network_address, net.broadcast_address):
            raise InvalidArgument(f"invalid gateway {gateway}: not a host address of {net}")
    rng = None
    if ip_range:
        rng = _parse_network(ip_range, "ip-range")
        if not rng.subnet_of(net):
            raise InvalidArgument(f"no matching subnet for range {ip_range}")
    return IpamConfig(net, gw, rng)


def pick_subnet(taken: Iterable[IPv4Network], pools: list[IPv4Network] | None = None) -> IpamConfig:
    """The first default pool that overlaps nothing the host or pallet uses."""
    taken = list(taken)
    for pool in pools or default_pools():
        if not overlaps(pool, taken):
            return IpamConfig(pool, first_host(pool))
    raise PalletError(
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign "
        "to the network"
    )


def reserve_gateway(conn: sqlite3.Connection, network_id: str, cfg: IpamConfig) -> None:
    conn.execute(
        "INSERT INTO network_addresses (network_id, address, owner) VALUES (?, ?, ?)",
        (network_id, str(cfg.gateway), GATEWAY_OWNER),
    )


def allocate(
    conn: sqlite3.Connection,
    network_id: str,
    cfg: IpamConfig,
    owner: str,
    requested: str | None = None,
) -> IPv4Address:
    """Take one address for `owner` inside the caller's write transaction.

    A requested (static) address must lie in the subnet; like docker it may lie outside --ip-range,
    which is the documented way to keep static addresses clear of dynamic ones. Dynamic addresses
    come from --ip-range (or the subnet), lowest free first, as docker's default allocator does."""
    if requested is not None:
        addr = _parse_address(requested, "IP address")
        if addr not in cfg.subnet or addr in (cfg.subnet.network_address, cfg.subnet.broadcast_address):
            raise InvalidArgument(
                f"Invalid address {requested}: It does not belong to any of this network's subnets"
            )
        try:
            _insert(conn, network_id, addr, owner)
        except sqlite3.IntegrityError:
            raise Conflict("Address already in use")
        return addr
    used = {
        int(IPv4Address(row[0]))
        for row in conn.execute("SELECT address FROM network_addresses WHERE network_id = ?", (network_id,))
    }
    pool = cfg.ip_range or cfg.subnet
    lo, hi = int(pool.network_address), int(pool.broadcast_address)
    reserved = {int(cfg.subnet.network_address), int(cfg.subnet.broadcast_address)}
    for n in range(lo, hi + 1):
        if n not in used and n not in reserved:
            addr = IPv4Address(n)
            _insert(conn, network_id, addr, owner)
            return addr
    raise PalletError(f"no available IPv4 addresses on this network's address pools: {network_id}")


def _insert(conn: sqlite3.Connection, network_id: str, addr: IPv4Address, owner: str) -> None:
    conn.execute(
        "INSERT INTO network_addresses (network_id, address, owner) VALUES (?, ?, ?)",
        (network_id, str(addr), owner),
    )


def release(conn: sqlite3.Connection, network_id: str, owner: str) -> None:
    conn.execute("DELETE FROM network_addresses WHERE network_id = ? AND owner = ?", (network_id, owner))


def addresses(conn: sqlite3.Connection, network_id: str | None = None) -> list[tuple[str, str, str]]:
    """(network_id, address, owner) rows, for inspection and leak checks."""
    if network_id is None:
        rows = conn.execute("SELECT network_id, address, owner FROM network_addresses ORDER BY 1, 2")
    else:
        rows = conn.execute(
            "SELECT network_id, address, owner FROM network_addresses WHERE network_id = ? ORDER BY 2",
            (network_id,),
        )
    return [(r[0], r[1], r[2]) for r in rows]
