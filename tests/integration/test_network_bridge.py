"""Bridge networks end to end, without `pallet run`: namespaces stand in for containers, busybox
httpd serves inside one, and the others fetch from it by address and by name."""

from __future__ import annotations

import sqlite3
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import test_network_support as support
from dnslib import RCODE, DNSRecord
from test_network_support import (
    NetEnv,
    answers,
    can_connect_from,
    dns_query,
    wget,
)

from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.network import ipam, links, netns, nft
from pallet.network.bridge import BridgeDriver
from pallet.network.ports import PortRequest
from pallet.network.store import list_networks
from pallet.state import db

net_env = support.net_env  # fixture
pytestmark = support.pytestmark

CID_WEB = "a1" * 32
CID_CLIENT = "b2" * 32
CID_OTHER = "c3" * 32


def test_same_network_by_address_and_by_name(net_env: NetEnv, tmp_path: Path) -> None:
    drv = net_env.driver
    net = drv.create("front")
    assert net.ipam
    ns_web, ns_client = net_env.netns("web"), net_env.netns("client")
    web = drv.connect(net.id, CID_WEB, name="web", netns_path=ns_web, aliases=["site"])
    client = drv.connect(net.id, CID_CLIENT, name="client", netns_path=ns_client)
    assert web.ifname == client.ifname == "eth0"
    assert web.address.ip != client.address.ip
    assert web.address.network == net.ipam.subnet
    assert links.container_link_names(ns_web) == ["eth0", "lo"]
    assert links.has_default_route(ns_web)
    net_env.httpd(ns_web)

    assert wget(ns_client, f"http://{web.address.ip}/") == "hello from web\n"

    resolv = tmp_path / "resolv.conf"
    resolv.write_text(drv.resolv_conf(net.id))
    assert resolv.read_text() == f"nameserver {net.ipam.gateway}\noptions ndots:0\n"
    assert wget(ns_client, "http://web/", resolv_conf=resolv) == "hello from web\n"
    assert wget(ns_client, "http://site/", resolv_conf=resolv) == "hello from web\n"
    assert wget(ns_client, f"http://{CID_WEB[:12]}/", resolv_conf=resolv) == "hello from web\n"

    hosts = drv.hosts(CID_WEB, hostname=CID_WEB[:12], extra_hosts=["db:10.9.9.9"])
    assert hosts.endswith(f"10.9.9.9\tdb\n{web.address.ip}\t{CID_WEB[:12]}\n")


def test_embedded_dns_answers(net_env: NetEnv) -> None:
    drv = net_env.driver
    net = drv.create("dnsnet")
    other = drv.create("elsewhere")
    assert net.ipam and other.ipam
    gw = str(net.ipam.gateway)
    ns1, ns2, ns3 = net_env.netns("one"), net_env.netns("two"), net_env.netns("three")
    ep1 = drv.connect(net.id, CID_WEB, name="Web", netns_path=ns1, aliases=["svc", "web-alias"])
    ep2 = drv.connect(net.id, CID_CLIENT, name="worker", netns_path=ns2, aliases=["svc"])
    drv.connect(other.id, CID_OTHER, name="stranger", netns_path=ns3)
    ip1, ip2 = str(ep1.address.ip), str(ep2.address.ip)

    assert answers(dns_query(ns2, gw, "web")) == [ip1]  # names are case-insensitive
    assert answers(dns_query(ns2, gw, "WEB.dnsnet")) == [ip1]
    assert answers(dns_query(ns2, gw, CID_WEB[:12])) == [ip1]
    assert answers(dns_query(ns2, gw, "web-alias")) == [ip1]
    assert answers(dns_query(ns1, gw, "svc")) == sorted([ip1, ip2])  # a shared alias: every member
    assert answers(dns_query(ns1, gw, "worker")) == [ip2]

    tcp = netns.run_in(ns2, lambda: DNSRecord.question("svc").send(gw, 53, tcp=True, timeout=2))
    assert answers(DNSRecord.parse(tcp)) == sorted([ip1, ip2])  # DNS over TCP too
    aaaa = dns_query(ns2, gw, "web", "AAAA")
    assert aaaa.header.rcode == RCODE.NOERROR and not aaaa.rr
    ptr = dns_query(ns2, gw, IPv4Address(ip1).reverse_pointer, "PTR")
    assert [str(r.rdata) for r in ptr.rr] == ["Web.dnsnet."]
    assert dns_query(ns2, gw, "stranger").header.rcode == RCODE.NXDOMAIN  # other network's name
    assert dns_query(ns2, gw, "example.com").header.rcode == RCODE.NXDOMAIN  # no forwarding in tests
    # A container on another network is refused, though it can reach this gateway address.
    assert dns_query(ns3, gw, "web").header.rcode == RCODE.REFUSED

    # The server reads the database per query: a disconnect is visible at once.
    drv.disconnect(net.id, CID_CLIENT)
    assert answers(dns_query(ns1, gw, "svc")) == [ip1]
    assert dns_query(ns1, gw, "worker").header.rcode == RCODE.NXDOMAIN


