"""Containers on networks, end to end through the CLI: name and alias resolution on a user network,
isolation between networks, published ports (-p on loopback, -P), ports freed at stop, bad input,
and what a crash leaves being repaired by the next command. Traffic goes only to loopback and to
the test's own containers."""

from __future__ import annotations

import json
import os
import signal
import socket

import net_helpers
from net_helpers import client, db_rows, free_port, http_get, inspect, netns_files, port_is_free, web

from conftest import Pallet

pytestmark = net_helpers.pytestmark
net = net_helpers.net  # fixture


def test_names_aliases_and_isolation(net: Pallet) -> None:
    p = net
    p("network", "create", "appnet")
    p("network", "create", "other")
    web(p, "web", "--network", "appnet", "--network-alias", "site")
    # by name and by alias, from another container on the same network
    assert client(p, "--network", "appnet", url="http://web/") == "hello\n"
    assert client(p, "--network", "appnet", url="http://site/") == "hello\n"
    web_ip = inspect(p, "web")[0]["NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
    assert client(p, "--network", "appnet", url=f"http://{web_ip}/") == "hello\n"
    # another network: neither the name nor the address
    assert client(p, "--network", "other", url="http://web/") is None
    assert client(p, "--network", "other", url=f"http://{web_ip}/") is None
    # the default bridge: no name resolution between containers (docker's rule), no route either
    assert client(p, url="http://web/") is None
    assert client(p, url=f"http://{web_ip}/") is None


def test_resolv_conf_and_hosts(net: Pallet) -> None:
    p = net
    p("network", "create", "--subnet", "10.123.0.0/24", "files")
    out = p.out(
        "run",
        "--rm",
        "--network",
        "files",
        "--ip",
        "10.123.0.77",
        "-h",
        "box",
        "--add-host",
        "db:10.1.2.3",
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf /etc/hosts /etc/hostname",
    )
    assert "nameserver 10.123.0.1\n" in out and "options ndots:0" in out
    assert "10.1.2.3\tdb\n" in out and "10.123.0.77\tbox\n" in out and out.endswith("box\n")
    # default bridge: the host's resolvers (none here: PALLET_DNS_UPSTREAMS is empty), never the embedded one
    out = p.out("run", "--rm", "busybox", "cat", "/etc/resolv.conf")
    assert "nameserver" not in out


def test_published_port_on_loopback_freed_at_stop(net: Pallet) -> None:
    p = net
    port = free_port()
    web(p, "pub", "-p", f"127.0.0.1:{port}:80")
    assert http_get(f"http://127.0.0.1:{port}/") == "hello\n"
    assert p.out("port", "pub", "80") == f"127.0.0.1:{port}\n"
    assert f"127.0.0.1:{port}->80/tcp" in p.out("ps")
    assert inspect(p, "pub")[0]["NetworkSettings"]["Ports"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    }
    # a second container cannot take the same port; nothing of it is left
    proc = p(
        "run", "-d", "--name", "dup", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60", check=False
    )
    assert proc.returncode == 125 and b"port is already allocated" in proc.stderr
    p("stop", "-t", "1", "pub")
    assert port_is_free(port)
    assert db_rows(p.root, "SELECT * FROM network_ports") == []
    assert inspect(p, "pub")[0]["NetworkSettings"]["Ports"] == {}
    # the port is free for the other container now, and `start` publishes it again
    p("rm", "dup")
    p("start", "pub")
    assert http_get(f"http://127.0.0.1:{port}/") == "hello\n"


def test_publish_all_picks_free_ports(net: Pallet) -> None:
    p = net
    web(p, "all", "--expose", "80", "--expose", "9000/udp", "-P")
    lines = p.out("port", "all").splitlines()
    assert (
        len(lines) == 2 and lines[0].startswith("80/tcp -> 0.0.0.0:") and lines[1].startswith("9000/udp -> ")
    )
    host_port = int(lines[0].rsplit(":", 1)[1])
    assert http_get(f"http://127.0.0.1:{host_port}/") == "hello\n"
    assert f"0.0.0.0:{host_port}->80/tcp" in p.out("ps", "--format", "{{.Ports}}")
    p("stop", "-t", "1", "all")
    assert port_is_free(host_port, "0.0.0.0")


def test_port_held_by_another_program(net: Pallet) -> None:
    p = net
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        proc = p(
            "run",
            "-d",
            "--name",
            "blocked",
            "-p",
            f"127.0.0.1:{port}:80",
            "busybox",
            "sleep",
            "60",
            check=False,
        )
    assert proc.returncode == 125 and b"address already in use" in proc.stderr
    assert inspect(p, "blocked")[0]["State"]["Running"] is False
    # nothing half-made: no endpoint, address, port, namespace, DNAT table
    assert db_rows(p.root, "SELECT * FROM network_endpoints") == []
    assert db_rows(p.root, "SELECT * FROM network_ports") == []
    assert [r for r in db_rows(p.root, "SELECT owner FROM network_addresses") if r[0] != "gateway"] == []
    assert netns_files(p.root) == []


def test_bad_input(net: Pallet) -> None:
    p = net
    p("network", "create", "--subnet", "10.124.0.0/16", "a16")
    proc = p("network", "create", "--subnet", "10.124.8.0/24", "overlap", check=False)
    assert proc.returncode == 1 and b"Pool overlaps with other one on this address space" in proc.stderr
    proc = p("run", "--rm", "--network", "a16", "--ip", "10.125.0.5", "busybox", "true", check=False)
    assert proc.returncode == 125 and b"does not belong to any of this network's subnets" in proc.stderr
    proc = p("run", "--rm", "--network", "nosuch", "busybox", "true", check=False)
    assert proc.returncode == 125 and proc.stderr == b"Error: network nosuch not found\n"
    proc = p("run", "--rm", "--ip", "172.17.0.9", "busybox", "true", check=False)
    assert proc.returncode == 125 and b"supported on user defined networks only" in proc.stderr
    proc = p("run", "--rm", "-p", "1.2.3:80:80", "busybox", "true", check=False)
    assert proc.returncode == 125 and b"invalid IP address" in proc.stderr
    cid = p.out("run", "-d", "--network", "a16", "busybox", "sleep", "60").strip()
    proc = p("network", "rm", "a16", check=False)
    net_id = inspect(p, cid)[0]["NetworkSettings"]["Networks"]["a16"]["NetworkID"]
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        f"Error: error while removing network: network a16 id {net_id} has active endpoints\n"
    )
    assert p.out("ps", "-aq") == cid[:12] + "\n"  # no failed create left a container behind


