"""Links, addresses and routes over rtnetlink (pyroute2): bridges on the host, veth pairs into a
container's namespace, loopback, per-interface sysctls, and the host's own networks.

pyroute2 is imported lazily and narrowly (see `_iproute`): its package __init__ re-exports every
socket class it has and costs ~85 ms; IPRoute alone costs ~50 ms, and only commands that wire networks
need it. Deleting a link (every container exit) needs no pyroute2 at all: `delete_link_by_name`.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from pallet.errors import PalletError
from pallet.network import netns

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

    from pyroute2 import IPRoute

# Every pallet bridge carries this interface group, so one nft rule per network can tell "another
# pallet network" apart from the uplink without knowing the other bridges' names.
PALLET_DEVGROUP = 0x706C  # "pl"
IFNAMSIZ = 15


class LinkError(PalletError):
    pass


def _iproute() -> type[IPRoute]:
    """pyroute2's IPRoute without the package's __init__ (which imports every netlink family pyroute2
    knows: conntrack, ipvs, nl80211, ndb, ...). A stand-in package module with the real __path__ lets
    `pyroute2.iproute.linux` load by itself; the first access to a top-level name of `pyroute2`
    (someone's `from pyroute2 import X`) runs the real __init__ into it, so nothing else notices.
    Measured here: 88 ms for `import pyroute2`, 52 ms this way."""
    if "pyroute2" not in sys.modules:
        import importlib
        import importlib.util

        spec = importlib.util.find_spec("pyroute2")
        if spec is not None and spec.loader is not None and spec.submodule_search_locations:
            stub = importlib.util.module_from_spec(spec)
            loader = spec.loader

            def load_all(name: str) -> object:
                if importlib.util.find_spec(f"pyroute2.{name}") is not None:
                    return importlib.import_module(f"pyroute2.{name}")  # `from pyroute2 import config`
                del stub.__dict__["__getattr__"]
                loader.exec_module(stub)
                return getattr(stub, name)

            stub.__dict__["__getattr__"] = load_all
            sys.modules["pyroute2"] = stub
    from pyroute2.iproute.linux import IPRoute

    return IPRoute


@contextmanager
def host_netlink() -> Iterator[IPRoute]:
    ipr = _iproute()()
    try:
        yield ipr
    finally:
        ipr.close()


@contextmanager
def netns_netlink(path: Path) -> Iterator[IPRoute]:
    """An rtnetlink socket that lives in the namespace at path. The socket is created on a thread
    that joined the namespace (a netlink socket belongs to its creator's namespace for life), which
    is ~10x cheaper than pyroute2's own fork-based netns support."""
    iproute = _iproute()
    sock = netns.run_in(path, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0))
    ipr = iproute(fileno=sock.detach())
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def link_exists(ipr: IPRoute, name: str) -> bool:
    return _index(ipr, name) is not None


def link_names(ipr: IPRoute) -> list[str]:
    return sorted(str(link.get("ifname")) for link in ipr.get_links())


def delete_link(ipr: IPRoute, name: str) -> bool:
    """Delete a link by name; False when it was already gone."""
    from pyroute2.netlink.exceptions import NetlinkError

    idx = _index(ipr, name)
    if idx is None:
        return False
    try:
        ipr.link("del", index=idx)
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return False
        raise
    return True


_RTM_DELLINK = 17
_NLM_F_REQUEST_ACK = 0x1 | 0x4
_NLMSG_ERROR = 2
_IFLA_IFNAME = 3


def delete_link_by_name(name: str) -> bool:
    """RTM_DELLINK by interface name over a plain rtnetlink socket; False when it was already gone.
    The exit path of every container deletes its veth ends: this costs well under a millisecond,
    where importing pyroute2 for it would cost ~50 ms (in `run --rm`'s critical path)."""
    ifname = name.encode() + b"\0"
    attr_len = 4 + len(ifname)
    attr = struct.pack("=HH", attr_len, _IFLA_IFNAME) + ifname + b"\0" * (-attr_len % 4)
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0) + attr  # struct ifinfomsg
    msg = struct.pack("=IHHII", 16 + len(body), _RTM_DELLINK, _NLM_F_REQUEST_ACK, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0) as s:
        s.sendto(msg, (0, 0))
        reply = s.recv(65536)
    _length, kind = struct.unpack_from("=IH", reply)
    if kind != _NLMSG_ERROR:
        return True
    code = -struct.unpack_from("=i", reply, 16)[0]  # struct nlmsgerr: error, then the request
    if code == 0:
        return True
    if code == errno.ENODEV:
        return False
    raise LinkError(f"deleting link {name}: {os.strerror(code)}")


