"""/etc/hosts and /etc/resolv.conf for a container, as docker (20.10) writes them.

hosts: the fixed localhost block, then --add-host entries, then the container's own address and
hostname (docker appends that line once the endpoint has an address).
resolv.conf: on a user-defined network the embedded DNS server is the only nameserver, with the host's
search domains and options plus `ndots:0`; otherwise the host's file with loopback nameservers
removed (unreachable from another namespace) and docker's public fallbacks if none are left.
--dns / --dns-search / --dns-option replace the corresponding part.
"""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

from pallet.errors import InvalidArgument
from pallet.records import Record

LOCALHOST_BLOCK = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
FALLBACK_NAMESERVERS = ["8.8.8.8", "8.8.4.4"]
SYSTEMD_RESOLVED = Path("/run/systemd/resolve/resolv.conf")
EMBEDDED_DNS_OPTIONS = ["ndots:0"]


class ResolvConf(Record):
    __slots__ = ("nameservers", "search", "options")

    def __init__(
        self,
        nameservers: list[str] | None = None,
        search: list[str] | None = None,
        options: list[str] | None = None,
    ) -> None:
        self.nameservers = nameservers if nameservers is not None else []
        self.search = search if search is not None else []
        self.options = options if options is not None else []

    @classmethod
    def parse(cls, text: str) -> ResolvConf:
        rc = cls()
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].split(";", 1)[0].strip()
            words = line.split()
            if not words:
                continue
            key, rest = words[0], words[1:]
            if key == "nameserver" and rest:
                rc.nameservers.append(rest[0])
            elif key in ("search", "domain"):
                rc.search = rest  # the last search/domain line wins, as in the resolver
            elif key == "options":
                rc.options += rest
        return rc

    def render(self) -> str:
        """resolvconf.Build's layout: search, nameservers, options."""
        out = []
        if self.search and " ".join(self.search).strip() != ".":
            out.append("search " + " ".join(self.search))
        out += [f"nameserver {ns}" for ns in self.nameservers]
        if self.options:
            out.append("options " + " ".join(self.options))
        return "".join(line + "\n" for line in out)


def _is_loopback(ns: str) -> bool:
    try:
        return ip_address(ns.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def read_host_resolv_conf(path: Path = Path("/etc/resolv.conf")) -> ResolvConf:
    """The host's resolver config; behind systemd-resolved's stub (127.0.0.53) the real upstream list."""
    try:
        rc = ResolvConf.parse(path.read_text())
    except OSError:
        return ResolvConf()
    if rc.nameservers and all(_is_loopback(ns) for ns in rc.nameservers) and SYSTEMD_RESOLVED.exists():
        try:
            return ResolvConf.parse(SYSTEMD_RESOLVED.read_text())
        except OSError:
            pass
    return rc


def host_upstreams(host: ResolvConf | None = None) -> list[str]:
    """IPv4 nameservers an embedded DNS server forwards to. It runs in the host namespace, so even a
    loopback resolver of the host is reachable from it (unlike from a container)."""
    rc = host or read_host_resolv_conf()
    out = []
    for ns in rc.nameservers:
        try:
            if ip_address(ns).version == 4:
                out.append(ns)
        except ValueError:
            continue
    return out


def resolv_conf(
    *,
    host: ResolvConf,
    embedded_dns: str | None = None,
    dns: list[str] | None = None,
    dns_search: list[str] | None = None,
    dns_options: list[str] | None = None,
) -> str:
    """The container's resolv.conf. embedded_dns is the network's DNS server address (user-defined
    networks); without it the container talks to the host's resolvers directly."""
    search = list(dns_search) if dns_search else list(host.search)
    options = list(dns_options) if dns_options else list(host.options)
    if embedded_dns is not None:
        # The user's --dns servers become the embedded server's upstreams (stored on the endpoint).
        if not any(o.startswith("ndots:") and o != "ndots:0" for o in options):
            options = [o for o in options if not o.startswith("ndots:")] + EMBEDDED_DNS_OPTIONS
        return ResolvConf([embedded_dns], search, options).render()
    if dns:
        servers = list(dns)
    else:
        servers = [ns for ns in host.nameservers if not _is_loopback(ns)] or list(FALLBACK_NAMESERVERS)
    return ResolvConf(servers, search, options).render()


def parse_add_host(spec: str, host_gateway: str | None = None) -> tuple[str, str]:
    """--add-host NAME:IP (or NAME=IP); IP may be the special `host-gateway`."""
    sep = "=" if "=" in spec else ":"
    name, _, ip = spec.partition(sep)
    if not name or not ip:
        raise InvalidArgument(f'invalid argument {spec!r} for "--add-host" flag: bad format for add-host')
    if ip == "host-gateway":
        if not host_gateway:
            raise InvalidArgument("unable to derive the IP value for host-gateway")
        ip = host_gateway
    ip = ip.strip("[]")
    try:
        ip_address(ip)
    except ValueError:
        raise InvalidArgument(f'invalid argument {spec!r} for "--add-host" flag: invalid IP address: {ip}')
    return name, ip


def hosts(
    *,
    hostname: str,
    domainname: str = "",
    address: str | None = None,
    extra_hosts: list[str] | None = None,
    host_gateway: str | None = None,
) -> str:
    """The container's /etc/hosts (bridge or none network; host networking copies the host's file)."""
    out = [LOCALHOST_BLOCK]
    for spec in extra_hosts or []:
        name, ip = parse_add_host(spec, host_gateway)
        out.append(f"{ip}\t{name}\n")
    if address:
        names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
        out.append(f"{address}\t{names}\n")
    return "".join(out)
