"""From parsed nodes to typed instruction records, checking arguments and flags as docker does.

The checks and their messages are BuildKit's (instructions/parse.go); every error is raised as
a DockerfileError located at the instruction's lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypedDict

from pallet.build.errors import DockerfileError
from pallet.build.flags import FlagError, FlagSet, parse_go_duration
from pallet.build.gocompat import strip_space, with_suggestion
from pallet.build.instructions import (
    Add,
    Arg,
    ArgDefinition,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    SourceContent,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from pallet.build.line_parsers import KNOWN_INSTRUCTIONS
from pallet.build.mounts import Mount, MountError, mount_from, parse_mount
from pallet.build.parser import Node, parse_heredoc

__all__ = ["to_instruction"]

_STAGE_NAME = re.compile(r"[a-z][a-z0-9-_.]*")
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)
_NETWORK_MODES = ("default", "none", "host")
_SECURITY_MODES = ("insecure", "sandbox")


class _Invalid(Exception):
    """A rejected instruction; converted to a located DockerfileError by to_instruction."""


def _args(node: Node) -> list[str]:
    # ONBUILD's arguments are its trigger's keyword and arguments (BuildKit's nodeArgs).
    if node.child is not None:
        return [node.child.keyword, *_args(node.child)]
    return list(node.args)


class _Location(TypedDict):
    line: int
    end_line: int
    source: str


def _location(node: Node) -> _Location:
    return {"line": node.start_line, "end_line": node.end_line, "source": strip_space(node.original)}


def _parse_flags(flags: FlagSet) -> None:
    try:
        flags.parse()
    except FlagError as e:
        raise _Invalid(str(e)) from None


def _exactly_one(name: str, args: list[str]) -> None:
    if len(args) != 1:
        raise _Invalid(f"{name} requires exactly one argument")


def _at_least_one(name: str, args: list[str]) -> None:
    if not args:
        raise _Invalid(f"{name} requires at least one argument")


def _command_line(node: Node, args: list[str]) -> list[str]:
    # Exec form keeps the list; shell form is one string (the parser gave us one word anyway).
    if not args:
        return []
    return args if node.json else [" ".join(args)]


def _pairs(name: str, args: list[str]) -> list[KeyValue]:
    _at_least_one(name, args)
    if len(args) % 3:
        raise _Invalid(f"Bad input to {name}, too many arguments")
    pairs = []
    for i in range(0, len(args), 3):
        if not args[i]:
            raise _Invalid(f"{name} names can not be blank")
        pairs.append(KeyValue(args[i], args[i + 1], no_delim=args[i + 2] == ""))
    return pairs


def _from(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.fullmatch(name):
            raise _Invalid(f'invalid name for build stage: "{args[2]}", '
                           "name can't start with a number or contain symbols")
    elif len(args) != 1:
        raise _Invalid("FROM requires either one or three arguments")
    platform = flags.add_string("platform")
    _parse_flags(flags)
    return From(base=args[0], name=name, platform=platform.value, **_location(node))


def _sources_and_dest(node: Node, args: list[str], name: str) -> tuple[list[str], str, list[SourceContent]]:
    *sources, dest = args
    if parse_heredoc(dest) is not None:
        raise _Invalid(f"{name} cannot accept a heredoc as a destination")
    docs = {doc.name: doc for doc in node.heredocs}
    paths: list[str] = []
    contents: list[SourceContent] = []
    for src in sources:
        doc = parse_heredoc(src)
        if doc is None:
            paths.append(src)
            continue
        body = docs.get(doc.name)
        doc.content = body.content if body is not None else ""
        contents.append(SourceContent(path=doc.name, data=doc.text, expand=doc.expand))
    return paths, dest, contents


def _copy(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    if len(args) < 2:
        raise _Invalid("COPY requires at least two arguments, but only one was provided. "
                       "Destination could not be determined")
    chown, from_, chmod = flags.add_string("chown"), flags.add_string("from"), flags.add_string("chmod")
    link, excludes, parents = flags.add_bool("link"), flags.add_strings("exclude"), flags.add_bool("parents")
    _parse_flags(flags)
    sources, dest, contents = _sources_and_dest(node, args, "COPY")
    return Copy(sources=sources, dest=dest, contents=contents, from_=from_.value, chown=chown.value,
                chmod=chmod.value, link=link.is_true, parents=parents.is_true, excludes=excludes.values,
                **_location(node))


def _add(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    if len(args) < 2:
        raise _Invalid("ADD requires at least two arguments, but only one was provided. "
                       "Destination could not be determined")
    chown, chmod, link = flags.add_string("chown"), flags.add_string("chmod"), flags.add_bool("link")
    keep_git, checksum = flags.add_bool("keep-git-dir"), flags.add_string("checksum")
    unpack, excludes = flags.add_bool("unpack"), flags.add_strings("exclude")
    _parse_flags(flags)
    sources, dest, contents = _sources_and_dest(node, args, "ADD")
    return Add(sources=sources, dest=dest, contents=contents, chown=chown.value, chmod=chmod.value,
               link=link.is_true, checksum=checksum.value, excludes=excludes.values,
               keep_git_dir=keep_git.is_true if keep_git.used else None,
               unpack=unpack.is_true if unpack.used else None, **_location(node))


def _run(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    mount = flags.add_strings("mount")
    network = flags.add_string("network", "default")
    security = flags.add_string("security", "sandbox")
    device = flags.add_strings("device")
    _parse_flags(flags)
    if network.value not in _NETWORK_MODES:
        raise _Invalid(f'invalid network mode "{network.value}"')
    if security.value not in _SECURITY_MODES:
        raise _Invalid(f'security "{security.value}" is not valid')
    mounts = []
    try:
        for spec in mount.values:
            # Without variables the spec is final: validate it now. With them, only `from`
            # matters before dispatch (it decides the stage graph).
            if "$" in spec:
                mounts.append(Mount(from_=mount_from(spec)))
            else:
                mounts.append(parse_mount(spec))
    except MountError as e:
        raise _Invalid(str(e)) from None
    return Run(command=_command_line(node, args), shell_form=not node.json, heredocs=list(node.heredocs),
               mount_specs=mount.values, mounts=mounts, network=network.value, security=security.value,
               devices=device.values, flags_used=flags.used(), **_location(node))


def _cmd(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _parse_flags(flags)
    return Cmd(command=_command_line(node, args), shell_form=not node.json, heredocs=list(node.heredocs),
               **_location(node))


def _entrypoint(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _parse_flags(flags)
    return Entrypoint(command=_command_line(node, args), shell_form=not node.json,
                      heredocs=list(node.heredocs), **_location(node))


def _duration(flag_name: str, value: str) -> int:
    if value == "":
        return 0
    try:
        ns = parse_go_duration(value)
    except ValueError as e:
        raise _Invalid(str(e)) from None
    if ns == 0:
        return 0
    if ns < 1_000_000:
        raise _Invalid(f'Interval "{flag_name}" cannot be less than 1ms')
    return ns


def _healthcheck(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _at_least_one("HEALTHCHECK", args)
    kind, rest = args[0].upper(), args[1:]
    if kind == "NONE":
        if rest:
            raise _Invalid("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(test=["NONE"], **_location(node))
    names = ("interval", "timeout", "start-period", "start-interval", "retries")
    values = {name: flags.add_string(name) for name in names}
    _parse_flags(flags)
    if kind != "CMD":
        raise _Invalid(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    command = _command_line(node, rest)
    if not command:
        raise _Invalid("Missing command after HEALTHCHECK CMD")
    test = ["CMD" if node.json else "CMD-SHELL", *command]
    retries = 0
    if raw := values["retries"].value:
        if not re.fullmatch(r"[+-]?[0-9]+", raw) or abs(int(raw)) >= 1 << 31:
            raise _Invalid(f'strconv.ParseInt: parsing "{raw}": invalid syntax')
        retries = int(raw)
        if retries < 0:
            raise _Invalid(f"--retries cannot be negative ({retries})")
    return Healthcheck(
        test=test, interval=_duration("interval", values["interval"].value),
        timeout=_duration("timeout", values["timeout"].value),
        start_period=_duration("start-period", values["start-period"].value),
        start_interval=_duration("start-interval", values["start-interval"].value),
        retries=retries, **_location(node))


def _onbuild(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _at_least_one("ONBUILD", args)
    _parse_flags(flags)
    trigger = strip_space(args[0]).upper()
    if trigger == "ONBUILD":
        raise _Invalid("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise _Invalid(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX.sub("", node.original, count=1)
    for doc in node.heredocs:  # the trigger is re-parsed later: carry the heredoc bodies along
        expression += "\n" + doc.content + doc.name
    return Onbuild(expression=expression, trigger=node.child, **_location(node))


def _maintainer(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _exactly_one("MAINTAINER", args)
    _parse_flags(flags)
    return Maintainer(maintainer=args[0], **_location(node))


def _stopsignal(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _exactly_one("STOPSIGNAL", args)  # BuildKit does not check STOPSIGNAL's flags
    return Stopsignal(signal=args[0], **_location(node))


def _user(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _exactly_one("USER", args)
    _parse_flags(flags)
    return User(user=args[0], **_location(node))


def _workdir(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _exactly_one("WORKDIR", args)
    _parse_flags(flags)
    return Workdir(path=args[0], **_location(node))


def _env(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _parse_flags(flags)
    return Env(pairs=_pairs("ENV", args), **_location(node))


def _label(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _parse_flags(flags)
    return Label(pairs=_pairs("LABEL", args), **_location(node))


def _expose(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _at_least_one("EXPOSE", args)
    _parse_flags(flags)
    return Expose(ports=sorted(args), **_location(node))


def _volume(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _at_least_one("VOLUME", args)
    _parse_flags(flags)
    paths = [strip_space(a) for a in args]
    if any(p == "" for p in paths):
        raise _Invalid("VOLUME specified can not be an empty string")
    return Volume(paths=paths, **_location(node))


def _arg(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _at_least_one("ARG", args)
    definitions = []
    for word in args:
        key, has_value, value = word.partition("=")
        if has_value and not key:
            raise _Invalid("ARG names can not be blank")
        definitions.append(ArgDefinition(key, value if has_value else None))
    return Arg(args=definitions, **_location(node))


def _shell(node: Node, args: list[str], flags: FlagSet) -> Instruction:
    _parse_flags(flags)
    if not args:
        raise _Invalid("SHELL requires at least one argument")
    if not node.json:
        raise _Invalid("SHELL requires the arguments to be in JSON form")
    return Shell(shell=args, **_location(node))


_BUILDERS: dict[str, Callable[[Node, list[str], FlagSet], Instruction]] = {
    "add": _add,
    "arg": _arg,
    "cmd": _cmd,
    "copy": _copy,
    "entrypoint": _entrypoint,
    "env": _env,
    "expose": _expose,
    "from": _from,
    "healthcheck": _healthcheck,
    "label": _label,
    "maintainer": _maintainer,
    "onbuild": _onbuild,
    "run": _run,
    "shell": _shell,
    "stopsignal": _stopsignal,
    "user": _user,
    "volume": _volume,
    "workdir": _workdir,
}


def to_instruction(node: Node, *, path: str = "Dockerfile") -> Instruction:
    """The typed record of one parsed instruction; DockerfileError names the line on failure."""
    builder = _BUILDERS.get(node.name)
    try:
        if builder is None:
            options = [name.upper() for name in KNOWN_INSTRUCTIONS]
            raise _Invalid(with_suggestion(f"unknown instruction: {node.keyword}", node.keyword, options,
                                           case_sensitive=False))
        return builder(node, _args(node), FlagSet(node.flags))
    except _Invalid as e:
        raise DockerfileError(str(e), path=path, line=node.start_line, end_line=node.end_line) from None
