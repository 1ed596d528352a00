"""Network and endpoint records in the state database, and their Docker Engine API shapes
(NetworkResource for `network inspect`, EndpointSettings for a container's NetworkSettings)."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from pallet.errors import Conflict, InvalidArgument, NotFound
from pallet.network.ipam import IpamConfig

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
PREDEFINED = ("bridge", "host", "none")


def new_id() -> str:
    return secrets.token_hex(32)


def now_rfc3339() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def validate_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidArgument(f'invalid network name "{name}": only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')


@dataclass
class NetworkRecord:
    id: str
    name: str
    created: str
    driver: str  # bridge | host | null
    bridge: str | None = None
    ipam: IpamConfig | None = None
    internal: bool = False
    enable_ipv6: bool = False
    attachable: bool = False
    ingress: bool = False
    config_only: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ipam_options: dict[str, str] | None = field(default_factory=dict)
    ipam_user_configured: bool = False  # --subnet given: only then may a container ask for --ip

    @property
    def user_defined(self) -> bool:
        """Docker gives only user-defined bridge networks the embedded DNS server."""
        return self.driver == "bridge" and self.name not in PREDEFINED

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_docker(self, containers: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
        """The Engine API's NetworkResource (GET /networks/{id})."""
        return {
            "Name": self.name,
            "Id": self.id,
            "Created": self.created,
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv6": self.enable_ipv6,
            "IPAM": {
                "Driver": "default",
                "Options": self.ipam_options,
                "Config": [self.ipam.to_docker()] if self.ipam else [],
            },
            "Internal": self.internal,
            "Attachable": self.attachable,
            "Ingress": self.ingress,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": self.config_only,
            "Containers": containers or {},
            "Options": self.options,
            "Labels": self.labels,
        }


@dataclass
class EndpointRecord:
    id: str
    network_id: str
    container_id: str
    name: str
    aliases: list[str]
    address: IPv4Interface
    mac: str
    ifname: str
    host_ifname: str
    netns: str
    dns: list[str] = field(default_factory=list)

    def to_docker_network_container(self) -> dict[str, str]:
        """One entry of NetworkResource.Containers."""
        return {
            "Name": self.name,
            "EndpointID": self.id,
            "MacAddress": self.mac,
            "IPv4Address": str(self.address),
            "IPv6Address": "",
        }

    def to_docker_endpoint_settings(self, gateway: IPv4Address | None) -> dict[str, Any]:
        """EndpointSettings, as a container's NetworkSettings.Networks[<name>] shows it."""
        return {
            "IPAMConfig": None,
            "Links": None,
            "Aliases": list(self.aliases) or None,
            "NetworkID": self.network_id,
            "EndpointID": self.id,
            "Gateway": str(gateway) if gateway else "",
            "IPAddress": str(self.address.ip),
            "IPPrefixLen": self.address.network.prefixlen,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "MacAddress": self.mac,
            "DriverOpts": None,
        }


# ---- networks ---------------------------------------------------------------------------------


def _network(row: sqlite3.Row) -> NetworkRecord:
    cfg = json.loads(row["config"])
    ipam = None
    if row["subnet"]:
        ipam = IpamConfig(
            IPv4Network(row["subnet"]),
            IPv4Address(row["gateway"]),
            IPv4Network(row["ip_range"]) if row["ip_range"] else None,
        )
    return NetworkRecord(
        id=row["id"],
        name=row["name"],
        created=row["created"],
        driver=row["driver"],
        bridge=row["bridge"],
        ipam=ipam,
        internal=bool(row["internal"]),
        enable_ipv6=cfg.get("EnableIPv6", False),
        attachable=cfg.get("Attachable", False),
        ingress=cfg.get("Ingress", False),
        config_only=cfg.get("ConfigOnly", False),
        options=cfg.get("Options", {}),
        labels=cfg.get("Labels", {}),
        ipam_options=cfg.get("IPAMOptions", {}),
        ipam_user_configured=cfg.get("IPAMUserConfigured", False),
    )


def insert_network(conn: sqlite3.Connection, rec: NetworkRecord) -> None:
    cfg = {
        "EnableIPv6": rec.enable_ipv6,
        "Attachable": rec.attachable,
        "Ingress": rec.ingress,
        "ConfigOnly": rec.config_only,
        "Options": rec.options,
        "Labels": rec.labels,
        "IPAMOptions": rec.ipam_options,
        "IPAMUserConfigured": rec.ipam_user_configured,
    }
    try:
        conn.execute(
            "INSERT INTO networks (id, name, created, driver, bridge, subnet, gateway, ip_range, internal,"
            " config) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.id,
                rec.name,
                rec.created,
                rec.driver,
                rec.bridge,
                str(rec.ipam.subnet) if rec.ipam else None,
                str(rec.ipam.gateway) if rec.ipam else None,
                str(rec.ipam.ip_range) if rec.ipam and rec.ipam.ip_range else None,
                int(rec.internal),
                json.dumps(cfg, sort_keys=True),
            ),
        )
    except sqlite3.IntegrityError:
        raise Conflict(f"network with name {rec.name} already exists")


