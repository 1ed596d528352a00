"""The bridge driver's host-facing settings, from the environment or given by tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DriverSettings:
    """Host-facing choices. from_env() reads PALLET_DNS_UPSTREAMS (comma list; empty: never forward),
    PALLET_USERLAND_PROXY (0: loopback ports by route_localnet + DNAT) and PALLET_IP_FORWARD (1)."""

    dns_upstreams: list[str] | None = None  # None: the host's resolv.conf
    userland_proxy: bool = True
    mtu: int = 1500
    dns_port: int = 53
    host_lock: Path = field(default_factory=lambda: _host_lock_path())
    default_bridge_name: str | None = None  # None: pallet0 for the default root, else br-<id12>
    # Ports published for other hosts need forwarding on the uplink too; docker turns on
    # net.ipv4.ip_forward host-wide. pallet only enables forwarding on its own bridges unless asked.
    host_ip_forward: bool = False

    @classmethod
    def from_env(cls) -> DriverSettings:
        s = cls()
        if "PALLET_DNS_UPSTREAMS" in os.environ:
            s.dns_upstreams = [u.strip() for u in os.environ["PALLET_DNS_UPSTREAMS"].split(",") if u.strip()]
        if os.environ.get("PALLET_USERLAND_PROXY", "").lower() in ("0", "false", "no"):
            s.userland_proxy = False
        if os.environ.get("PALLET_IP_FORWARD", "").lower() in ("1", "true", "yes"):
            s.host_ip_forward = True
        return s


def _host_lock_path() -> Path:
    """Bridges, subnets and host ports are host-wide: one lock for every pallet root on the host."""
    run_lock = Path("/run/lock")
    return (run_lock if run_lock.is_dir() else Path("/run")) / "pallet-network.lock"
