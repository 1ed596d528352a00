"""`port CONTAINER [PRIVATE_PORT[/PROTO]]`: the container's published ports, as docker lists them."""

from __future__ import annotations

from pallet.cli.args import Parser, out, requires
from pallet.engine.core import Engine
from pallet.errors import PalletError


def _host_port(binding: dict[str, str]) -> str:
    ip, port = binding.get("HostIp") or "", binding.get("HostPort") or ""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _sort_key(spec: str) -> tuple[int, str]:
    number, _, proto = spec.partition("/")
    return (int(number) if number.isdigit() else 0, proto)


def port(prog: str, args: list[str]) -> int:
    p = Parser(prog, "CONTAINER [PRIVATE_PORT[/PROTO]]")
    p.add_argument("container", nargs="?")
    p.add_argument("port", nargs="?")
    ns = p.parse(args)
    requires([ns.container] if ns.container else [], prog, "CONTAINER [PRIVATE_PORT[/PROTO]]")
    from pallet.engine.containers import lookup
    from pallet.engine.inspect import port_map
    from pallet.engine.lifecycle import refresh

    engine = Engine()
    ports = port_map(refresh(engine, lookup(engine, ns.container)))
    if ns.port:
        number, _, proto = ns.port.partition("/")
        if not number.isdigit() or int(number) > 65535:
            raise PalletError(
                f'Error: invalid port ({number}): strconv.ParseUint: parsing "{number}": '
                + ("value out of range" if number.isdigit() else "invalid syntax")
            )
        bindings = ports.get(f"{number}/{proto or 'tcp'}")
        if not bindings:
            raise PalletError(f"Error: No public port '{ns.port}' published for {ns.container}")
        out("".join(_host_port(b) + "\n" for b in bindings))
        return 0
    lines = [
        f"{spec} -> {_host_port(b)}\n" for spec in sorted(ports, key=_sort_key) for b in ports[spec] or []
    ]
    out("".join(lines))
    return 0
