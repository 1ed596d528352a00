"""pallet's built-in OCI runtime, as an in-process API for the container monitor.

Process model: the caller (the monitor) becomes a child subreaper. create() forks A, which enters or
creates the container's namespaces except mount and cgroup, forks B (pid 1 of the new pid namespace;
re-parented to the caller when A exits, so the caller can waitpid() it), and then moves B into the
container's cgroups while B is already building its rootfs: on cgroup v1 the first move costs an RCU
grace period (~10 ms), which this hides. A stays in the host's mount namespace for those cgroupfs writes.
B unshares the mount namespace, mounts, pivots, masks paths, sets hostname and rlimits; then it waits for
A's "joined", unshares the cgroup namespace (whose root must be the container's cgroup), mounts
/sys/fs/cgroup, drops privileges, installs seccomp and waits on the start pipe; start() releases it to
exec.

A and B report to the caller over one pipe, a line per message: "pid N", "warn TEXT", "ok" or
"err TEXT (errno N)". The first "err" wins and create() raises it as RuntimeError.

This module is on the hot path of `pallet run`: it imports only what it needs. The seccomp program is
compiled (or taken from its cache) in the caller, so B never loads libseccomp.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from pallet.runtime import cgroups, linux, mounts, process

_TIOCSCTTY = 0x540E
_TIOCSWINSZ = 0x5414
_NOT_READY = "container init exited before it was ready"


@dataclass
class Created:
    pid: int  # host pid of the container's init process (blocked before exec until start())
    start_fd: int  # write end of the start pipe
    warnings: list[str] = field(default_factory=list)


class _Plan:
    """Everything the children need, prepared by the caller before fork."""

    __slots__ = ("spec", "bundle", "cgroup", "seccomp", "seccomp_flags", "stdio", "console_fd")

    def __init__(
        self,
        spec: Mapping[str, Any],
        bundle: str,
        cgroup: mounts.CgroupView,
        seccomp: bytes | None,
        seccomp_flags: int,
        stdio: tuple[int | None, int, int],
        console_fd: int | None,
    ) -> None:
        self.spec = spec
        self.bundle = bundle
        self.cgroup = cgroup
        self.seccomp = seccomp  # the compiled BPF program
        self.seccomp_flags = seccomp_flags
        self.stdio = stdio
        self.console_fd = console_fd


def _load_spec(bundle: Path) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((bundle / "config.json").read_bytes())
    return spec


def _cgroups_path(spec: Mapping[str, Any], container_id: str) -> str:
    path: str = (spec.get("linux") or {}).get("cgroupsPath") or f"pallet/{container_id}"
    return path


def create(
    bundle: Path | str,
    container_id: str,
    *,
    stdin: int | None,
    stdout: int,
    stderr: int,
    console_fd: int | None = None,
) -> Created:
    """Set the container up to the point of exec; raises RuntimeError with the init's message on failure.

    `stdin` None gives the container /dev/null. `console_fd` is a pty slave that becomes the container's
    controlling terminal and stdio (the other stdio arguments are then ignored).
    """
    bundle = Path(bundle).absolute()
    spec = _load_spec(bundle)
    lx = spec.get("linux") or {}
    cpath = _cgroups_path(spec, container_id)
    namespaced = any(ns.get("type") == "cgroup" and not ns.get("path") for ns in lx.get("namespaces") or [])
    view = mounts.CgroupView(cgroups.hierarchies(), cgroups.comount_links(), cpath, namespaced)
    prog, prog_flags = None, 0
    if lx.get("seccomp"):
        from pallet.runtime import seccomp

        try:
            prog = seccomp.program(lx["seccomp"])
            prog_flags = seccomp.filter_flags(lx["seccomp"])
        except (OSError, ValueError, KeyError) as e:
            raise RuntimeError(f"seccomp: {e}") from None
    plan = _Plan(spec, str(bundle), view, prog, prog_flags, (stdin, stdout, stderr), console_fd)

    linux.set_child_subreaper()  # so that B, orphaned when A exits, becomes our child
    sync_r, sync_w = process.pipe_above_stdio()
    start_r, start_w = process.pipe_above_stdio()
    pid_a = os.fork()
    if pid_a == 0:
        os.close(sync_r)
        os.close(start_w)
        _stage_a(plan, sync_w, start_r)
    os.close(sync_w)
    os.close(start_r)
    pid_b, warnings, error = _read_reports(sync_r)
    _reap(pid_a)
    if error is not None:
        os.close(start_w)
        if pid_b:
            _kill_and_reap(pid_b)
        try:
            cgroups.remove(cpath, list(view.hierarchies))
        except OSError:
            pass
        raise RuntimeError(error)
    for w in warnings:
        sys.stderr.write(f"pallet: warning: {w}\n")
    return Created(pid=pid_b, start_fd=start_w, warnings=warnings)


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
        spec = _load_spec(Path(bundle))
    except FileNotFoundError:
        spec = {}
    cgroups.remove(_cgroups_path(spec, container_id))


def _read_reports(fd: int) -> tuple[int, list[str], str | None]:
    # Read to EOF: that comes once A has exited and B has either closed its end after "ok" or died, so
    # we always learn B's pid (A's "pid" line may arrive after B's "ok") and never leave B unreaped.
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    pid = 0
    warnings: list[str] = []
    ok = False
    error: str | None = None
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        kind, _, text = line.partition(" ")
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


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


# --- inside the forked children: never return, never raise ---------------------------------------------


def _report(fd: int, kind: str, text: str = "") -> None:
    os.write(fd, f"{kind} {text}".rstrip().replace("\n", " ").encode()[:4000] + b"\n")


def _fail(fd: int, stage: str, exc: BaseException) -> NoReturn:
    try:
        _report(fd, "err", f"{stage}: {exc} (errno {getattr(exc, 'errno', None) or 0})")
    finally:
        os._exit(1)


def _reset_signals() -> None:
    # The caller's Python handlers must not run in our children; ignored signals must not reach exec.
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _stage_a(plan: _Plan, sync_w: int, start_r: int) -> NoReturn:
    stage = "namespaces"
    try:
        _reset_signals()
        linux.set_pdeathsig(signal.SIGKILL)  # the monitor died mid-create: don't leave half a container
        lx = plan.spec.get("linux") or {}
        # A keeps the host's mount namespace (it writes to the host's cgroupfs while B pivots) and
        # its cgroup namespace (B unshares that once it is in its cgroup): B does those two itself.
        _enter_namespaces(lx.get("namespaces") or [], skip=("mount", "cgroup"))
        stage = "fork"
        join_r, join_w = process.pipe_above_stdio()
        pid = os.fork()
        if pid == 0:
            os.close(join_w)
            _stage_b(plan, sync_w, start_r, join_r)
        os.close(join_r)
        _report(sync_w, "pid", str(pid))
        stage = "cgroups"
        for w in cgroups.setup(
            plan.cgroup.cgroups_path, lx.get("resources"), list(plan.cgroup.hierarchies), pid
        ):
            _report(sync_w, "warn", w)
        os.write(join_w, b"j")
    except BaseException as e:  # noqa: BLE001 - everything must become a report, then _exit
        _fail(sync_w, stage, e)
    os._exit(0)


def _enter_namespaces(namespaces: Sequence[Mapping[str, Any]], skip: Sequence[str]) -> int:
    """setns() into those with a path, unshare() the others; returns the flags of the new ones."""
    flags = 0
    for ns in namespaces:
        kind = ns["type"]
        if kind in skip:
            continue
        if kind == "user":
            raise OSError(errno.EINVAL, "user namespaces are not supported by the built-in runtime")
        if ns.get("path"):
            fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, linux.NAMESPACE_FLAGS[kind])
            finally:
                os.close(fd)
        else:
            flags |= linux.NAMESPACE_FLAGS[kind]
    if flags:
        linux.unshare(flags)
    return flags


def _setup_stdio(stdio: tuple[int | None, int, int], console_fd: int | None, keep: set[int]) -> None:
    os.setsid()
    if console_fd is not None:
        fcntl.ioctl(console_fd, _TIOCSCTTY, 0)
        fds: list[int] = [console_fd] * 3
    else:
        stdin = stdio[0] if stdio[0] is not None else os.open("/dev/null", os.O_RDONLY)
        fds = [stdin, stdio[1], stdio[2]]
    # Move the sources out of 0..2 first so that dup2 can't clobber one we still need.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) if fd < 3 else fd for fd in fds]
    for i, fd in enumerate(high):
        os.dup2(fd, i, inheritable=True)
    # Close everything else the caller had open (its non-CLOEXEC fds would leak into the container).
    lo = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)


def _stage_b(plan: _Plan, sync_w: int, start_r: int, join_r: int) -> NoReturn:
    spec = plan.spec
    proc = spec.get("process") or {}
    lx = spec.get("linux") or {}
    namespaces = lx.get("namespaces") or []
    new_ns = {ns["type"] for ns in namespaces if not ns.get("path")}
    console_fd = plan.console_fd
    joined = False

    def wait_joined() -> None:
        nonlocal joined
        if not joined:
            if os.read(join_r, 1) != b"j":
                raise OSError(errno.ECHILD, "cgroup setup did not complete")
            os.close(join_r)
            joined = True

    stage = "stdio"
    try:
        keep = {sync_w, start_r, join_r} | ({console_fd} if console_fd is not None else set())
        _setup_stdio(plan.stdio, console_fd, keep)
        if console_fd is not None and proc.get("consoleSize"):
            import struct

            size = proc["consoleSize"]
            winsize = struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0)
            fcntl.ioctl(0, _TIOCSWINSZ, winsize)

        stage = "mount namespace"
        _enter_namespaces([ns for ns in namespaces if ns["type"] == "mount"], skip=())
        root_cfg = spec.get("root") or {}
        rootfs = os.path.realpath(os.path.join(plan.bundle, root_cfg.get("path", "rootfs")))
        view = plan.cgroup
        if not view.namespaced:
            wait_joined()  # binding the host's cgroup dirs needs them to exist
        if "mount" in new_ns:
            stage = "rootfs"
            _build_rootfs(plan, rootfs, view)
            stage = "pivot_root"
            mounts.pivot(rootfs)
            if console_fd is not None:
                os.close(console_fd)
            stage = "sysctl"
            mounts.write_sysctls(lx.get("sysctl") or {})
            stage = "masked paths"
            mounts.mask_paths(lx.get("maskedPaths") or [])
            stage = "readonly paths"
            mounts.readonly_paths(lx.get("readonlyPaths") or [])
        else:
            os.chroot(rootfs)  # sharing the host's mount namespace: no pivot_root possible
        stage = "hostname"
        if spec.get("hostname") and "uts" in new_ns:
            linux.sethostname(spec["hostname"])
        if spec.get("domainname") and "uts" in new_ns:
            linux.setdomainname(spec["domainname"])
        stage = "rlimits"
        for w in process.apply_rlimits(proc.get("rlimits") or []):
            _report(sync_w, "warn", w)
        if proc.get("oomScoreAdj") is not None:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(proc["oomScoreAdj"]).encode())
            finally:
                os.close(fd)
        # Only now, with all the rest done, wait for A to have moved us into the container's cgroup.
        stage = "cgroups"
        wait_joined()
        _enter_namespaces([ns for ns in namespaces if ns["type"] == "cgroup"], skip=())
        if "mount" in new_ns:
            if view.namespaced:
                for m in spec.get("mounts") or []:
                    if m.get("type") == "cgroup":
                        mounts.mount_cgroup("/", m, view)
            if root_cfg.get("readonly"):
                mounts.readonly_root()
        user = proc.get("user") or {}
        if user.get("umask") is not None:
            os.umask(int(user["umask"]))
        if proc.get("noNewPrivileges"):
            linux.set_no_new_privs()
        stage = "capabilities"
        for w in process.drop_privileges(proc, user, plan.seccomp, plan.seccomp_flags):
            _report(sync_w, "warn", w)
        stage = "cwd"
        os.chdir(proc.get("cwd") or "/")
        _report(sync_w, "ok")
        os.close(sync_w)
    except BaseException as e:  # noqa: BLE001
        _fail(sync_w, stage, e)
    try:
        go = os.read(start_r, 1)
    except BaseException:  # noqa: BLE001
        os._exit(1)
    if not go:
        os._exit(1)  # the caller went away without start(): never run the user process
    os.close(start_r)
    process.exec_user_process(proc.get("args") or [], proc.get("env") or [])


def _build_rootfs(plan: _Plan, rootfs: str, view: mounts.CgroupView) -> None:
    """Everything done before pivot_root; `cgroup` mounts wait until the cgroup is joined if namespaced."""
    spec = plan.spec
    lx = spec.get("linux") or {}
    prop = {"shared": linux.MS_SHARED, "slave": linux.MS_SLAVE, "unbindable": linux.MS_UNBINDABLE}
    linux.mount(None, "/", None, linux.MS_REC | prop.get(lx.get("rootfsPropagation", ""), linux.MS_PRIVATE))
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
    cgroup = None if view.namespaced else view
    mounts.mount_all(rootfs, spec.get("mounts") or [], bundle=plan.bundle, cgroup=cgroup)
    mounts.create_devices(rootfs, lx.get("devices") or [])
    mounts.dev_symlinks(rootfs, console_fd=plan.console_fd)
    cwd = (spec.get("process") or {}).get("cwd") or "/"
    if not os.path.isdir(mounts.secure_join(rootfs, cwd)):
        mounts.mkdir_all(rootfs, cwd)  # docker creates a missing WORKDIR
