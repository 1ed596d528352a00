"""Published ports: reachable from the host on 127.0.0.1 (userland proxy, or route_localnet + DNAT),
from other namespaces through a host address (DNAT), held while published and free afterwards."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import test_network_support as support
from test_network_support import (
    NetEnv,
    can_connect_from,
    eventually,
    free_port,
    helper_pids,
    wget,
)

from pallet.errors import Conflict
from pallet.network import ipam, links, netns, nft
from pallet.network.ports import PortRequest, ephemeral_range, parse_publish

nat_env = support.nat_env  # fixture
net_env = support.net_env  # fixture
pytestmark = support.pytestmark

CID_WEB = "d4" * 32
CID_WEB2 = "e5" * 32
CID_CLIENT = "f6" * 32


def _web(env: NetEnv, name: str = "pub") -> tuple[str, str]:
    """A network with one web server container; returns (network id, container address)."""
    net = env.driver.create(name)
    ns = env.netns("web")
    ep = env.driver.connect(net.id, CID_WEB, name="web", netns_path=ns)
    env.httpd(ns)
    return net.id, str(ep.address.ip)


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as any server would
            s.bind((host, port))
        return True
    except OSError:
        return False


def test_loopback_port_through_userland_proxy(net_env: NetEnv) -> None:
    drv = net_env.driver
    net_id, _ = _web(net_env)
    port = free_port()
    (b,) = drv.publish(net_id, CID_WEB, parse_publish(f"127.0.0.1:{port}:80"))
    assert (b.host_ip, b.host_port, b.container_port) == ("127.0.0.1", port, 80)
    assert wget(None, f"http://127.0.0.1:{port}/") == "hello from web\n"
    assert not _port_is_free(port)  # the proxy holds it against other programs
    assert len(helper_pids(net_env.paths.root)) == 2  # the network's DNS server + this proxy
    assert nft.endpoint_table(drv.endpoints(net_id)[0].id) in nft.table_names()

    drv.unpublish(net_id, CID_WEB)
    assert _port_is_free(port)
    assert not can_connect_from(None, "127.0.0.1", port)
    assert len(helper_pids(net_env.paths.root)) == 1
    assert not [t for t in nft.table_names() if t.startswith("pallet_ep_")]
    assert drv.conn.execute("SELECT count(*) FROM network_ports").fetchone()[0] == 0


def test_loopback_port_through_nat(nat_env: NetEnv) -> None:
    drv = nat_env.driver
    net_id, _ = _web(nat_env)
    port = free_port()
    drv.publish(net_id, CID_WEB, parse_publish(f"127.0.0.1:{port}:80"))
    bridge = drv.get(net_id).bridge or ""
    assert links.get_ipv4_conf(bridge, "route_localnet") == 1
    assert len(helper_pids(nat_env.paths.root)) == 1  # only the DNS server: no proxy process
    assert wget(None, f"http://127.0.0.1:{port}/") == "hello from web\n"
    drv.unpublish(net_id, CID_WEB)
    assert not can_connect_from(None, "127.0.0.1", port)


def test_port_conflicts(net_env: NetEnv) -> None:
    drv = net_env.driver
    net_id, _ = _web(net_env)
    ns2 = net_env.netns("web2")
    drv.connect(net_id, CID_WEB2, name="web2", netns_path=ns2)
    port = free_port()
    drv.publish(net_id, CID_WEB, parse_publish(f"127.0.0.1:{port}:80"))
    with pytest.raises(Conflict, match=f"Bind for 127.0.0.1:{port} failed: port is already allocated"):
        drv.publish(net_id, CID_WEB2, parse_publish(f"127.0.0.1:{port}:80"))
    with pytest.raises(Conflict, match=f"Bind for 0.0.0.0:{port} failed: port is already allocated"):
        drv.publish(net_id, CID_WEB2, parse_publish(f"{port}:80"))
    # A port some other program holds: docker-proxy's message, and nothing is left recorded.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        busy = other.getsockname()[1]
        with pytest.raises(Conflict, match=f"listen tcp4 127.0.0.1:{busy}: bind: address already in use"):
            drv.publish(net_id, CID_WEB2, parse_publish(f"127.0.0.1:{busy}:80"))
    ep2 = drv.endpoints(net_id)[1]
    assert nft.endpoint_table(ep2.id) not in nft.table_names()
    assert drv.port_bindings(CID_WEB2) == []
    # Once the first container lets go, the port can be published by another.
    drv.unpublish(net_id, CID_WEB)
    drv.publish(net_id, CID_WEB2, parse_publish(f"127.0.0.1:{port}:80"))


def test_dynamic_host_ports(net_env: NetEnv) -> None:
    drv = net_env.driver
    net_id, _ = _web(net_env)
    got = drv.publish(
        net_id, CID_WEB, [PortRequest(80, "tcp", "127.0.0.1"), PortRequest(80, "udp", "127.0.0.1")]
    )
    lo, hi = ephemeral_range()
    assert all(lo <= b.host_port <= hi for b in got)
    assert wget(None, f"http://127.0.0.1:{got[0].host_port}/") == "hello from web\n"
    assert drv.port_bindings(CID_WEB) == sorted(got, key=lambda b: (b.container_port, b.proto))


@pytest.mark.parametrize("mode", ["net_env", "nat_env"])
def test_dnat_from_other_containers_and_hairpin(mode: str, request: pytest.FixtureRequest) -> None:
    """Ports published on a host address are reachable from namespaces: from another network (DNAT),
    from the same network and from the publishing container itself (hairpin): through the proxy in
    proxy mode, by DNAT + the port's hairpin mode in nat mode."""
    net_env: NetEnv = request.getfixturevalue(mode)
    drv = net_env.driver
    net_id, _ = _web(net_env, "pubnet")
    other = drv.create("visitors")
    ns_v, ns_same = net_env.netns("visitor"), net_env.netns("same")
    drv.connect(other.id, CID_CLIENT, name="visitor", netns_path=ns_v)
    drv.connect(net_id, CID_WEB2, name="neighbour", netns_path=ns_same)
    gw_other = str(other.ipam.gateway if other.ipam else "")
    gw_own = str(drv.get(net_id).ipam.gateway)  # type: ignore[union-attr]
    p1, p2 = free_port(), free_port()
    drv.publish(net_id, CID_WEB, [PortRequest(80, "tcp", gw_other, p1), PortRequest(80, "tcp", gw_own, p2)])
    assert wget(ns_v, f"http://{gw_other}:{p1}/") == "hello from web\n"
    assert wget(ns_same, f"http://{gw_own}:{p2}/") == "hello from web\n"
    ns_web = netns.netns_path(net_env.paths.runroot, "web")
    assert wget(ns_web, f"http://{gw_own}:{p2}/") == "hello from web\n"  # hairpin
    assert wget(None, f"http://{gw_own}:{p2}/") == "hello from web\n"  # the host, by DNAT in output