def test_network_commands(net: Pallet) -> None:
    p = net
    nid = p.out(
        "network",
        "create",
        "--label",
        "team=a",
        "-o",
        "com.docker.network.bridge.name=pltestbr0",
        "--internal",
        "--subnet",
        "10.126.0.0/24",
        "--gateway",
        "10.126.0.254",
        "inside",
    ).strip()
    assert len(nid) == 64
    table = p.out("network", "ls").splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [line.split()[1] for line in table[1:]] == ["bridge", "host", "inside", "none"]
    assert p.out("network", "ls", "-q", "--filter", "label=team=a") == nid[:12] + "\n"
    assert p.out("network", "ls", "--no-trunc", "-q", "-f", "type=custom") == nid + "\n"
    assert p.out("network", "ls", "--format", "{{.Name}}:{{.Driver}}", "-f", "driver=null") == "none:null\n"
    assert p.out("network", "ls", "--format", "{{.Name}}", "-f", "dangling=true") == "inside\n"
    with open("/sys/class/net/pltestbr0/address") as f:
        assert f.read().strip()  # the bridge got the name asked for
    cid = p.out("run", "-d", "--name", "member", "--network", "inside", "busybox", "sleep", "60").strip()
    [info] = json.loads(p.out("network", "inspect", "inside"))
    assert info["Internal"] is True and info["Labels"] == {"team": "a"}
    assert info["IPAM"]["Config"] == [{"Subnet": "10.126.0.0/24", "Gateway": "10.126.0.254"}]
    member = info["Containers"][cid]
    assert member["Name"] == "member" and member["IPv4Address"] == "10.126.0.1/24"
    assert p.out("network", "ls", "--format", "{{.Name}}", "-f", "dangling=true") == ""
    # an --internal network has no way out: no default route
    assert (
        p.out("exec", "member", "ip", "route").strip() == "10.126.0.0/24 dev eth0 scope link  src 10.126.0.1"
    )
    # connect and disconnect a running container
    p("network", "create", "--subnet", "10.127.0.0/24", "extra")
    p("network", "connect", "--ip", "10.127.0.9", "--alias", "second", "extra", "member")
    assert "10.127.0.9/24" in p.out("exec", "member", "ip", "-o", "-4", "addr")
    settings = inspect(p, "member")[0]["NetworkSettings"]["Networks"]
    assert set(settings) == {"inside", "extra"} and settings["extra"]["Aliases"] == ["second"]
    proc = p("network", "connect", "extra", "member", check=False)
    assert proc.returncode != 0 and b"already exists in network extra" in proc.stderr
    p("network", "disconnect", "extra", "member")
    assert "10.127.0.9" not in p.out("exec", "member", "ip", "-o", "-4", "addr")
    assert set(inspect(p, "member")[0]["NetworkSettings"]["Networks"]) == {"inside"}
    # a stopped container keeps its networks for the next start
    p("stop", "-t", "0", "member")
    p("network", "connect", "extra", "member")
    p("start", "member")
    assert "10.127.0." in p.out("exec", "member", "ip", "-o", "-4", "addr")
    p("rm", "-f", "member")
    out = p.out("network", "prune", "-f").splitlines()
    assert out[0] == "Deleted Networks:" and sorted(out[1:]) == ["extra", "inside"]
    assert p.out("network", "ls", "-q", "-f", "type=custom") == ""
    assert not os.path.exists("/sys/class/net/pltestbr0")


