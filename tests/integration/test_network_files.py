"""The pure parts of the network subsystem: hosts/resolv.conf contents, -p parsing, subnet choice and
rule rendering. No root needed."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from pallet.errors import Conflict, InvalidArgument
from pallet.network import hostfiles, ipam, nft
from pallet.network.hostfiles import ResolvConf
from pallet.network.ports import PortRequest, parse_publish

HOST = ResolvConf.parse(
    "# generated\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nsearch corp.example lab.example\n"
    "options edns0 trust-ad\n"
)


def test_resolv_conf_on_a_user_network() -> None:
    out = hostfiles.resolv_conf(host=HOST, embedded_dns="172.18.0.1")
    assert out == ("search corp.example lab.example\nnameserver 172.18.0.1\noptions edns0 trust-ad ndots:0\n")
    # --dns goes to the embedded server (as its upstream), not into the file.
    out = hostfiles.resolv_conf(
        host=HOST,
        embedded_dns="172.18.0.1",
        dns=["9.9.9.9"],
        dns_search=["x.example"],
        dns_options=["ndots:3"],
    )
    assert out == "search x.example\nnameserver 172.18.0.1\noptions ndots:3\n"


def test_resolv_conf_on_the_default_bridge() -> None:
    # Loopback resolvers are unreachable from a container: filtered out.
    out = hostfiles.resolv_conf(host=HOST)
    assert out == "search corp.example lab.example\nnameserver 10.255.255.53\noptions edns0 trust-ad\n"
    only_local = ResolvConf(["127.0.0.53"])
    assert hostfiles.resolv_conf(host=only_local) == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    out = hostfiles.resolv_conf(host=HOST, dns=["1.1.1.1"], dns_search=["."], dns_options=["rotate"])
    assert out == "nameserver 1.1.1.1\noptions rotate\n"


def test_host_upstreams_keep_loopback_resolvers() -> None:
    # The embedded server runs in the host namespace, where 127.0.0.53 is reachable.
    assert hostfiles.host_upstreams(HOST) == ["127.0.0.53", "10.255.255.53"]


def test_hosts_file() -> None:
    out = hostfiles.hosts(
        hostname="abc123",
        domainname="example.org",
        address="172.18.0.2",
        extra_hosts=["db:10.0.0.5", "gw=host-gateway", "v6:[::1]"],
        host_gateway="172.17.0.1",
    )
    assert out == hostfiles.LOCALHOST_BLOCK + (
        "10.0.0.5\tdb\n172.17.0.1\tgw\n::1\tv6\n172.18.0.2\tabc123.example.org abc123\n"
    )
    assert hostfiles.hosts(hostname="x") == hostfiles.LOCALHOST_BLOCK
    with pytest.raises(InvalidArgument, match="bad format for add-host"):
        hostfiles.hosts(hostname="x", extra_hosts=["nohost"])
    with pytest.raises(InvalidArgument, match="invalid IP address"):
        hostfiles.hosts(hostname="x", extra_hosts=["a:not-an-ip"])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [PortRequest(80)]),
        ("8080:80", [PortRequest(80, host_port=8080)]),
        ("127.0.0.1:8080:80", [PortRequest(80, host_ip="127.0.0.1", host_port=8080)]),
        ("127.0.0.1::80/udp", [PortRequest(80, "udp", "127.0.0.1")]),
        ("8000-8001:80-81", [PortRequest(80, host_port=8000), PortRequest(81, host_port=8001)]),
        ("8000-8010:80", [PortRequest(80, host_port=8000, host_port_end=8010)]),
        ("53-54/udp", [PortRequest(53, "udp"), PortRequest(54, "udp")]),
    ],
)
def test_parse_publish(spec: str, expected: list[PortRequest]) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec", ["80/sctpx", "70000", "a:80", "1.2.3:80:80", "8000-8002:80-81", ""])
def test_parse_publish_rejects(spec: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_publish(spec)


def test_ipam_user_config_and_pools() -> None:
    cfg = ipam.config_from_user("10.1.2.3/24", None, None, [])
    assert cfg == ipam.IpamConfig(IPv4Network("10.1.2.0/24"), IPv4Address("10.1.2.1"))
    assert ipam.config_from_user(None, None, None, []) is None
    with pytest.raises(InvalidArgument, match="corresponding subnet"):
        ipam.config_from_user(None, "10.0.0.1", None, [])
    with pytest.raises(Conflict, match="Pool overlaps"):
        ipam.config_from_user("10.1.0.0/16", None, None, [IPv4Network("10.1.2.0/24")])
    pools = ipam.default_pools()
    assert pools[0] == IPv4Network("172.17.0.0/16") and pools[-1] == IPv4Network("192.168.240.0/20")
    taken = [IPv4Network("172.16.0.0/12")]
    assert ipam.pick_subnet(taken).subnet == IPv4Network("192.168.0.0/20")


def test_rules_render() -> None:
    rules = nft.network_rules("br-x", IPv4Network("172.18.0.0/16"), internal=False, masquerade=True)
    assert 'ip saddr 172.18.0.0/16 oifname != "br-x" masquerade' in rules
    assert 'iifname "br-x" oifgroup 28780 oifname != "br-x" ct status & dnat == 0 drop' in rules
    internal = nft.network_rules("br-x", IPv4Network("172.18.0.0/16"), internal=True, masquerade=True)
    assert 'oifname != "br-x" masquerade' not in internal
    assert 'oifname "br-x" iifname != "br-x" drop' in internal
    dnat = nft.dnat_rules(
        [("tcp", "127.0.0.1", 8080, "172.18.0.2", 80)], bridge="br-x", loopback_by_nat=False
    )
    assert "dnat" not in dnat  # loopback is the proxy's
    dnat = nft.dnat_rules([("tcp", "0.0.0.0", 8080, "172.18.0.2", 80)], bridge="br-x", loopback_by_nat=False)
    assert 'iifname != "br-x" fib daddr type local tcp dport 8080 dnat to 172.18.0.2:80' in dnat
    assert "fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 dnat to 172.18.0.2:80" in dnat
