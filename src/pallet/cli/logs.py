"""`logs`: a container's json-file log, stdout lines to our stdout and stderr lines to our
stderr, as docker's CLI shows them."""

from __future__ import annotations

import sys
import time
import urllib.parse

from pallet.cli.args import Parser
from pallet.engine.core import Engine
from pallet.errors import InvalidArgument


def logs(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] CONTAINER")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--details", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    if len(ns.containers) != 1:
        raise InvalidArgument(
            f"\"{prog}\" requires exactly 1 argument.\nSee '{prog} --help'.\n\n"
            f"Usage:  {prog} [OPTIONS] CONTAINER"
        )
    from pallet.engine import logs as reader

    now = time.time()
    entries = reader.read(
        Engine(),
        ns.containers[0],
        follow=ns.follow,
        tail=_tail(ns.tail),
        since=_when("since", ns.since, now),
        until=_when("until", ns.until, now),
    )
    outs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for e in entries:
        line = e.data
        if ns.details:
            line = _attrs(e.attrs) + b" " + line
        if ns.timestamps:
            line = _fixed_nano(e.ns) + b" " + line
        dest = outs.get(e.stream, sys.stdout.buffer)
        dest.write(line)
        if ns.follow:
            dest.flush()
    return 0


def _tail(value: str) -> int | None:
    """docker's daemon: a number of lines; "all", a negative or an unparsable value mean all."""
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n >= 0 else None


def _when(flag: str, value: str | None, now: float) -> float | None:
    if not value:
        return None
    from pallet.engine.filters import FilterError, parse_timestamp

    try:
        return parse_timestamp(value, now)
    except FilterError as e:
        raise InvalidArgument(f'invalid value for "{flag}": {e}') from None


def _fixed_nano(ns: int) -> bytes:
    """RFC 3339 with the nanoseconds always nine digits, as docker prints --timestamps."""
    secs, frac = divmod(ns, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z").encode()


def _attrs(attrs: dict[str, str]) -> bytes:
    """--details: the entry's extra attributes, key=value, query-escaped, sorted, comma-separated."""
    q = urllib.parse.quote_plus
    return ",".join(f"{q(k)}={q(v)}" for k, v in sorted(attrs.items())).encode()