def test_isolation_between_user_networks(net_env: NetEnv) -> None:
    drv = net_env.driver
    a, b = drv.create("net-a"), drv.create("net-b")
    assert a.ipam and b.ipam and not a.ipam.subnet.overlaps(b.ipam.subnet)
    ns_a, ns_a2, ns_b = net_env.netns("a"), net_env.netns("a2"), net_env.netns("b")
    web = drv.connect(a.id, CID_WEB, name="web", netns_path=ns_a)
    drv.connect(a.id, CID_OTHER, name="peer", netns_path=ns_a2)
    drv.connect(b.id, CID_CLIENT, name="client", netns_path=ns_b)
    net_env.httpd(ns_a)

    assert can_connect_from(ns_a2, str(web.address.ip), 80)
    assert not can_connect_from(ns_b, str(web.address.ip), 80)
    # The isolation is the nft rules, not missing routing: without them the host routes b -> a ...
    nft.delete_table(nft.network_table(a.id))
    nft.delete_table(nft.network_table(b.id))
    assert can_connect_from(ns_b, str(web.address.ip), 80)
    drv.restore(a.id)  # ... and restore() puts them back (as after a firewall reload)
    drv.restore(b.id)
    assert not can_connect_from(ns_b, str(web.address.ip), 80)
    # ... and a port published on b's gateway address reaches the container on a (DNAT is allowed).
    drv.publish(a.id, CID_WEB, [PortRequest(80, "tcp", str(b.ipam.gateway), 8081)])
    assert wget(ns_b, f"http://{b.ipam.gateway}:8081/") == "hello from web\n"
    assert not can_connect_from(ns_b, str(web.address.ip), 80)


def test_internal_network_has_no_way_out(net_env: NetEnv) -> None:
    drv = net_env.driver
    inner = drv.create("inner", internal=True)
    outer = drv.create("outer")
    ns1, ns2, ns3 = net_env.netns("i1"), net_env.netns("i2"), net_env.netns("o1")
    ep1 = drv.connect(inner.id, CID_WEB, name="web", netns_path=ns1)
    drv.connect(inner.id, CID_CLIENT, name="client", netns_path=ns2)
    ep3 = drv.connect(outer.id, CID_OTHER, name="outside", netns_path=ns3)
    assert not links.has_default_route(ns1)
    assert links.has_default_route(ns3)
    net_env.httpd(ns1)
    net_env.httpd(ns3)
    assert can_connect_from(ns2, str(ep1.address.ip), 80)  # same internal network: fine
    assert not can_connect_from(ns2, str(ep3.address.ip), 80)
    assert not can_connect_from(ns3, str(ep1.address.ip), 80)
    assert links.get_ipv4_conf(inner.bridge or "", "forwarding") == 0
    assert inner.ipam
    gw = str(inner.ipam.gateway)
    assert answers(dns_query(ns2, gw, "web")) == [str(ep1.address.ip)]  # names work inside
    assert dns_query(ns2, gw, "example.com").header.rcode == RCODE.NXDOMAIN  # never forwarded
    assert inner.to_docker()["Internal"] is True


