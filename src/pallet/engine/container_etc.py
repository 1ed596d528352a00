"""The files docker bind-mounts over a container's /etc/hostname, /etc/hosts and /etc/resolv.conf,
written into the container's directory at every start, for each network mode:

- bridge networks: hosts with the container's first address; resolv.conf naming the network's
  embedded DNS server (user-defined networks) or the host's resolvers (the default bridge, where
  docker offers no name resolution between containers);
- none: the localhost block only, and the host's resolvers;
- host: the host's own files;
- container:<other>: the other container's hosts and resolv.conf, and its hostname.

The host's resolvers are replaced by PALLET_DNS_UPSTREAMS when that is set (empty: no nameserver at
all), so that nothing a test runs can send a query off the machine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pallet.network import hostfiles

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

ETC_FILES = ("resolv.conf", "hostname", "hosts")


def write_atomic(path: Path, data: bytes) -> None:
    """Replace path whole (readers never see half a file). No fsync: these files are written anew
    at every start, so a crash can only lose a copy that would be rewritten anyway."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def upstream_override() -> list[str] | None:
    """PALLET_DNS_UPSTREAMS (comma list) when set: the only resolvers a container may be given."""
    raw = os.environ.get("PALLET_DNS_UPSTREAMS")
    if raw is None:
        return None
    return [u.strip() for u in raw.split(",") if u.strip()]


def plain_resolv_conf(hc: dict[str, Any]) -> str:
    """resolv.conf without an embedded DNS server: --dns servers, else the host's (loopback ones
    removed: unreachable from another namespace)."""
    host = hostfiles.read_host_resolv_conf()
    dns, search, options = list(hc.get("Dns") or []), hc.get("DnsSearch") or [], hc.get("DnsOptions") or []
    override = upstream_override()
    if not dns and override is not None:
        rc = hostfiles.ResolvConf(override, list(search) or host.search, list(options) or host.options)
        return rc.render()
    return hostfiles.resolv_conf(host=host, dns=dns, dns_search=list(search), dns_options=list(options))


def host_gateway_needed(extra_hosts: Sequence[str]) -> bool:
    return any(h.endswith(("host-gateway", "=host-gateway")) for h in extra_hosts)


def write(
    cdir: Path,
    *,
    hostname: str,
    hosts: str,
    resolv: str,
    shared_from: Path | None = None,
) -> list[dict[str, Any]]:
    """Write hostname, hosts and resolv.conf into cdir; return the OCI bind mounts for them.
    With shared_from (container:<other> mode) hosts and resolv.conf are the other container's files."""
    write_atomic(cdir / "hostname", f"{hostname}\n".encode())
    if shared_from is None:
        write_atomic(cdir / "hosts", hosts.encode())
        write_atomic(cdir / "resolv.conf", resolv.encode())
    mounts = []
    for name in ETC_FILES:
        source = cdir / name if shared_from is None or name == "hostname" else shared_from / name
        mounts.append(
            {
                "destination": f"/etc/{name}",
                "type": "bind",
                "source": str(source),
                "options": ["rbind", "rprivate"],
            }
        )
    return mounts


def host_mode_files(hc: dict[str, Any], host_gateway: str | None) -> tuple[str, str]:
    """--network host: the host's /etc/hosts (with --add-host lines) and resolv.conf."""
    hosts = _read_text("/etc/hosts")
    if hosts and not hosts.endswith("\n"):
        hosts += "\n"
    for entry in hc.get("ExtraHosts") or []:
        name, ip = hostfiles.parse_add_host(entry, host_gateway)
        hosts += f"{ip}\t{name}\n"
    return hosts, _read_text("/etc/resolv.conf")


def none_mode_files(hc: dict[str, Any], hostname: str, host_gateway: str | None) -> tuple[str, str]:
    """--network none: the localhost block (no address of its own) and the host's resolvers."""
    hosts = hostfiles.hosts(
        hostname=hostname, extra_hosts=list(hc.get("ExtraHosts") or []), host_gateway=host_gateway
    )
    return hosts, plain_resolv_conf(hc)
