"""`build` and `builder prune`, with docker's (BuildKit's) flags, output and exit codes.

`build` prints the progress to stderr (plain lines, a live view on a terminal, nothing with -q) and,
with -q, the image ID to stdout. A failed build prints BuildKit's summary and
`ERROR: failed to solve: <cause>`, and exits 1. SIGTERM is handled like Ctrl-C: the running steps
are killed and everything they mounted or made is cleaned up before pallet exits.
"""

from __future__ import annotations

import os
import sys

from pallet.cli.args import Parser, out, requires
from pallet.errors import InvalidArgument, PalletError

_PROGRESS = ("auto", "plain", "tty", "quiet")


def _key_values(values: list[str], what: str, *, from_env: bool) -> dict[str, str]:
    out_: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what}: {item!r}")
        if eq:
            out_[key] = value
        elif from_env:
            if key in os.environ:  # `--build-arg NAME` takes NAME from the environment, if set
                out_[key] = os.environ[key]
        else:
            out_[key] = ""
    return out_


def _secrets(specs: list[str]) -> dict[str, bytes]:
    """`--secret id=x,src=FILE` | `id=x,env=VAR` | `id=x` (the variable x, else the file x)."""
    found: dict[str, bytes] = {}
    for spec in specs:
        fields = dict(f.partition("=")[::2] for f in spec.split(","))
        ident = fields.get("id", "")
        src = fields.get("src") or fields.get("source") or ""
        env = fields.get("env", "")
        kind = fields.get("type", "")
        if not ident:
            raise InvalidArgument(f"invalid secret {spec!r}: an id is required")
        if kind == "env" and not env:
            env = src or ident
            src = ""
        if env or (not src and ident in os.environ):
            name = env or ident
            if name not in os.environ:
                raise InvalidArgument(f"secret {ident}: environment variable {name} is not set")
            found[ident] = os.environ[name].encode()
            continue
        path = src or ident
        try:
            with open(path, "rb") as f:
                found[ident] = f.read()
        except OSError as e:
            raise InvalidArgument(f"failed to read secret {ident} from {path}: {e.strerror or e}") from None
    return found


def _interrupt_on_signals() -> None:
    """SIGINT and SIGTERM both stop the build cleanly, even when started with SIGINT ignored (as a
    shell's background job is)."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def build(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] PATH | URL | -", "Build an image from a Dockerfile")
    p.add_argument("-t", "--tag", action="append", default=[])
    p.add_argument("--build-arg", action="append", default=[])
    p.add_argument("--target")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--iidfile")
    p.add_argument("--secret", action="append", default=[])
    p.add_argument("--progress", default="auto")
    p.add_argument("--network", default="default")
    p.add_argument("--cache-from", action="append", default=[])
    p.add_argument("-f", "--file")
    p.add_argument("--platform")
    p.add_argument("--pull", action="store_true")  # accepted: base images come from the local store
    p.add_argument("--rm", nargs="?", const="true", default="true")  # classic builder flags, no-ops here
    p.add_argument("--force-rm", action="store_true")
    p.add_argument("context", nargs="*")
    ns = p.parse(args)
    if len(ns.context) != 1:
        requires(ns.context, prog, "[OPTIONS] PATH | URL | -", at_least=1)
        raise InvalidArgument(f'"{prog}" requires exactly 1 argument.\nSee \'{prog} --help\'.')
    if ns.progress not in _PROGRESS:
        raise InvalidArgument(f'invalid progress mode "{ns.progress}": expected auto, plain, tty or quiet')
    if ns.network not in ("default", "none", "host"):
        raise InvalidArgument(f'network mode "{ns.network}" not supported by pallet build '
                              "(default, none or host)")
    if "://" in ns.context[0]:
        raise InvalidArgument("building from a URL is not supported: give a directory or - (a tar on stdin)")
    from pallet.engine.build import BuildFailed, BuildOptions, replay
    from pallet.engine.build import build as build_image
    from pallet.state.paths import StatePaths

    options = BuildOptions(
        context=ns.context[0], dockerfile=ns.file, tags=ns.tag,
        build_args=_key_values(ns.build_arg, "build-arg", from_env=True), target=ns.target,
        labels=_key_values(ns.label, "label", from_env=False), no_cache=ns.no_cache,
        quiet=ns.quiet or ns.progress == "quiet", iidfile=ns.iidfile, secrets=_secrets(ns.secret),
        progress="plain" if ns.progress == "quiet" else ns.progress, network=ns.network,
        cache_from=ns.cache_from, platform=ns.platform)
    _interrupt_on_signals()
    try:
        image_id = replay(StatePaths.resolve(), options)  # an unchanged rebuild: no engine, no parser
        if image_id is None:
            from pallet.engine.core import Engine

            options.memo = False
            image_id = build_image(Engine(), options)
    except BuildFailed as e:
        sys.stderr.write(f"ERROR: failed to solve: {e}\n")
        return 1
    except PalletError as e:
        sys.stderr.write(f"ERROR: {e}\n")
        return 1
    except KeyboardInterrupt:  # the steps were killed and cleaned up on the way out
        sys.stderr.write("ERROR: failed to solve: Canceled: context canceled\n")
        return 130
    if options.quiet:
        out(image_id + "\n")
    return 0


def builder_prune(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]", "Remove build cache")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--keep-storage", default="0")
    ns = p.parse(args)
    import time

    from pallet.cli.units import human_size
    from pallet.engine.filters import FilterError, parse_filters, parse_timestamp
    from pallet.gounits import ram_in_bytes

    try:
        filters = parse_filters(ns.filter, {"until", "unused-for", "id", "type"})
        until_values = filters.get("until", []) + filters.get("unused-for", [])
        until = parse_timestamp(until_values[-1], time.time()) if until_values else None
    except FilterError as e:
        raise InvalidArgument(str(e)) from None
    try:
        keep = ram_in_bytes(ns.keep_storage)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
    if not ns.force:
        what = "all build cache" if ns.all else "all dangling build cache"
        sys.stdout.write(f"WARNING! This will remove {what}. Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    from pallet.engine import build_cache
    from pallet.engine.core import Engine

    deleted, reclaimed = build_cache.prune(Engine(), all_records=ns.all, until=until, keep_storage=keep)
    if deleted:
        out("Deleted build cache objects:\n" + "".join(f"{d}\n" for d in deleted) + "\n")
    out(f"Total reclaimed space: {human_size(reclaimed)}\n")
    return 0
