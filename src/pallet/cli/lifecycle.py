"""Lifecycle commands: start, stop, kill, restart, wait, pause, unpause, rename, update, rm,
container prune. Output and errors as docker's CLI prints them: the container names as given,
one error line each ("Error response from daemon: X" is our "Error: X"), exit 1 if any failed."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from pallet.cli.args import Parser, confirm, out, requires
from pallet.engine.core import Engine
from pallet.errors import InvalidArgument, PalletError

_USAGE = "[OPTIONS] CONTAINER [CONTAINER...]"


def _each(refs: list[str], fn: Callable[[Engine, str], object], parallel: bool = True) -> int:
    """Run fn for every container (in parallel, each with its own engine, as docker's CLI does
    for stop/kill/pause), then print the names that worked and the errors, in the given order."""
    errors: list[PalletError | None] = [None] * len(refs)

    def work(i: int, ref: str) -> None:
        try:
            fn(Engine(), ref)
        except PalletError as e:
            errors[i] = e

    if parallel and len(refs) > 1:
        threads = [threading.Thread(target=work, args=(i, ref)) for i, ref in enumerate(refs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i, ref in enumerate(refs):
            work(i, ref)
    for ref, err in zip(refs, errors, strict=True):
        if err is None:
            out(ref + "\n")
        else:
            sys.stderr.write(f"Error: {err}\n")
    sys.stdout.flush()
    return 1 if any(errors) else 0


def start(prog: str, args: list[str]) -> int:
    p = Parser(prog, _USAGE)
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    requires(ns.containers, prog, _USAGE)
    from pallet.engine import lifecycle

    if ns.attach or ns.interactive:
        if len(ns.containers) > 1:
            raise PalletError("you cannot start and attach multiple containers at once")
        from pallet.cli.attach import attached_start
        from pallet.engine.containers import lookup

        engine = Engine()
        rec = lookup(engine, ns.containers[0])
        stdin = ns.interactive and bool(rec.config["Config"].get("OpenStdin"))
        return attached_start(engine, rec.id, stdin=stdin, sig_proxy=True, detach_keys=ns.detach_keys)
    engine = Engine()
    failed = []
    for ref in ns.containers:
        try:
            lifecycle.start(engine, ref)
            out(ref + "\n")
        except PalletError as e:
            sys.stderr.write(f"Error: {e}\n")
            failed.append(ref)
    if failed:
        sys.stdout.flush()
        raise PalletError(f"failed to start containers: {', '.join(failed)}")
    return 0


def _stop_flags(p: Parser) -> None:
    p.add_argument("-s", "--signal")
    p.add_argument("-t", "--time", "--timeout", dest="time")
    p.add_argument("containers", nargs="*")


def _timeout(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(
            f'invalid argument "{value}" for "-t, --time" flag: '
            f'strconv.ParseInt: parsing "{value}": invalid syntax'
        ) from None


def stop(prog: str, args: list[str]) -> int:
    p = Parser(prog, _USAGE)
    _stop_flags(p)
    ns = p.parse(args)
    requires(ns.containers, prog, _USAGE)
    from pallet.engine import lifecycle

    timeout = _timeout(ns.time)
    return _each(ns.containers, lambda e, ref: lifecycle.stop(e, ref, sig=ns.signal, timeout=timeout))


def restart(prog: str, args: list[str]) -> int:
    p = Parser(prog, _USAGE)
    _stop_flags(p)
    ns = p.parse(args)
    requires(ns.containers, prog, _USAGE)
    from pallet.engine import lifecycle

    timeout = _timeout(ns.time)
    return _each(
        ns.containers,
        lambda e, ref: lifecycle.restart(e, ref, sig=ns.signal, timeout=timeout),
        parallel=False,
    )


def kill(prog: str, args: list[str]) -> int:
    p = Parser(prog, _USAGE)
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    requires(ns.containers, prog, _USAGE)
    from pallet.engine import lifecycle

    lifecycle.parse_signal(ns.signal)  # a bad signal is one error, before touching any container
    return _each(ns.containers, lambda e, ref: lifecycle.kill(e, ref, ns.signal))


def wait(prog: str, args: list[str]) -> int:
    p = Parser(prog, "CONTAINER [CONTAINER...]")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    requires(ns.containers, prog, "CONTAINER [CONTAINER...]")
    from pallet.engine import lifecycle
    from pallet.engine.containers import lookup

    engine = Engine()
    code = 0
    for ref in ns.containers:
        try:
            rec = lookup(engine, ref)
            state = lifecycle.wait_exit(engine, rec.id)
            out(f"{int(state.get('ExitCode') or 0)}\n")
            sys.stdout.flush()
        except PalletError as e:
            sys.stderr.write(f"Error: {e}\n")
            code = 1
    return code


def pause(prog: str, args: list[str]) -> int:
    p = Parser(prog, "CONTAINER [CONTAINER...]")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    requires(ns.containers, prog, "CONTAINER [CONTAINER...]")
    from pallet.engine import pause as freezer

    return _each(ns.containers, freezer.pause)


def unpause(prog: str, args: list[str]) -> int:
    p = Parser(prog, "CONTAINER [CONTAINER...]")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    requires(ns.containers, prog, "CONTAINER [CONTAINER...]")
    from pallet.engine import pause as freezer

    return _each(ns.containers, freezer.unpause)


def rename(prog: str, args: list[str]) -> int:
    p = Parser(prog, "CONTAINER NEW_NAME")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    if len(ns.names) != 2:
        raise InvalidArgument(
            f"\"{prog}\" requires exactly 2 arguments.\nSee '{prog} --help'.\n\n"
            f"Usage:  {prog} CONTAINER NEW_NAME"
        )
    from pallet.engine import lifecycle

    try:
        lifecycle.rename(Engine(), ns.names[0], ns.names[1])
    except PalletError as e:
        e.exit_code = 1
        raise
    return 0


def update(prog: str, args: list[str]) -> int:
    p = Parser(prog, _USAGE)
    for flag in ("--cpu-period", "--cpu-quota", "--cpuset-cpus", "--cpuset-mems", "--memory-reservation",
                 "--memory-swap", "--restart", "--pids-limit", "--cpus"):  # fmt: skip
        p.add_argument(flag)
    p.add_argument("-c", "--cpu-shares")
    p.add_argument("-m", "--memory")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    requires(ns.containers, prog, _USAGE)
    given = {k: v for k, v in vars(ns).items() if k != "containers" and k != "help" and v is not None}
    if not given:
        raise PalletError("you must provide one or more flags when using this command")
    from pallet.cli import run_opts as o
    from pallet.engine import update as updates
    from pallet.runtime import restart

    changes = {
        "Memory": o.mem_bytes("--memory", ns.memory),
        "MemorySwap": o.mem_swap_bytes("--memory-swap", ns.memory_swap),
        "MemoryReservation": o.mem_bytes("--memory-reservation", ns.memory_reservation),
        "NanoCpus": o.nano_cpus("--cpus", ns.cpus),
        "CpuShares": o.int_flag("--cpu-shares", ns.cpu_shares),
        "CpuQuota": o.int_flag("--cpu-quota", ns.cpu_quota),
        "CpuPeriod": o.int_flag("--cpu-period", ns.cpu_period),
        "CpusetCpus": ns.cpuset_cpus or "",
        "CpusetMems": ns.cpuset_mems or "",
        "PidsLimit": None if not o.int_flag("--pids-limit", ns.pids_limit) else int(ns.pids_limit),
    }
    policy = None
    if ns.restart:
        try:
            policy = restart.parse(ns.restart)
        except ValueError as e:
            raise PalletError(str(e)) from None
    warnings: list[str] = []
    code = _each(
        ns.containers,
        lambda e, ref: warnings.extend(updates.update(e, ref, changes, policy)),
        parallel=False,
    )
    if warnings:
        out("\n".join(warnings) + "\n")
    return code


def rm(prog: str, args: list[str]) -> int:
    p = Parser(prog, _USAGE)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("-l", "--link", action="store_true")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    requires(ns.containers, prog, _USAGE)
    from pallet.engine import lifecycle

    return _each(ns.containers, lambda e, ref: lifecycle.remove(e, ref, force=ns.force, volumes=ns.volumes))


def container_prune(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    ns = p.parse(args)
    import time

    from pallet.cli.units import human_size
    from pallet.engine import filters
    from pallet.engine.prune import prune_containers

    try:
        parsed = filters.parse_filters(ns.filter, {"until", "label", "label!"})
        until = [filters.parse_timestamp(v, time.time()) for v in parsed.get("until", [])]
    except filters.FilterError as e:
        raise InvalidArgument(str(e)) from None
    if len(until) > 1:
        raise InvalidArgument("more than one until filter specified")
    if not ns.force and not confirm("WARNING! This will remove all stopped containers."):
        return 0
    label_filters = {k: v for k, v in parsed.items() if k in ("label", "label!")}
    deleted, reclaimed = prune_containers(
        Engine(),
        until=until[0] if until else None,
        labels_match=(lambda labels: filters.match_labels(labels, label_filters)) if label_filters else None,
    )
    if deleted:
        out("Deleted Containers:\n" + "".join(f"{cid}\n" for cid in deleted) + "\n")
    out(f"Total reclaimed space: {human_size(reclaimed if deleted else 0)}\n")
    return 0