def test_second_network_gets_eth1_and_keeps_one_default_route(net_env: NetEnv) -> None:
    drv = net_env.driver
    n1, n2 = drv.create("first"), drv.create("second")
    ns = net_env.netns("multi")
    e1 = drv.connect(n1.id, CID_WEB, name="multi", netns_path=ns)
    e2 = drv.connect(n2.id, CID_WEB, name="multi", netns_path=ns)
    assert (e1.ifname, e2.ifname) == ("eth0", "eth1")
    assert [r.id for r, _ in drv.container_endpoints(CID_WEB)] == [n1.id, n2.id]
    drv.disconnect(n1.id, CID_WEB)
    assert links.container_link_names(ns) == ["eth1", "lo"]
    assert links.has_default_route(ns)  # handed over to the remaining network, as docker does
    drv.disconnect_all(CID_WEB)
    assert links.container_link_names(ns) == ["lo"]


def test_ipam_static_range_reuse_and_errors(net_env: NetEnv) -> None:
    drv = net_env.driver
    net = drv.create("static", subnet="10.213.0.0/16", gateway="10.213.0.254", ip_range="10.213.5.0/24")
    assert net.to_docker()["IPAM"]["Config"] == [  # type: ignore[index]
        {"Subnet": "10.213.0.0/16", "Gateway": "10.213.0.254", "IPRange": "10.213.5.0/24"}
    ]
    nss = [net_env.netns(f"s{i}") for i in range(4)]
    e0 = drv.connect(net.id, "0" * 64, name="c0", netns_path=nss[0])
    e1 = drv.connect(net.id, "1" * 64, name="c1", netns_path=nss[1], ipv4="10.213.9.9")
    # Dynamic: lowest free in --ip-range; like docker, the range's own .0 is a valid host of the /16
    # (docker/for-linux#170).
    assert str(e0.address) == "10.213.5.0/16"
    assert str(e1.address) == "10.213.9.9/16"  # static: anywhere in the subnet, as docker allows
    with pytest.raises(Conflict, match="Address already in use"):
        drv.connect(net.id, "2" * 64, name="c2", netns_path=nss[2], ipv4="10.213.9.9")
    with pytest.raises(InvalidArgument, match="does not belong to any of this network's subnets"):
        drv.connect(net.id, "2" * 64, name="c2", netns_path=nss[2], ipv4="10.214.0.1")
    assert links.container_link_names(nss[2]) == ["lo"]  # failed attaches leave nothing behind
    drv.disconnect(net.id, "0" * 64)
    e2 = drv.connect(net.id, "2" * 64, name="c2", netns_path=nss[2])
    assert e2.address == e0.address  # released addresses are reused (lowest free first)
    e3 = drv.connect(net.id, "3" * 64, name="c3", netns_path=nss[3])
    assert str(e3.address.ip) == "10.213.5.1"
    owners = {addr: owner for _, addr, owner in ipam.addresses(drv.conn, net.id)}
    assert owners == {
        "10.213.0.254": "gateway",
        "10.213.5.0": e2.id,
        "10.213.9.9": e1.id,
        "10.213.5.1": e3.id,
    }

    auto = drv.create("auto")
    with pytest.raises(InvalidArgument, match="user configured subnets"):
        drv.connect(auto.id, "4" * 64, name="c4", netns_path=nss[0], ipv4="172.30.0.5")
    with pytest.raises(Conflict, match="Pool overlaps"):
        drv.create("overlap", subnet="10.213.128.0/17")
    with pytest.raises(InvalidArgument, match="no matching subnet for gateway"):
        drv.create("badgw", subnet="10.214.0.0/24", gateway="10.215.0.1")
    with pytest.raises(InvalidArgument, match="no matching subnet for range"):
        drv.create("badrange", subnet="10.214.0.0/24", ip_range="10.214.1.0/24")


