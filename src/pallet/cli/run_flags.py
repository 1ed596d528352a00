"""The flags of `run` and `create`, and how they become an Engine API ContainerCreate body
(Config with HostConfig inside), as docker's CLI builds it."""

from __future__ import annotations

import argparse
from typing import Any

from pallet.cli.args import Parser
from pallet.errors import InvalidArgument


def create_parser(prog: str, usage: str) -> Parser:
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


def create_body(ns: argparse.Namespace) -> dict[str, Any]:
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
