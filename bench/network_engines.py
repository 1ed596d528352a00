"""The engines bench/network.py measures: pallet (a root of its own), podman (runc, in a network
namespace of its own, with a CNI network config dir and IPAM state of its own) and docker (a private
dockerd in its own network namespace). Each gives its CLI, its "host" namespace (None: the real host),
its networks, and a close() that removes every container, network, store and namespace it made."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

from bench.common import BenchError, Dockerd, Podman, Scratch, pallet_cli, run, signals_held

PALLET = pallet_cli()
IMAGE = "busybox"
PODMAN_SUBNET = "10.89.250.0/24"


def host_address() -> str:
    """The host's first non-loopback IPv4 address (for the DNAT path from the host)."""
    out = run(["ip", "-4", "-o", "addr", "show", "scope", "global"])
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not addr.startswith("127."):
            return addr
    raise BenchError("the host has no non-loopback IPv4 address")


class Engine:
    """One engine's CLI, its "host" namespace (None: the real host), and the networks it uses."""

    name = ""
    bridge_args: list[str] = []  # `run` flags for its default bridge network
    user_network = "pbnet"

    def __init__(self) -> None:
        self.containers: set[str] = set()
        self.host_netns: str | None = None

    def cli(self, *args: str | Path, env: dict[str, str] | None = None) -> str:
        raise NotImplementedError

    def host_addr(self) -> str:
        raise NotImplementedError

    def run_rm(self, network: str) -> float:
        flags = ["--network", "none"] if network == "none" else self.bridge_args
        t0 = time.perf_counter()
        self.cli("run", "--rm", *flags, IMAGE, "true")
        return time.perf_counter() - t0

    def sleeper(self, name: str, *flags: str, env: dict[str, str] | None = None) -> str:
        cid = (
            self.cli("run", "-d", "--name", name, *flags, IMAGE, "sleep", "3600", env=env)
            .strip()
            .splitlines()[-1]
        )
        self.containers.add(cid)
        return cid

    def netns(self, cid: str) -> str:
        return f"/proc/{int(self.cli('inspect', '-f', '{{.State.Pid}}', cid))}/ns/net"

    def address(self, cid: str, network: str) -> str:
        return self.cli(
            "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}', cid
        ).strip()

    def remove_containers(self) -> None:
        if self.containers:
            self.cli("rm", "-f", *sorted(self.containers))
            self.containers.clear()

    def close(self) -> None:
        raise NotImplementedError


class PalletEngine(Engine):
    name = "pallet"

    def __init__(self, work: Scratch, archive: Path) -> None:
        super().__init__()
        self.root = Scratch(prefix="pallet-", parent=work.path)
        self.env = {**os.environ, "PALLET_DNS_UPSTREAMS": ""}  # never forward a query off the machine
        self.cli("load", "-i", archive)
        self.cli("network", "create", self.user_network)

    def cli(self, *args: str | Path, env: dict[str, str] | None = None) -> str:
        return run([PALLET, "--root", self.root.path, *args], env={**self.env, **(env or {})})

    def host_addr(self) -> str:
        return host_address()

    def close(self) -> None:
        with signals_held():
            try:
                self.remove_containers()
                self.cli("network", "prune", "-f")
            finally:
                remove_pallet_host_state(self.root.path)
                self.root.close()


def remove_pallet_host_state(root: Path) -> None:
    """The default bridge (no command removes a predefined network) and anything a failed step left:
    the bridges, veths and nft tables this root's records name."""
    db = root / "pallet.db"
    if not db.exists():
        return
    conn = sqlite3.connect(db, timeout=10)
    try:
        networks = conn.execute("SELECT id, bridge FROM networks").fetchall()
        endpoints = conn.execute("SELECT id, host_ifname FROM network_endpoints").fetchall()
    finally:
        conn.close()
    tables = [f"pallet_net_{i[:12]}" for i, _ in networks] + [f"pallet_ep_{i[:12]}" for i, _ in endpoints]
    script = "".join(f"add table ip {t}\ndelete table ip {t}\n" for t in tables)
    subprocess.run(["nft", "-f", "-"], input=script.encode(), capture_output=True, check=False)
    for name in [h for _, h in endpoints] + [b for _, b in networks if b]:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


class PodmanEngine(Engine):
    """podman (runc) in a network namespace of its own, with a CNI network config dir of its own."""

    name = "podman"
    bridge_args = ["--network", "pbench"]
    user_network = "pbench"

    def __init__(self, work: Scratch, archive: Path) -> None:
        super().__init__()
        self.ns_name = f"pallet-bench-podman-{os.getpid()}"
        self.host_netns = f"/var/run/netns/{self.ns_name}"
        self.podman = Podman(runtime="runc", parent=work.path)
        self.cni = self.podman.home / "cni"
        self.cni.mkdir()
        conflist = {
            "cniVersion": "0.4.0",
            "name": "pbench",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "pbench0",
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.podman.home / "cni-ipam"),
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "ranges": [[{"subnet": PODMAN_SUBNET}]],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall"},
                {"type": "tuning"},
            ],
        }
        (self.cni / "pbench.conflist").write_text(json.dumps(conflist))
        try:
            run(["ip", "netns", "add", self.ns_name])
            run(["ip", "-n", self.ns_name, "link", "set", "lo", "up"])
            self.cli("load", "-i", archive)
        except BaseException:
            self.close()
            raise

    def cli(self, *args: str | Path, env: dict[str, str] | None = None) -> str:
        argv = [
            "nsenter",
            f"--net={self.host_netns}",
            *self.podman.argv,
            "--network-config-dir",
            str(self.cni),
        ]
        return run([*argv, *args], env={**self.podman.env, **(env or {})})

    def host_addr(self) -> str:
        return PODMAN_SUBNET.rsplit(".", 1)[0] + ".1"

    def remove_containers(self) -> None:
        if self.containers:
            self.cli("rm", "-f", "-t", "0", *sorted(self.containers))
            self.containers.clear()

    def close(self) -> None:
        with signals_held():
            try:
                self.remove_containers()
            finally:
                try:
                    self.podman.close()
                finally:
                    subprocess.run(["ip", "netns", "del", self.ns_name], capture_output=True, check=False)


class DockerEngine(Engine):
    """A private dockerd in its own network namespace, with its default bridge (docker0 in there)."""

    name = "docker"

    def __init__(self, work: Scratch, archive: Path) -> None:
        super().__init__()
        self.dockerd = Dockerd(parent=work.path)
        self.host_netns = f"/var/run/netns/{self.dockerd.netns}"
        try:
            self.cli("load", "-i", archive)
            self.cli("network", "create", self.user_network)
        except BaseException:
            self.dockerd.close()
            raise

    def cli(self, *args: str | Path, env: dict[str, str] | None = None) -> str:
        return run([self.dockerd.client, *args], env={**self.dockerd.env, **(env or {})})

    def host_addr(self) -> str:
        return self.cli(
            "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", self.user_network
        ).strip()

    def close(self) -> None:
        with signals_held():
            try:
                self.remove_containers()
            finally:
                self.dockerd.close()