def test_subnet_choice_avoids_host_and_pallet_networks(net_env: NetEnv) -> None:
    drv = net_env.driver
    with links.host_netlink() as ipr:
        host = links.host_ipv4_networks(ipr)
    nets = [drv.create(f"pick{i}") for i in range(3)]
    subnets = [n.ipam.subnet for n in nets if n.ipam]
    assert len(set(subnets)) == 3
    for s in subnets:
        assert not ipam.overlaps(s, [h for h in host if h.prefixlen > 0])
        assert s in ipam.default_pools()
    # A dummy route on the host makes the allocator skip that pool.
    nxt = ipam.pick_subnet([*subnets, *host])
    with links.host_netlink() as ipr:
        ipr.route("add", dst=str(nxt.subnet), type="blackhole")
        try:
            n4 = drv.create("pick3")
        finally:
            ipr.route("del", dst=str(nxt.subnet), type="blackhole")
    assert n4.ipam and n4.ipam.subnet != nxt.subnet
    assert isinstance(n4.ipam.subnet, IPv4Network)


def test_records_and_errors(net_env: NetEnv) -> None:
    drv = net_env.driver
    drv.ensure_predefined()
    names = {n.name: n.driver for n in drv.networks()}
    assert names == {"bridge": "bridge", "host": "host", "none": "null"}
    net = drv.create("shape", labels={"a": "b"}, attachable=True)
    doc = drv.inspect(net.id[:6])
    assert list(doc) == [
        "Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal", "Attachable",
        "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options", "Labels",
    ]  # fmt: skip
    assert (doc["Scope"], doc["Driver"], doc["Labels"], doc["Attachable"]) == (
        "local",
        "bridge",
        {"a": "b"},
        True,
    )
    with pytest.raises(Conflict, match="network with name shape already exists"):
        drv.create("shape")
    with pytest.raises(NotFound, match="network nope not found"):
        drv.get("nope")
    with pytest.raises(PalletError, match="bridge is a pre-defined network and cannot be removed"):
        drv.remove("bridge")
    with pytest.raises(Conflict, match="network with name host already exists"):
        drv.create("host")
    # A bridge name that is already another kind of interface: refused, and that interface survives.
    with pytest.raises(PalletError, match="already exists and is not a bridge"):
        drv.create("hijack", options={"com.docker.network.bridge.name": "lo"})
    with links.host_netlink() as ipr:
        assert links.link_exists(ipr, "lo")
    assert drv.conn.execute("SELECT count(*) FROM networks WHERE name = 'hijack'").fetchone()[0] == 0
    ns = net_env.netns("busy")
    with pytest.raises(InvalidArgument, match="invalid MAC address"):
        drv.connect("shape", CID_WEB, name="busy", netns_path=ns, mac="02:42:zz:00:00:01")
    ep = drv.connect("shape", CID_WEB, name="busy", netns_path=ns, mac="02:AA:BB:CC:DD:EE")
    assert ep.mac == "02:aa:bb:cc:dd:ee"
    with pytest.raises(Conflict, match="has active endpoints"):
        drv.remove("shape")
    with pytest.raises(Conflict, match="already exists in network"):
        drv.connect("shape", CID_WEB, name="busy", netns_path=ns)
    doc = drv.inspect("shape")
    assert doc["Containers"][CID_WEB]["Name"] == "busy"  # type: ignore[index]
    drv.disconnect("shape", CID_WEB)
    with pytest.raises(NotFound, match="is not connected to network shape"):
        drv.disconnect("shape", CID_WEB)
    drv.remove("shape")
    assert nft.network_table(net.id) not in nft.table_names()
    with links.host_netlink() as ipr:
        assert not links.link_exists(ipr, net.bridge or "")
    assert "shape" not in [n.name for n in list_networks(drv.conn)]