def delete_bridge(ipr: IPRoute, name: str) -> bool:
    """Delete a bridge pallet made (kind bridge, pallet's interface group) and nothing else: a name
    from an option may belong to an interface pallet must never touch."""
    idx = _index(ipr, name)
    if idx is None:
        return False
    link = ipr.get_links(idx)[0]
    if link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) != "bridge" or link.get("IFLA_GROUP") != PALLET_DEVGROUP:
        return False
    return delete_link(ipr, name)


def ensure_bridge(ipr: IPRoute, name: str, gateway: IPv4Interface, *, mac: str, mtu: int) -> None:
    """Create the bridge (or repair one left half-made), give it the gateway address and bring it up.

    The MAC is set explicitly: a bridge with a kernel-chosen MAC takes the lowest MAC among its ports,
    so its address would change as containers come and go (and ARP caches would go stale)."""
    from pyroute2.netlink.exceptions import NetlinkError

    if len(name) > IFNAMSIZ:
        raise LinkError(f"bridge name {name!r} is longer than {IFNAMSIZ} characters")
    idx = _index(ipr, name)
    if idx is None:
        ipr.link("add", ifname=name, kind="bridge", address=mac, mtu=mtu, group=PALLET_DEVGROUP)
        idx = _index(ipr, name)
        if idx is None:
            raise LinkError(f"bridge {name} vanished right after creation")
    else:
        link = ipr.get_links(idx)[0]
        kind = link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
        if kind != "bridge":
            raise LinkError(f"interface {name} already exists and is not a bridge")
    have = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=socket.AF_INET)}
    if (str(gateway.ip), gateway.network.prefixlen) not in have:
        try:
            ipr.addr("add", index=idx, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
    ipr.link("set", index=idx, state="up")


def set_ipv4_conf(ifname: str, key: str, value: int) -> None:
    """net.ipv4.conf.<ifname>.<key> for one interface only (never the host-wide `all`)."""
    path = f"/proc/sys/net/ipv4/conf/{ifname}/{key}"
    with open(path, "w") as f:
        f.write(f"{value}\n")


def set_hairpin(port: str) -> None:
    """Let the bridge send a frame back out of the port it came in on (for this port only)."""
    with open(f"/sys/class/net/{port}/brport/hairpin_mode", "w") as f:
        f.write("1\n")


def get_ipv4_conf(ifname: str, key: str) -> int:
    with open(f"/proc/sys/net/ipv4/conf/{ifname}/{key}") as f:
        return int(f.read().strip())


def add_veth(
    ipr: IPRoute, *, host_name: str, bridge: str, netns_path: Path, ifname: str, mac: str, mtu: int
) -> None:
    """A veth pair whose container end is created directly inside the namespace with its final name
    (no rename dance, nothing ever named eth0 on the host) and whose host end joins the bridge."""
    br = _index(ipr, bridge)
    if br is None:
        raise LinkError(f"bridge {bridge} does not exist")
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        ipr.link(
            "add",
            ifname=host_name,
            kind="veth",
            mtu=mtu,
            peer={"ifname": ifname, "net_ns_fd": fd, "address": mac, "mtu": mtu},
        )
    finally:
        os.close(fd)
    try:
        ipr.link("set", ifname=host_name, master=br, state="up")
    except BaseException:
        delete_link(ipr, host_name)
        raise


def configure_container_side(
    netns_path: Path, ifname: str, address: IPv4Interface, gateway: IPv4Address | None
) -> bool:
    """Inside the namespace: lo up, the address on ifname, ifname up, and a default route via the
    gateway unless the namespace already has one (the first network with a gateway provides it, as
    in docker). gateway None: no route out (--internal). Returns whether the default route was added."""
    with netns_netlink(netns_path) as ipr:
        _up(ipr, "lo")
        idx = _index(ipr, ifname)
        if idx is None:
            raise LinkError(f"{ifname} is missing inside {netns_path}")
        # IPv4-only networks: no IPv6 on the interface (no link-local address, router solicitations or
        # MLD reports on the bridge), as docker does for a network without IPv6.
        netns.run_in(netns_path, lambda: _disable_ipv6_here(ifname))
        ipr.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
        ipr.link("set", index=idx, state="up")
        if gateway is None or _has_default_route(ipr):
            return False
        ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=idx)
        return True


