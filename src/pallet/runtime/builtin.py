"""pallet's built-in OCI runtime, as an in-process API for the container monitor (B, the container's
init, is in builtin_init.py).

Process model: create() forks A, which enters or creates the container's namespaces except mount and
cgroup and forks B (pid 1 of the new pid namespace; re-parented to the caller, a child subreaper, when
A exits, so the caller can waitpid() it). A caller that is itself a disposable, single-threaded child
(the monitor's start child) can do A's work itself (`in_caller`), which saves a fork and an exit.

cgroups without the wait: moving a process through cgroup.procs takes the cgroup threadgroup lock, whose
writer waits for an RCU grace period (6-15 ms here, per move). So B is born in its v2 cgroup (clone3
with CLONE_INTO_CGROUP; an ordinary fork plus a move by A when the kernel refuses), and moves itself
into its v1 cgroups by writing "0" to their `tasks` files (only the writer's thread moves, which skips
that lock; B is single-threaded). A creates the cgroup directories and writes the limits while B is
already building its rootfs, then writes "j" on the join pipe; B joins its v1 cgroups once it has read
that, through descriptors on the hierarchies it opened before pivot_root.

B unshares the mount namespace, mounts (a `cgroup` mount that binds the host's cgroup dirs first waits
for "j"), pivots, opens its console if it has a terminal (a pty in its own devpts, as runc does it:
the master goes back to the caller over a socket pair), masks paths, sets hostname and rlimits; then
it waits for "j" if it has not yet, joins its v1 cgroups, unshares the cgroup namespace (whose root
must be the container's cgroup), mounts /sys/fs/cgroup if namespaced, drops privileges, installs
seccomp and waits on the start pipe; start() releases it to exec.

A and B report to the caller over one pipe, a line per message: "pid N", "warn TEXT", "ok" or
"err TEXT (errno N)". The first "err" wins and create() raises it as RuntimeError.

This module is on the hot path of `pallet run`: it imports only what it needs. The seccomp program is
compiled (or taken from its cache) by A once B runs, and handed to B over a pipe that B reads only when
it installs it: B never loads libseccomp, and the work is off B's path.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from pallet.runtime import cgroups, linux, mounts, process
from pallet.runtime.builtin_init import describe, enter_namespaces, fail, report, run_init

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from typing import Any, NoReturn

_NOT_READY = "container init exited before it was ready"


class Created:
    """A container set up to the point of exec. (A plain class: a dataclass costs ~5 ms of imports.)"""

    __slots__ = ("pid", "start_fd", "warnings", "master")

    def __init__(self, pid: int, start_fd: int, warnings: list[str] | None = None, master: int = -1) -> None:
        self.pid = pid  # host pid of the container's init process (blocked before exec until start())
        self.start_fd = start_fd  # write end of the start pipe
        self.warnings: list[str] = warnings if warnings is not None else []
        self.master = master  # the console's pty master (the caller's to close), -1 without one


class Plan:
    """Everything the children need, prepared by the caller before fork."""

    __slots__ = ("spec", "bundle", "cgroup", "stdio", "console", "seccomp_r", "seccomp_w")

    def __init__(
        self,
        spec: Mapping[str, Any],
        bundle: str,
        cgroup: mounts.CgroupView,
        stdio: tuple[int | None, int, int],
    ) -> None:
        self.spec = spec
        self.bundle = bundle
        self.cgroup = cgroup
        self.stdio = stdio
        self.console: socket.socket | None = None  # B's end of the pair it sends its pty master over
        # A writes "FLAGS\n" and the compiled BPF program, then closes; -1 without a seccomp section.
        self.seccomp_r = self.seccomp_w = -1


def _load_spec(bundle: str) -> dict[str, Any]:
    with open(os.path.join(bundle, "config.json"), "rb") as f:
        spec: dict[str, Any] = json.loads(f.read())
    return spec


def _cgroups_path(spec: Mapping[str, Any], container_id: str) -> str:
    path: str = (spec.get("linux") or {}).get("cgroupsPath") or f"pallet/{container_id}"
    return path


def create(
    bundle: Path | str,
    container_id: str,
    *,
    stdin: int | None = None,
    stdout: int = 1,
    stderr: int = 2,
    terminal: bool = False,
    in_caller: bool = False,
    meanwhile: Callable[[], object] | None = None,
) -> Created:
    """Set the container up to the point of exec; raises RuntimeError with the init's message on failure.

    `stdin` None gives the container /dev/null. `terminal`: as runc does it, the init opens a pty in the
    container's own devpts (its slave is then /dev/pts/N inside), binds the slave over /dev/console and
    makes it its controlling terminal and stdio (the stdio arguments are then ignored); the master comes
    back as Created.master.

    `in_caller`: do A's work in the calling process, which must be single-threaded and about to exit: it
    stays in the container's net, uts and ipc namespaces, and its later children would land in the
    container's pid namespace. `meanwhile` runs while the container's init sets itself up; if it raises,
    the container is taken down and its exception propagates.
    """
    bundle = os.path.abspath(os.fspath(bundle))
    spec = _load_spec(bundle)
    lx = spec.get("linux") or {}
    cpath = _cgroups_path(spec, container_id)
    namespaced = any(ns.get("type") == "cgroup" and not ns.get("path") for ns in lx.get("namespaces") or [])
    view = mounts.CgroupView(cgroups.hierarchies(), cgroups.comount_links(), cpath, namespaced)
    plan = Plan(spec, bundle, view, (stdin, stdout, stderr))
    ours = None  # our end of plan.console
    if terminal:
        from pallet.runtime import console  # B needs it after pivot_root: loaded here, before the fork

        ours, plan.console = console.init_pair()
    sync_r, sync_w = process.pipe_above_stdio()
    start_r, start_w = process.pipe_above_stdio()
    if lx.get("seccomp"):
        plan.seccomp_r, plan.seccomp_w = process.pipe_above_stdio()
    pid_a = 0
    own: list[str] = []  # A's reports when A's work runs here
    if in_caller:
        _stage_a(plan, sync_w, start_r, lambda kind, text="": own.append(f"{kind} {text}"))
    else:
        linux.set_child_subreaper()  # so that B, orphaned when A exits, becomes our child
        pid_a = os.fork()
        if pid_a == 0:
            os.close(sync_r)
            os.close(start_w)
            _stage_a_process(plan, sync_w, start_r)
        for fd in (plan.seccomp_r, plan.seccomp_w):
            if fd >= 0:
                os.close(fd)
    if plan.console is not None:
        plan.console.close()
    os.close(sync_w)
    os.close(start_r)
    failed: BaseException | None = None
    if meanwhile is not None:
        try:
            meanwhile()
        except BaseException as e:  # noqa: BLE001 - re-raised below, once the container is down
            failed = e
    pid_b, warnings, error = _read_reports(sync_r, own)
    if pid_a:
        _reap(pid_a)
    master = console.receive_from_init(ours) if ours is not None else -1
    if ours is not None and master < 0 and error is None:
        error = "console: the container's init sent no terminal"
    if error is not None or failed is not None:
        if master >= 0:
            os.close(master)
        os.close(start_w)
        if pid_b:
            process.kill_and_reap(pid_b)
        try:
            cgroups.remove(cpath, list(view.hierarchies))
        except OSError:
            pass
        if failed is not None:
            raise failed
        raise RuntimeError(error)
    for w in warnings:
        sys.stderr.write(f"pallet: warning: {w}\n")
    return Created(pid_b, start_w, warnings, master)


def start(c: Created) -> None:
    """Let the container's init exec the user process."""
    try:
        os.write(c.start_fd, b"s")
    finally:
        os.close(c.start_fd)


