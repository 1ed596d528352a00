"""Container filesystem commands: cp, diff, commit, export."""

from __future__ import annotations

import os
import sys

from pallet.cli.args import Parser, out, requires
from pallet.engine.core import Engine
from pallet.errors import InvalidArgument, PalletError

CP_USAGE = "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tpallet cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"


def _split_cp_arg(arg: str) -> tuple[str, str]:
    """docker's splitCpArg: `/abs` and `./rel:x` are local; otherwise `CONTAINER:PATH`."""
    if arg.startswith("/"):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith("."):
        return "", arg
    return container, path


def cp(prog: str, args: list[str]) -> int:
    p = Parser(prog, CP_USAGE)
    p.add_argument("-a", "--archive", action="store_true")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("paths", nargs="*")
    ns = p.parse(args)
    if len(ns.paths) != 2:
        raise InvalidArgument(
            f"\"{prog}\" requires exactly 2 arguments.\nSee '{prog} --help'.\n\nUsage:  {prog} {CP_USAGE}"
        )
    source, destination = ns.paths
    if not source:
        raise PalletError("source can not be empty")
    if not destination:
        raise PalletError("destination can not be empty")
    src_ctr, src_path = _split_cp_arg(source)
    dst_ctr, dst_path = _split_cp_arg(destination)
    if src_ctr and dst_ctr:
        raise PalletError("copying between containers is not supported")
    if not src_ctr and not dst_ctr:
        raise PalletError("must specify at least one container source")
    from pallet.engine import files

    engine = Engine()
    if src_ctr:
        if dst_path == "-":
            files.copy_out(engine, src_ctr, src_path, sys.stdout.buffer, follow_link=ns.follow_link)
            sys.stdout.buffer.flush()
            return 0
        copied = files.copy_out(
            engine, src_ctr, src_path, dst_path, follow_link=ns.follow_link, archive=ns.archive
        )
        shown = os.path.abspath(dst_path)
    else:
        stream = sys.stdin.buffer if src_path == "-" else None
        copied = files.copy_in(
            engine, dst_ctr, stream or src_path, dst_path, follow_link=ns.follow_link, archive=ns.archive
        )
        shown = destination
    if not ns.quiet and sys.stderr.isatty():
        from pallet.cli.units import human_size

        sys.stderr.write(f"Successfully copied {human_size(copied)} to {shown}\n")
    return 0


def diff(prog: str, args: list[str]) -> int:
    p = Parser(prog, "CONTAINER")
    p.add_argument("container", nargs="?")
    ns = p.parse(args)
    requires([ns.container] if ns.container else [], prog, "CONTAINER")
    from pallet.engine import files

    out("".join(f"{c.kind} {c.path}\n" for c in files.diff(Engine(), ns.container)))
    return 0


def _bool_flag(args: list[str], names: tuple[str, ...], default: bool) -> tuple[bool, list[str]]:
    """A boolean flag that defaults to true, as docker's: `-p`, `--pause=false` (never a separate
    value word: `-p false` would eat the container name)."""
    value = default
    rest = []
    for i, arg in enumerate(args):
        if arg == "--":
            rest += args[i:]
            break
        name, eq, text = arg.partition("=")
        if name in names:
            if not eq or text.lower() in ("1", "t", "true"):
                value = True
            elif text.lower() in ("0", "f", "false"):
                value = False
            else:
                raise InvalidArgument(
                    f'invalid argument "{text}" for "{name}" flag: strconv.ParseBool: '
                    f'parsing "{text}": invalid syntax'
                )
            continue
        rest.append(arg)
    return value, rest


def commit(prog: str, args: list[str]) -> int:
    pause, args = _bool_flag(args, ("-p", "--pause"), True)
    p = Parser(prog, "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]")
    p.add_argument("-a", "--author", default="")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")
    p.add_argument("container", nargs="?")
    p.add_argument("reference", nargs="?")
    ns = p.parse(args)
    requires([ns.container] if ns.container else [], prog, "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]")
    from pallet.engine import files

    image_id = files.commit(
        Engine(),
        ns.container,
        reference=ns.reference,
        changes=ns.change,
        message=ns.message,
        author=ns.author,
        pause=pause,
    )
    out(image_id + "\n")
    return 0


def export(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] CONTAINER")
    p.add_argument("-o", "--output")
    p.add_argument("container", nargs="?")
    ns = p.parse(args)
    requires([ns.container] if ns.container else [], prog, "[OPTIONS] CONTAINER")
    from pallet.engine import files

    engine = Engine()
    if not ns.output:
        if sys.stdout.isatty():
            raise PalletError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        files.export(engine, ns.container, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    _export_to_file(engine, ns.container, ns.output)
    return 0


def _export_to_file(engine: Engine, container: str, path: str) -> None:
    """Write beside the destination and rename: a failed export never leaves half a tar."""
    import tempfile

    from pallet.engine import files

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise PalletError(
            f'failed to export container: invalid output path: directory "{directory}" does not exist'
        )
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as f:
            files.export(engine, container, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
