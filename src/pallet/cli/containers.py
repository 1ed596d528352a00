"""Container commands: run, create, start, ps, rm, container inspect."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pallet.cli.args import Parser, out, requires
from pallet.engine.core import Engine
from pallet.errors import InvalidArgument, PalletError

PS_TABLE = [
    ("CONTAINER ID", "{{.ID}}"),
    ("IMAGE", "{{.Image}}"),
    ("COMMAND", "{{.Command}}"),
    ("CREATED", "{{.RunningFor}}"),
    ("STATUS", "{{.Status}}"),
    ("PORTS", "{{.Ports}}"),
    ("NAMES", "{{.Names}}"),
]
PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "RunningFor": "CREATED",
    "CreatedAt": "CREATED AT",
    "Status": "STATUS",
    "Ports": "PORTS",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
    "Size": "SIZE",
    "State": "STATE",
}


def _create_parser(prog: str, usage: str) -> Parser:
    p = Parser(prog, usage)
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("--entrypoint")
    p.add_argument("-h", "--hostname")
    p.add_argument("--domainname")
    p.add_argument("-u", "--user")
    p.add_argument("--group-add", action="append", default=[])
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("--label-file", action="append", default=[])
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--rm", action="store_true")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--runtime")
    p.add_argument("--network", "--net")
    p.add_argument("--pull", choices=("always", "missing", "never"), default="missing")
    p.add_argument("image", nargs="?")
    p.add_argument("command", nargs=argparse.REMAINDER)
    return p


def _env_file(path: str) -> list[str]:
    """docker's --env-file: KEY=VALUE lines; a bare KEY takes the value from our environment."""
    import os

    try:
        lines = open(path, encoding="utf-8").read().splitlines()  # noqa: SIM115
    except OSError as e:
        raise InvalidArgument(f"open {path}: {e.strerror or e}") from None
    env = []
    for line in lines:
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, _ = line.partition("=")
        if not key or " " in key.strip() and not eq:
            raise InvalidArgument(f"invalid environment variable in {path}: {line!r}")
        if eq:
            env.append(line)
        elif key in os.environ:
            env.append(f"{key}={os.environ[key]}")
    return env


def _env_flags(values: list[str]) -> list[str]:
    import os

    env = []
    for v in values:
        if "=" in v:
            if v.startswith("="):
                raise InvalidArgument(f"invalid environment variable: {v}")
            env.append(v)
        elif v in os.environ:
            env.append(f"{v}={os.environ[v]}")
    return env


def _labels(values: list[str], files: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for path in files:
        for line in _env_file(path):
            k, _, v = line.partition("=")
            labels[k] = v
    for v in values:
        k, _, val = v.partition("=")
        labels[k] = val
    return labels


def _create_body(ns: argparse.Namespace) -> dict[str, Any]:
    """Flags -> the Engine API's ContainerCreate body, as docker's CLI builds it."""
    import shlex

    env = [e for f in ns.env_file for e in _env_file(f)] + _env_flags(ns.env)
    body: dict[str, Any] = {
        "Image": ns.image,
        "Env": env,
        "Cmd": ns.command or None,
        "Hostname": ns.hostname or "",
        "Domainname": ns.domainname or "",
        "User": ns.user or "",
        "WorkingDir": ns.workdir or "",
        "Labels": _labels(ns.label, ns.label_file),
        "Tty": ns.tty,
        "OpenStdin": ns.interactive,
        "StdinOnce": ns.interactive,
        "AttachStdin": ns.interactive,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": {
            "AutoRemove": ns.rm,
            "ReadonlyRootfs": ns.read_only,
            "GroupAdd": ns.group_add or None,
            "NetworkMode": ns.network or "none",
            "Runtime": ns.runtime or "",
            "LogConfig": {"Type": "json-file", "Config": {}},
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        },
    }
    if ns.entrypoint is not None:
        body["Entrypoint"] = shlex.split(ns.entrypoint) if ns.entrypoint else []
    if ns.network not in (None, "none", "default", "bridge"):
        raise InvalidArgument(f"network {ns.network} not found (only --network none is available yet)")
    return body