def kill(pid: int, sig: int) -> None:
    os.kill(pid, sig)


def delete(bundle: Path | str, container_id: str) -> None:
    """Remove the container's cgroups (killing anything still in them)."""
    try:
        spec = _load_spec(os.fspath(bundle))
    except FileNotFoundError:
        spec = {}
    cgroups.remove(_cgroups_path(spec, container_id))


def _read_reports(fd: int, own: Sequence[str]) -> tuple[int, list[str], str | None]:
    # Read to EOF: that comes once A has exited and B has either closed its end after "ok" or died, so
    # we always learn B's pid (A's "pid" line may arrive after B's "ok") and never leave B unreaped.
    data = process.read_to_eof(fd)
    pid = 0
    warnings: list[str] = []
    ok = False
    error: str | None = None
    for line in [*own, *data.decode(errors="replace").splitlines()]:
        kind, _, text = line.partition(" ")
        text = text.rstrip()
        if kind == "pid":
            pid = int(text)
        elif kind == "warn":
            warnings.append(text)
        elif kind == "ok":
            ok = True
        elif kind == "err" and error is None:
            error = text
    if error is None and not ok:
        error = _NOT_READY
    return pid, warnings, error


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


# --- A's work: in the forked A, or in the caller ---------------------------------------------------------