def find_network(conn: sqlite3.Connection, ref: str) -> NetworkRecord | None:
    """Docker's lookup order: full ID, exact name, then a unique ID prefix."""
    row = conn.execute("SELECT * FROM networks WHERE id = ?", (ref,)).fetchone()
    if row is None:
        row = conn.execute("SELECT * FROM networks WHERE name = ?", (ref,)).fetchone()
    if row is None and re.fullmatch(r"[0-9a-f]{1,64}", ref):
        rows = conn.execute("SELECT * FROM networks WHERE id LIKE ?", (ref + "%",)).fetchall()
        if len(rows) > 1:
            raise Conflict(f"network {ref} is ambiguous ({len(rows)} matches found based on ID prefix)")
        row = rows[0] if rows else None
    return _network(row) if row is not None else None


def get_network(conn: sqlite3.Connection, ref: str) -> NetworkRecord:
    rec = find_network(conn, ref)
    if rec is None:
        raise NotFound(f"network {ref} not found")
    return rec


def list_networks(conn: sqlite3.Connection) -> list[NetworkRecord]:
    return [_network(r) for r in conn.execute("SELECT * FROM networks ORDER BY created")]


def delete_network(conn: sqlite3.Connection, network_id: str) -> None:
    conn.execute("DELETE FROM networks WHERE id = ?", (network_id,))


def pallet_subnets(conn: sqlite3.Connection) -> list[IPv4Network]:
    return [IPv4Network(r[0]) for r in conn.execute("SELECT subnet FROM networks WHERE subnet IS NOT NULL")]


def bridge_names(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT bridge FROM networks WHERE bridge IS NOT NULL")}


# ---- endpoints ----------------------------------------------------------------------------------


def _endpoint(row: sqlite3.Row) -> EndpointRecord:
    return EndpointRecord(
        id=row["id"],
        network_id=row["network_id"],
        container_id=row["container_id"],
        name=row["name"],
        aliases=json.loads(row["aliases"]),
        address=IPv4Interface(f"{row['ipv4']}/{row['prefixlen']}"),
        mac=row["mac"],
        ifname=row["ifname"],
        host_ifname=row["host_ifname"],
        netns=row["netns"],
        dns=json.loads(row["dns"]),
    )


def insert_endpoint(conn: sqlite3.Connection, ep: EndpointRecord) -> None:
    try:
        conn.execute(
            "INSERT INTO network_endpoints (id, network_id, container_id, name, aliases, ipv4, prefixlen,"
            " mac, ifname, host_ifname, netns, dns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ep.id,
                ep.network_id,
                ep.container_id,
                ep.name,
                json.dumps(ep.aliases),
                str(ep.address.ip),
                ep.address.network.prefixlen,
                ep.mac,
                ep.ifname,
                ep.host_ifname,
                ep.netns,
                json.dumps(ep.dns),
            ),
        )
    except sqlite3.IntegrityError:
        raise Conflict(f"endpoint with name {ep.name} already exists in network")


def find_endpoint(conn: sqlite3.Connection, network_id: str, container_id: str) -> EndpointRecord | None:
    row = conn.execute(
        "SELECT * FROM network_endpoints WHERE network_id = ? AND container_id = ?",
        (network_id, container_id),
    ).fetchone()
    return _endpoint(row) if row is not None else None


def endpoints_of_network(conn: sqlite3.Connection, network_id: str) -> list[EndpointRecord]:
    rows = conn.execute("SELECT * FROM network_endpoints WHERE network_id = ? ORDER BY rowid", (network_id,))
    return [_endpoint(r) for r in rows]


def endpoints_of_container(conn: sqlite3.Connection, container_id: str) -> list[EndpointRecord]:
    rows = conn.execute(
        "SELECT * FROM network_endpoints WHERE container_id = ? ORDER BY rowid", (container_id,)
    )
    return [_endpoint(r) for r in rows]


def delete_endpoint(conn: sqlite3.Connection, endpoint_id: str) -> None:
    conn.execute("DELETE FROM network_endpoints WHERE id = ?", (endpoint_id,))


def containers_view(conn: sqlite3.Connection, network_id: str) -> dict[str, dict[str, str]]:
    return {
        ep.container_id: ep.to_docker_network_container() for ep in endpoints_of_network(conn, network_id)
    }