def _udp_echo(ns: Path, port: int) -> socket.socket:
    sock = netns.run_in(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sock.bind(("0.0.0.0", port))

    def serve() -> None:
        while True:
            try:
                data, addr = sock.recvfrom(2048)
            except OSError:
                return
            sock.sendto(b"echo:" + data, addr)

    threading.Thread(target=serve, daemon=True).start()
    return sock


def _udp_ask(ns: Path | None, host: str, port: int) -> bytes | None:
    def ask() -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(b"ping", (host, port))
            try:
                return s.recvfrom(2048)[0]
            except OSError:
                return None

    return ask() if ns is None else netns.run_in(ns, ask)


def test_udp_ports(net_env: NetEnv) -> None:
    drv = net_env.driver
    net = drv.create("udpnet")
    visitors = drv.create("udpvisitors")
    ns, ns_v = net_env.netns("udp"), net_env.netns("udpv")
    drv.connect(net.id, CID_WEB, name="echo", netns_path=ns)
    drv.connect(visitors.id, CID_CLIENT, name="v", netns_path=ns_v)
    echo = _udp_echo(ns, 5353)
    try:
        gw_v = str(visitors.ipam.gateway if visitors.ipam else "")
        p1, p2 = free_port(), free_port()
        drv.publish(
            net.id, CID_WEB, [PortRequest(5353, "udp", "127.0.0.1", p1), PortRequest(5353, "udp", gw_v, p2)]
        )
        assert _udp_ask(None, "127.0.0.1", p1) == b"echo:ping"  # via the proxy
        assert _udp_ask(ns_v, gw_v, p2) == b"echo:ping"  # via DNAT
    finally:
        echo.close()


def test_free_after_network_removal(net_env: NetEnv) -> None:
    drv = net_env.driver
    net_id, _ = _web(net_env, "gone")
    port = free_port()
    drv.publish(net_id, CID_WEB, parse_publish(f"127.0.0.1:{port}:80"))
    drv.disconnect(net_id, CID_WEB)  # disconnect takes the ports with it
    drv.remove(net_id)
    assert _port_is_free(port)
    assert eventually(lambda: helper_pids(net_env.paths.root) == [])
    assert not [t for t in nft.table_names() if t.startswith("pallet_") and net_id[:12] in t]
    assert ipam.addresses(drv.conn) == []