def test_system_prune_removes_unused_networks(net: Pallet) -> None:
    p = net
    p("network", "create", "unused")
    p("network", "create", "busy")
    p("run", "-d", "--network", "busy", "busybox", "sleep", "60")
    out = p.out("system", "prune", "-f")
    assert "Deleted Networks:\nunused\n" in out
    assert p.out("network", "ls", "--format", "{{.Name}}", "-f", "type=custom") == "busy\n"


def test_crash_leaves_nothing_that_blocks_the_next_run(net: Pallet) -> None:
    """The monitor and the container are killed (a crash, an OOM of the host...): the next command
    that looks gives back the ports, endpoints and namespace, and a start works again."""
    p = net
    port = free_port()
    p("network", "create", "crashnet")
    cid = web(p, "victim", "--network", "crashnet", "-p", f"127.0.0.1:{port}:80")
    monitor = int((p.root / "run" / "containers" / cid / "monitor.pid").read_text().split()[0])
    pid = inspect(p, "victim")[0]["State"]["Pid"]
    for victim in (monitor, pid):
        os.kill(victim, signal.SIGKILL)
    assert "Exited (255)" in p.out("ps", "-a", "--format", "{{.Status}}")
    assert db_rows(p.root, "SELECT * FROM network_endpoints") == []
    assert netns_files(p.root) == []
    # the same port, for a fresh container and for the old one again
    web(p, "again", "--network", "crashnet", "-p", f"127.0.0.1:{port}:80", text="again")
    assert http_get(f"http://127.0.0.1:{port}/") == "again\n"
    p("rm", "-f", "again")
    p("start", "victim")
    assert http_get(f"http://127.0.0.1:{port}/") == "hello\n"


def test_none_host_and_container_modes(net: Pallet) -> None:
    p = net
    out = p.out("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert out.count("\n") == 1 and out.startswith("1: lo: <LOOPBACK,UP,LOWER_UP>")  # lo only, up, as docker
    assert netns_files(p.root) == []  # its namespace went with it
    out = p.out("run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net")
    assert out.strip() == os.readlink("/proc/self/ns/net")  # the host's own network namespace
    cid = web(p, "base", "--network", "none")
    out = p.out(
        "run",
        "--rm",
        "--network",
        "container:base",
        "busybox",
        "sh",
        "-c",
        "hostname; wget -qO- http://127.0.0.1/",
    )
    assert out == f"{cid[:12]}\nhello\n"  # its hostname and its loopback
    proc = p("run", "--rm", "--network", "container:base", "-p", "80:80", "busybox", "true", check=False)
    assert proc.returncode == 125 and b"conflicting options: port publishing" in proc.stderr


def test_several_networks_short_id_and_dns_flags(net: Pallet) -> None:
    p = net
    p("network", "create", "--subnet", "10.128.1.0/24", "one")
    p("network", "create", "--subnet", "10.128.2.0/24", "two")
    cid = web(p, "multi", "--network", "one", "--network", "two")
    nets = inspect(p, "multi")[0]["NetworkSettings"]["Networks"]
    assert sorted(nets) == ["one", "two"]
    assert nets["one"]["IPAddress"].startswith("10.128.1.") and nets["two"]["IPAddress"].startswith(
        "10.128.2."
    )
    assert nets["one"]["DNSNames"] == ["multi", cid[:12]]
    # reachable from either network, by name and by short id
    assert client(p, "--network", "two", url="http://multi/") == "hello\n"
    assert client(p, "--network", "one", url=f"http://{cid[:12]}/") == "hello\n"
    out = p.out(
        "run",
        "--rm",
        "--dns",
        "10.0.0.2",
        "--dns-search",
        "example.org",
        "--dns-option",
        "ndots:3",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    )
    assert out == "search example.org\nnameserver 10.0.0.2\noptions ndots:3\n"
