"""Published ports (-p / -P): parsing, reservation in the state database, host-side listeners.

How a published port is reached (see nft.dnat_rules and proxy.py):
- from other hosts and from containers: nftables DNAT in prerouting;
- from the host to one of its non-loopback addresses: DNAT in output;
- from the host to 127.0.0.1: the kernel cannot DNAT a loopback-sourced packet into another
  namespace unless the bridge has route_localnet=1 and the packet is masqueraded. Default: a small
  userland proxy per endpoint (docker's default too), which also holds the host port so nothing
  else can take it. `userland_proxy=False` selects route_localnet + DNAT instead (faster, no process,
  but nothing then holds the port against other host programs).
"""

from __future__ import annotations

import errno
import re
import socket
import sqlite3
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from pallet.errors import Conflict, InvalidArgument

PROTOS = ("tcp", "udp")


@dataclass(frozen=True)
class PortRequest:
    """One container port to publish; host_port 0 means "pick a free one" (-P, or -p 80)."""

    container_port: int
    proto: str = "tcp"
    host_ip: str = "0.0.0.0"
    host_port: int = 0
    host_port_end: int = 0  # a host range (8000-8010:80): the first free port in it


@dataclass(frozen=True)
class PortBinding:
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int

    def as_rule(self) -> tuple[str, str, int, str, int]:
        return (self.proto, self.host_ip, self.host_port, self.container_ip, self.container_port)

    def to_docker(self) -> dict[str, str]:
        """One entry of NetworkSettings.Ports["80/tcp"]."""
        return {"HostIp": self.host_ip, "HostPort": str(self.host_port)}


_SPEC = re.compile(r"^(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]*):)??(?:(?P<host>[0-9-]*):)?(?P<ctr>[0-9-]+)$")


def _port_range(text: str, what: str) -> tuple[int, int]:
    lo_s, _, hi_s = text.partition("-")
    try:
        lo = int(lo_s)
        hi = int(hi_s) if hi_s else lo
    except ValueError:
        raise InvalidArgument(f"invalid {what} port: {text}")
    if not (0 < lo <= hi <= 65535):
        raise InvalidArgument(f"invalid {what} port: {text}")
    return lo, hi


def parse_publish(spec: str) -> list[PortRequest]:
    """docker's -p syntax: [ip:][hostPort[-end]:]containerPort[-end][/proto]."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in PROTOS:
        raise InvalidArgument(f"invalid proto: {proto}")
    m = _SPEC.match(body)
    if not m:
        raise InvalidArgument(f"invalid publish spec: {spec}")
    ip = (m.group("ip") or "").strip("[]") or "0.0.0.0"
    try:
        IPv4Address(ip)  # strict dotted quad (inet_aton would take "1.2.3")
    except ValueError:
        raise InvalidArgument(f"invalid IP address: {ip}")
    c_lo, c_hi = _port_range(m.group("ctr"), "container")
    host = m.group("host") or ""
    if not host:
        return [PortRequest(p, proto, ip) for p in range(c_lo, c_hi + 1)]
    h_lo, h_hi = _port_range(host, "host")
    if c_lo == c_hi and h_hi > h_lo:
        return [PortRequest(c_lo, proto, ip, h_lo, h_hi)]
    if h_hi - h_lo != c_hi - c_lo:
        raise InvalidArgument(
            f"invalid ranges specified for container and host Ports: {m.group('ctr')} and {host}"
        )
    return [PortRequest(c_lo + i, proto, ip, h_lo + i) for i in range(c_hi - c_lo + 1)]


def ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 49153, 65535


def _ips_clash(a: str, b: str) -> bool:
    return a == b or "0.0.0.0" in (a, b)


def _taken(conn: sqlite3.Connection, proto: str, host_ip: str, port: int) -> bool:
    rows = conn.execute(
        "SELECT host_ip FROM network_ports WHERE proto = ? AND host_port = ?", (proto, port)
    ).fetchall()
    return any(_ips_clash(host_ip, r[0]) for r in rows)


def bind_host_socket(proto: str, host_ip: str, port: int) -> socket.socket:
    """Bind (and for TCP listen on) the host port. Failure means another program holds it."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip, port))
        if proto == "tcp":
            s.listen(128)
    except BaseException:
        s.close()
        raise
    return s


def _free_on_host(proto: str, host_ip: str, port: int) -> bool:
    try:
        bind_host_socket(proto, host_ip, port).close()
    except OSError:
        return False
    return True


def reserve(
    conn: sqlite3.Connection, endpoint_id: str, container_ip: str, requests: list[PortRequest]
) -> list[PortBinding]:
    """Record the bindings inside the caller's write transaction, picking free ports where asked.

    The primary key plus this check under the write lock means two pallet processes can never hand
    out the same host port; ports another program holds are skipped when picking and refused when
    asked for explicitly (by open_listeners)."""
    out: list[PortBinding] = []
    for req in requests:
        if req.host_port:
            lo, hi = req.host_port, req.host_port_end or req.host_port
        else:
            lo, hi = ephemeral_range()
        port = 0
        for candidate in range(lo, hi + 1):
            if _taken(conn, req.proto, req.host_ip, candidate):
                continue
            if (hi > lo or not req.host_port) and not _free_on_host(req.proto, req.host_ip, candidate):
                continue
            port = candidate
            break
        if not port:
            shown = f"{lo}-{hi}" if hi > lo else str(lo)
            raise Conflict(f"Bind for {req.host_ip}:{shown} failed: port is already allocated")
        conn.execute(
            "INSERT INTO network_ports (proto, host_ip, host_port, endpoint_id, container_port)"
            " VALUES (?, ?, ?, ?, ?)",
            (req.proto, req.host_ip, port, endpoint_id, req.container_port),
        )
        out.append(PortBinding(req.proto, req.host_ip, port, container_ip, req.container_port))
    return out


def open_listeners(bindings: list[PortBinding], endpoint_desc: str) -> list[socket.socket]:
    """Bind every host port now, so a port held by another program fails the publish right here."""
    socks: list[socket.socket] = []
    try:
        for b in bindings:
            try:
                socks.append(bind_host_socket(b.proto, b.host_ip, b.host_port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise Conflict(
                        f"driver failed programming external connectivity on endpoint {endpoint_desc}: "
                        f"Error starting userland proxy: listen {b.proto}4 {b.host_ip}:{b.host_port}: "
                        "bind: address already in use"
                    )
                raise
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def bindings_of(conn: sqlite3.Connection, endpoint_id: str, container_ip: str) -> list[PortBinding]:
    rows = conn.execute(
        "SELECT proto, host_ip, host_port, container_port FROM network_ports WHERE endpoint_id = ?"
        " ORDER BY container_port, proto, host_ip",
        (endpoint_id,),
    )
    return [PortBinding(r[0], r[1], r[2], container_ip, r[3]) for r in rows]


def release(conn: sqlite3.Connection, endpoint_id: str) -> None:
    conn.execute("DELETE FROM network_ports WHERE endpoint_id = ?", (endpoint_id,))


def docker_ports(bindings: list[PortBinding]) -> dict[str, list[dict[str, str]]]:
    """NetworkSettings.Ports for the published ones: {"80/tcp": [{"HostIp": ..., "HostPort": ...}]}."""
    out: dict[str, list[dict[str, str]]] = {}
    for b in bindings:
        out.setdefault(f"{b.container_port}/{b.proto}", []).append(b.to_docker())
    return out
