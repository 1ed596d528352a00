"""The networking and storage flags of run/create turned into the ContainerCreate body, as docker's CLI."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pallet.cli.run_flags import create_body, create_parser
from pallet.errors import InvalidArgument


def body(*flags: str) -> dict[str, Any]:
    ns = create_parser("pallet run", "").parse([*flags, "busybox"])
    return create_body(ns)


def test_defaults() -> None:
    b = body()
    hc = b["HostConfig"]
    assert hc["NetworkMode"] == "default" and "NetworkingConfig" not in b
    assert hc["PortBindings"] == {} and hc["PublishAllPorts"] is False
    assert hc["Binds"] is None and hc["Mounts"] is None and hc["VolumesFrom"] is None
    assert hc["Dns"] == [] and hc["DnsSearch"] == [] and hc["DnsOptions"] == []


def test_networks_and_endpoint_options() -> None:
    b = body(
        "--network",
        "front",
        "--network",
        "back",
        "--ip",
        "10.0.0.5",
        "--network-alias",
        "web",
        "--mac-address",
        "02:42:0a:00:00:05",
    )
    assert b["HostConfig"]["NetworkMode"] == "front"
    assert b["NetworkingConfig"]["EndpointsConfig"] == {
        "front": {
            "IPAMConfig": {"IPv4Address": "10.0.0.5"},
            "Aliases": ["web"],
            "MacAddress": "02:42:0a:00:00:05",
        },
        "back": {},
    }
    b = body("--network", "name=front,alias=a,alias=b,ip=10.0.0.6")
    assert b["NetworkingConfig"]["EndpointsConfig"]["front"] == {
        "IPAMConfig": {"IPv4Address": "10.0.0.6"},
        "Aliases": ["a", "b"],
    }
    with pytest.raises(InvalidArgument, match="cannot attach both user-defined and non-user-defined"):
        body("--network", "host", "--network", "front")
    with pytest.raises(InvalidArgument, match="invalid IPv4 address"):
        body("--ip", "10.0.0")


def test_ports() -> None:
    b = body(
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1::53/udp",
        "-p",
        "9000-9001:90-91",
        "-p",
        "7000-7010:70",
        "--expose",
        "443",
        "--expose",
        "5000-5001/udp",
        "-P",
    )
    assert b["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
        "90/tcp": [{"HostIp": "", "HostPort": "9000"}],
        "91/tcp": [{"HostIp": "", "HostPort": "9001"}],
        "70/tcp": [{"HostIp": "", "HostPort": "7000-7010"}],
    }
    assert set(b["ExposedPorts"]) == {
        "80/tcp",
        "53/udp",
        "90/tcp",
        "91/tcp",
        "70/tcp",
        "443/tcp",
        "5000/udp",
        "5001/udp",
    }
    assert b["HostConfig"]["PublishAllPorts"] is True
    for bad in ("80:80/icmp", "1.2.3:80:80", "70000:80", "8000-8002:80-81"):
        with pytest.raises(InvalidArgument):
            body("-p", bad)


def test_volumes_and_mounts() -> None:
    b = body(
        "-v",
        "/anon",
        "-v",
        "named:/data:ro",
        "-v",
        "/host:/ctr:rw,rshared",
        "--volumes-from",
        "other:ro",
        "--mount",
        "type=bind,src=/h,dst=/b,readonly,bind-propagation=rslave",
        "--mount",
        "type=volume,target=/v,volume-nocopy,volume-label=a=b",
        "--mount",
        "type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770",
    )
    assert b["Volumes"] == {"/anon": {}}
    hc = b["HostConfig"]
    assert hc["Binds"] == ["named:/data:ro", "/host:/ctr:rw,rshared"]
    assert hc["VolumesFrom"] == ["other:ro"]
    assert hc["Mounts"] == [
        {
            "Type": "bind",
            "Source": "/h",
            "Target": "/b",
            "ReadOnly": True,
            "BindOptions": {"Propagation": "rslave"},
        },
        {"Type": "volume", "Target": "/v", "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"}}},
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770}},
    ]
    for flag, value, message in [
        ("-v", "relative", "mount path must be absolute"),
        ("-v", "a:/b:bogus", "invalid mode: bogus"),
        ("-v", "a:b:c:d", "invalid volume specification"),
        ("--mount", "type=bind,src=/x", "target is required"),
        ("--mount", "type=nfs,target=/x", "invalid mount type"),
        ("--mount", "type=volume,target=/x,tmpfs-size=1m", "cannot mix 'tmpfs-*' options"),
        ("--mount", "type=volume,target=/x,color=red", "unexpected key 'color'"),
    ]:
        with pytest.raises(InvalidArgument, match=re.escape(message)):
            body(flag, value)


def test_dns() -> None:
    hc = body("--dns", "10.0.0.2", "--dns-search", "example.org", "--dns-option", "ndots:2")["HostConfig"]
    assert (
        hc["Dns"] == ["10.0.0.2"] and hc["DnsSearch"] == ["example.org"] and hc["DnsOptions"] == ["ndots:2"]
    )
    with pytest.raises(InvalidArgument, match="is not an ip address"):
        body("--dns", "resolver")