def create(prog: str, args: list[str]) -> int:
    p = _create_parser(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    ns = p.parse(args)
    requires([ns.image] if ns.image else [], prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    from pallet.engine import containers

    cid = _create_with_exit_code(lambda: containers.create(Engine(), _create_body(ns), ns.name))
    out(cid + "\n")
    return 0


def _create_with_exit_code(fn: Any) -> str:
    """Daemon-side failures of create/run exit 125, as docker's do."""
    try:
        return str(fn())
    except PalletError as e:
        e.exit_code = 125
        raise


def run(prog: str, args: list[str]) -> int:
    p = _create_parser(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--sig-proxy", default="true")
    ns = p.parse(args)
    requires([ns.image] if ns.image else [], prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    if ns.tty:
        raise InvalidArgument("--tty is not supported yet")
    from pallet.engine import containers, lifecycle

    engine = Engine()
    body = _create_body(ns)
    if ns.detach:
        body["AttachStdin"] = body["AttachStdout"] = body["AttachStderr"] = False
        body["StdinOnce"] = False
    cid = _create_with_exit_code(lambda: containers.create(engine, body, ns.name))
    if ns.detach:
        _start_or_125(lambda: lifecycle.start(engine, cid))
        out(cid + "\n")
        return 0
    from pallet.cli.attach import attached_start

    try:
        return attached_start(
            engine, cid, stdin=ns.interactive, sig_proxy=ns.sig_proxy.lower() not in ("false", "0")
        )
    except PalletError as e:
        if ns.rm:
            try:
                containers.remove(engine, cid, force=True)
            except PalletError:
                pass
        e.exit_code = 125
        raise


def _start_or_125(fn: Any) -> Any:
    try:
        return fn()
    except PalletError as e:
        e.exit_code = 125
        raise


def start(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    requires(ns.containers, prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    from pallet.engine import lifecycle

    engine = Engine()
    if ns.attach or ns.interactive:
        if len(ns.containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        from pallet.cli.attach import attached_start
        from pallet.engine.containers import lookup

        return attached_start(
            engine, lookup(engine, ns.containers[0]).id, stdin=ns.interactive, sig_proxy=True
        )
    code = 0
    for ref in ns.containers:
        try:
            lifecycle.start(engine, ref)
            out(ref + "\n")
        except PalletError as e:
            sys.stderr.write(f"Error: {e}\n")
            code = 1
    return code


def rm(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("-l", "--link", action="store_true")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    requires(ns.containers, prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    from pallet.engine import containers

    engine = Engine()
    code = 0
    for ref in ns.containers:
        try:
            out(containers.remove(engine, ref, force=ns.force) + "\n")
        except PalletError as e:
            sys.stderr.write(f"Error: {e}\n")
            code = 1
    return code


def ps(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-n", "--last", type=int, default=-1)
    p.add_argument("-l", "--latest", action="store_true")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    ns = p.parse(args)
    from pallet.cli.ps_rows import ps_row
    from pallet.engine import containers

    engine = Engine()
    show_all = ns.all or ns.last >= 0 or ns.latest
    recs = containers.list_containers(engine, all_containers=show_all)
    if ns.latest:
        recs = recs[:1]
    elif ns.last >= 0:
        recs = recs[: ns.last]
    if ns.quiet:
        out("".join((r.id if ns.no_trunc else r.short_id) + "\n" for r in recs))
        return 0
    from pallet.cli.format import format_rows

    rows = [ps_row(r, ns.no_trunc) for r in recs]
    out(format_rows(ns.format, rows, PS_TABLE, PS_HEADERS))
    return 0


def container_inspect(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-f", "--format")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    requires(ns.names, prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    from pallet.cli.images import print_inspect
    from pallet.engine import containers

    engine = Engine()
    return print_inspect([lambda n=n: containers.inspect(engine, n) for n in ns.names], ns.format)