def _disable_ipv6_here(ifname: str) -> None:
    """net.ipv6.conf.<ifname>.disable_ipv6=1 in the calling thread's namespace (/proc/sys/net is the
    opener's namespace); nothing to do on a host without IPv6."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
            f.write("1\n")
    except FileNotFoundError:
        pass


def ensure_default_route(netns_path: Path, ifname: str, gateway: IPv4Address) -> bool:
    """Add a default route via gateway on ifname unless the namespace has one; True if added."""
    with netns_netlink(netns_path) as ipr:
        idx = _index(ipr, ifname)
        if idx is None or _has_default_route(ipr):
            return False
        ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=idx)
        return True


def _has_default_route(ipr: IPRoute) -> bool:
    return any(r.get("dst_len") == 0 for r in ipr.get_routes(family=socket.AF_INET, table=254))


def next_ifname(netns_path: Path, prefix: str = "eth") -> str:
    """The first ethN not yet present in the namespace: eth0 for the first network, then eth1, ..."""
    with netns_netlink(netns_path) as ipr:
        names = set(link_names(ipr))
    n = 0
    while f"{prefix}{n}" in names:
        n += 1
    return f"{prefix}{n}"


def _up(ipr: IPRoute, name: str) -> None:
    idx = _index(ipr, name)
    if idx is not None:
        ipr.link("set", index=idx, state="up")


def loopback_up(netns_path: Path) -> None:
    """lo up inside the namespace at netns_path (docker's `none` network: loopback only, but up)."""
    netns.run_in(netns_path, loopback_up_here)


def loopback_up_here() -> None:
    """lo up in the calling thread's network namespace, by ioctl: no netlink library needed."""
    import fcntl

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), siocgifflags, req))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def has_default_route(netns_path: Path) -> bool:
    with netns_netlink(netns_path) as ipr:
        return _has_default_route(ipr)


def container_link_names(netns_path: Path) -> list[str]:
    with netns_netlink(netns_path) as ipr:
        return link_names(ipr)


def host_ipv4_networks(ipr: IPRoute) -> list[IPv4Network]:
    """Every IPv4 network the host already uses: its addresses' networks and its routes' destinations
    in every table (the default route excepted), so a new subnet never shadows or duplicates them."""
    nets: set[IPv4Network] = set()
    for a in ipr.get_addr(family=socket.AF_INET):
        nets.add(IPv4Network(f"{a.get('address')}/{a['prefixlen']}", strict=False))
    for r in _routes_all_tables(ipr):
        dst_len = r.get("dst_len", 0)
        dst = r.get("dst")
        if dst_len == 0 or dst is None:
            continue
        nets.add(IPv4Network(f"{dst}/{dst_len}", strict=False))
    return sorted(nets)


def _routes_all_tables(ipr: IPRoute) -> list[Any]:
    # table=0 would be "main" to some kernels' filters; RT_TABLE_UNSPEC with a dump returns every table.
    return list(ipr.get_routes(family=socket.AF_INET, table=None))