def _stage_a_process(plan: Plan, sync_w: int, start_r: int) -> NoReturn:
    try:
        process.reset_signals()
        linux.set_pdeathsig(signal.SIGKILL)  # the caller died mid-create: don't leave half a container
    except BaseException as e:  # noqa: BLE001 - everything must become a report, then _exit
        fail(sync_w, "namespaces", e)
    _stage_a(plan, sync_w, start_r, lambda kind, text="": report(sync_w, kind, text))
    os._exit(0)


def _stage_a(plan: Plan, sync_w: int, start_r: int, report: Callable[..., None]) -> None:
    """Enter the namespaces, fork B, prepare its cgroups. Never raises: a failure becomes an "err" report
    (and closing the join pipe unblocks B, which then gives up)."""
    lx = plan.spec.get("linux") or {}
    view = plan.cgroup
    join_w = -1
    stage = "namespaces"
    try:
        # A keeps the host's mount namespace (it writes to the host's cgroupfs while B pivots) and
        # its cgroup namespace (B unshares that once it is in its cgroup): B does those two itself.
        enter_namespaces(lx.get("namespaces") or [], skip=("mount", "cgroup"))
        stage = "cgroups"
        hs = list(view.hierarchies)
        unified = cgroups.is_unified(hs)
        warnings: list[str] = []
        v2 = next((h for h in hs if h.version == 2), None)
        v2_path, v2_fd = "", -1
        if v2 is not None:
            v2_path = cgroups.make_dir(v2, view.cgroups_path, unified, warnings)
            v2_fd = os.open(v2_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        stage = "fork"
        join_r, join_w = process.pipe_above_stdio()
        try:
            pid, born_in_v2 = linux.fork_in_cgroup(v2_fd)
            if pid == 0:
                run_init(plan, sync_w, start_r, join_r)
        finally:
            if v2_fd >= 0:
                os.close(v2_fd)
            os.close(join_r)
            if plan.seccomp_r >= 0:
                os.close(plan.seccomp_r)  # B's end (B has its own copy of the plan)
                plan.seccomp_r = -1
        report("pid", str(pid))
        stage = "cgroups"
        for h in hs:
            path = v2_path if h is v2 else cgroups.make_dir(h, view.cgroups_path, unified, warnings)
            warnings += cgroups.apply(h, path, lx.get("resources"), unified)
        for w in warnings:
            report("warn", w)
        try:
            if v2 is not None and not born_in_v2:
                cgroups.move(v2_path, pid)
            os.write(join_w, b"j")
            if plan.seccomp_w >= 0:
                _send_seccomp(lx["seccomp"], plan.seccomp_w, report)
        except (BrokenPipeError, ProcessLookupError):
            pass  # B has died: its own report (or its silence, which says as much) tells why
    except BaseException as e:  # noqa: BLE001 - everything must become a report
        report("err", describe(stage, e))
    finally:
        for fd in (join_w, plan.seccomp_r, plan.seccomp_w):
            if fd >= 0:
                os.close(fd)


def _send_seccomp(section: Mapping[str, Any], fd: int, report: Callable[..., None]) -> None:
    """Compile (or fetch from the cache) B's seccomp program and write it to B's pipe; a failure is
    reported (and the pipe's end without a program stops B). process.receive_seccomp is B's end."""
    from pallet.runtime import seccomp

    try:
        prog = seccomp.program(section)
        flags = seccomp.filter_flags(section)
    except (OSError, ValueError, KeyError) as e:
        report("err", f"seccomp: {e}")
        return
    data = b"%d\n" % flags + prog
    while data:
        data = data[os.write(fd, data) :]
