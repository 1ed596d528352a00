"""nftables rules, one table per owner, applied atomically with `nft -f -`.

Each network gets `table ip pallet_net_<id12>` (isolation, --internal, masquerade, hairpin) and each
endpoint with published ports gets `table ip pallet_ep_<id12>` (DNAT). A table per owner means that
creating or removing an owner is one atomic transaction that cannot leave a stray rule behind, no
rule handles have to be looked up, and two pallet roots on one host never edit each other's rules.
`nft list tables | grep pallet_` shows everything pallet has installed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from ipaddress import IPv4Network

from pallet.errors import PalletError
from pallet.network.links import PALLET_DEVGROUP

TABLE_PREFIX = "pallet_"
# Chain priorities: nft 1.0.6 only accepts the `dstnat` keyword on prerouting, so output uses the number.
NAT_DSTNAT = -100


class NftError(PalletError):
    pass


def network_table(network_id: str) -> str:
    return f"{TABLE_PREFIX}net_{network_id[:12]}"


def endpoint_table(endpoint_id: str) -> str:
    return f"{TABLE_PREFIX}ep_{endpoint_id[:12]}"


def apply(script: str) -> None:
    proc = subprocess.run(["nft", "-f", "-"], input=script.encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise NftError(f"nft: {proc.stderr.decode(errors='replace').strip()}")


def replace_table(name: str, body: str) -> None:
    """(Re)create a table with exactly this body, atomically."""
    apply(f"add table ip {name}\ndelete table ip {name}\ntable ip {name} {{\n{body}}}\n")


def delete_table(name: str) -> None:
    """Remove a table if present (`add` first makes the delete idempotent in nft < 1.0.8)."""
    apply(f"add table ip {name}\ndelete table ip {name}\n")


def table_names() -> list[str]:
    proc = subprocess.run(["nft", "list", "tables"], capture_output=True, check=False)
    out = []
    for line in proc.stdout.decode().splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "table":
            out.append(words[2])
    return out


def _chain(name: str, hook: str, kind: str, priority: str | int, rules: Iterable[str]) -> str:
    body = "".join(f"    {r}\n" for r in rules)
    return f"  chain {name} {{\n    type {kind} hook {hook} priority {priority}; policy accept;\n{body}  }}\n"


def network_rules(bridge: str, subnet: IPv4Network, *, internal: bool, masquerade: bool) -> str:
    br = f'"{bridge}"'
    forward = [
        # Isolation: nothing routed from this network into another pallet network, except
        # connections to a published port (DNAT), which are meant to be reachable from anywhere.
        f"iifname {br} oifgroup {PALLET_DEVGROUP} oifname != {br} ct status & dnat == 0 drop",
    ]
    if internal:
        # --internal: no way in or out of the bridge's own segment.
        forward += [f"iifname {br} oifname != {br} drop", f"oifname {br} iifname != {br} drop"]
    raw = [
        # A container must never reach the host's loopback services, whatever route_localnet says.
        f"iifname {br} ip daddr 127.0.0.0/8 drop",
    ]
    post = []
    if masquerade and not internal:
        post.append(f"ip saddr {subnet} oifname != {br} masquerade")
    post += [
        # Loopback-published ports without the userland proxy: 127.0.0.1 cannot leave the host.
        f"oifname {br} ip saddr 127.0.0.0/8 masquerade",
        # Hairpin: a container reaching a published port of its own network through a host address.
        f"oifname {br} ip saddr {subnet} ct status dnat masquerade",
    ]
    return (
        _chain("filter_forward", "forward", "filter", "filter", forward)
        + _chain("raw_prerouting", "prerouting", "filter", "raw", raw)
        + _chain("nat_postrouting", "postrouting", "nat", "srcnat", post)
    )


def dnat_rules(
    bindings: Iterable[tuple[str, str, int, str, int]], *, bridge: str, loopback_by_nat: bool
) -> str:
    """DNAT for published ports: (proto, host_ip, host_port, container_ip, container_port) each.

    Traffic from other hosts and containers is DNATed in prerouting; traffic the host sends itself
    in output. With the userland proxy (loopback_by_nat False), the proxy serves what stays local:
    connections to 127.0.0.0/8 and, as in docker, connections from the container's own bridge (its
    neighbours and itself: no hairpin through the bridge port needed). Without it, everything is
    DNATed: the bridge needs route_localnet=1 and the endpoint's port hairpin mode."""
    pre: list[str] = []
    out: list[str] = []
    not_own = "" if loopback_by_nat else f'iifname != "{bridge}" '
    for proto, host_ip, host_port, cip, cport in bindings:
        target = f"{proto} dport {host_port} dnat to {cip}:{cport}"
        if host_ip in ("", "0.0.0.0"):
            pre.append(f"{not_own}fib daddr type local {target}")
            if loopback_by_nat:
                out.append(f"fib daddr type local {target}")
            else:
                out.append(f"fib daddr type local ip daddr != 127.0.0.0/8 {target}")
        elif host_ip.startswith("127."):
            if loopback_by_nat:
                out.append(f"ip daddr {host_ip} {target}")
        else:
            pre.append(f"{not_own}ip daddr {host_ip} {target}")
            out.append(f"ip daddr {host_ip} {target}")
    return _chain("nat_prerouting", "prerouting", "nat", "dstnat", pre) + _chain(
        "nat_output", "output", "nat", NAT_DSTNAT, out
    )