def test_default_bridge_has_no_embedded_dns(net_env: NetEnv) -> None:
    drv = net_env.driver
    drv.ensure_predefined()
    ns = net_env.netns("plain")
    ep = drv.connect("bridge", CID_WEB, name="plain", netns_path=ns)
    rec = drv.get("bridge")
    assert rec.ipam and ep.address.ip in rec.ipam.subnet
    assert "nameserver " + str(rec.ipam.gateway) not in drv.resolv_conf("bridge")
    assert not list((net_env.paths.runroot / "networks" / rec.id).glob("dns.pid"))
    drv.disconnect("bridge", CID_WEB)
    # The default bridge stays (docker keeps docker0); take it down for this test root.
    with links.host_netlink() as ipr:
        assert links.delete_bridge(ipr, rec.bridge or "")
    nft.delete_table(nft.network_table(rec.id))


def test_rebuild_after_host_state_is_lost(net_env: NetEnv) -> None:
    """As after a reboot: bridge, rules and DNS process gone; the next attach brings them back."""
    drv = net_env.driver
    net = drv.create("phoenix")
    assert net.bridge and net.ipam
    from pallet.network import daemon

    daemon.stop(net_env.paths.runroot / "networks" / net.id / "dns.pid")
    nft.delete_table(nft.network_table(net.id))
    with links.host_netlink() as ipr:
        links.delete_link(ipr, net.bridge)
    ns1, ns2 = net_env.netns("p1"), net_env.netns("p2")
    e1 = drv.connect(net.id, CID_WEB, name="risen", netns_path=ns1)
    drv.connect(net.id, CID_CLIENT, name="other", netns_path=ns2)
    assert nft.network_table(net.id) in nft.table_names()
    assert answers(dns_query(ns2, str(net.ipam.gateway), "risen")) == [str(e1.address.ip)]


def test_connect_rejects_a_path_that_is_not_a_netns(net_env: NetEnv, tmp_path: Path) -> None:
    drv = net_env.driver
    net = drv.create("strict")
    bogus = tmp_path / "not-a-netns"
    bogus.write_text("")
    with pytest.raises(InvalidArgument, match="is not a network namespace"):
        drv.connect(net.id, CID_WEB, name="x", netns_path=bogus)
    assert ipam.addresses(drv.conn, net.id) == [
        (net.id, str(net.ipam.gateway if net.ipam else ""), "gateway")
    ]
    assert netns.is_netns(Path("/proc/self/ns/net"))
    assert isinstance(drv.conn, sqlite3.Connection)


def test_dns_sees_commits_after_every_writer_closed(net_env: NetEnv) -> None:
    """pallet is daemonless: each command opens and closes the database. The DNS server must still see
    later commits (a connection carried across its fork held no locks, so the closing writer deleted
    the WAL under it and it read a stale database forever)."""
    drv = net_env.driver
    net = drv.create("daemonless")
    assert net.ipam
    ns1, ns2 = net_env.netns("d1"), net_env.netns("d2")
    e1 = drv.connect(net.id, CID_WEB, name="first", netns_path=ns1)
    drv.conn.close()  # the last writer goes away
    net_env.driver = BridgeDriver(net_env.paths, db.connect(net_env.paths.db), drv.settings)
    e2 = net_env.driver.connect(net.id, CID_CLIENT, name="second", netns_path=ns2)
    gw = str(net.ipam.gateway)
    assert answers(dns_query(ns1, gw, "second")) == [str(e2.address.ip)]
    assert answers(dns_query(ns2, gw, "first")) == [str(e1.address.ip)]
