"""Run one more process inside a running container (docker exec), straight from the caller: no
monitor, no runtime binary, no new interpreter. Works for every container that has a pid and an OCI
bundle, whichever runtime (built-in, crun, runc) started it.

Process model: the caller briefly joins the container's pid namespace for its children (setns on
pid_for_children, restored right after) and forks P, which is thus in the container's pid namespace and
the caller's own child (no subreaper, no intermediate process). P enters the other namespaces, moves
itself into the container's cgroups through the host's cgroupfs, joins the cgroup namespace and the mount
namespace last (after it, host paths are gone), sets up stdio, the working directory, rlimits, the user
and the container init's security profile from config.json, and execs.

P moves itself by writing "0" to each v1 hierarchy's `tasks` (P is single-threaded, so that is the
whole process): the kernel then skips the global threadgroup lock, whose first writer waits for an RCU
grace period (6-15 ms here). A v2 cgroup can only be entered through cgroup.procs, which pays it.

P reports failures to the caller over a close-on-exec pipe as "err CODE TEXT"; end of file without a
report means the exec happened. Exit codes as docker's: 127 command not found, 126 cannot run it or
cannot set the process up.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path

from pallet.runtime import linux, process

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any, NoReturn

_TIOCSCTTY = 0x540E
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# setns order inside P (after it has joined the container's cgroups through the host's cgroupfs): the user
# namespace first (it grants the capabilities for the others), mount last (host paths are gone after it).
_NAMESPACE_ORDER = ("user", "ipc", "uts", "net", "time", "cgroup", "mnt")
_NS_FLAGS = {
    "user": linux.CLONE_NEWUSER,
    "ipc": linux.CLONE_NEWIPC,
    "uts": linux.CLONE_NEWUTS,
    "net": linux.CLONE_NEWNET,
    "time": linux.CLONE_NEWTIME,
    "cgroup": linux.CLONE_NEWCGROUP,
    "mnt": linux.CLONE_NEWNS,
}


class ExecError(RuntimeError):
    """The process could not be started; `exit_code` is docker's for the reason (126 or 127)."""

    def __init__(self, message: str, exit_code: int = 126) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ContainerGone(ExecError):
    """The container's init is no longer there to join."""


class _Plan:
    """Everything P needs, prepared by the caller before fork."""

    __slots__ = (
        "args",
        "env",
        "cwd",
        "proc",
        "user",
        "seccomp",
        "seccomp_flags",
        "namespaces",
        "cgroup_files",
        "cgroup_v2_dir",
        "console",
    )

    def __init__(self) -> None:
        self.args: list[str] = []
        self.env: list[str] = []
        self.cwd = "/"
        self.proc: dict[str, Any] = {}
        self.user: dict[str, Any] = {}
        self.seccomp: bytes | None = None
        self.seccomp_flags = 0
        self.namespaces: dict[str, int] = {}  # /proc ns name -> open fd
        self.cgroup_files: list[str] = []  # host paths P writes "0" to, to join the container's cgroups
        self.cgroup_v2_dir: str | None = None  # the container's v2 cgroup, which P is born into
        self.console: int | None = None


def exec_in_container(
    container_pid: int,
    bundle: Path,
    args: list[str],
    *,
    env: list[str] | None = None,
    user: str | None = None,
    cwd: str | None = None,
    stdin: int | None,
    stdout: int,
    stderr: int,
    console_fd: int | None = None,
    privileged: bool = False,
) -> int:
    """Start `args` in the container whose init is `container_pid`; return its (host) pid, a child of
    the caller, which must wait for it. Raises ExecError (ContainerGone when the container is gone).

    `env` is added to the container's environment (later entries win); `user` ("name", "uid[:gid]",
    ...) is resolved through the container's /etc/passwd and /etc/group; `cwd` defaults to the
    container's. `stdin` None gives /dev/null. `console_fd` is a pty slave (exec_console.open_console)
    that becomes the process's controlling terminal and stdio. `privileged` gives every capability in
    the host's bounding set and no seccomp filter.
    """
    bundle = Path(bundle)
    if not args:
        raise ExecError("exec: no command given", 126)
    plan = _prepare(container_pid, bundle, args, env, user, cwd, privileged)
    plan.console = console_fd
    try:
        plan.cgroup_files = _cgroup_join_files(container_pid)
        v2 = [f for f in plan.cgroup_files if f.endswith("/cgroup.procs")]
        plan.cgroup_v2_dir = os.path.dirname(v2[0]) if v2 else None
        pid_ns = _open_ns(container_pid, "pid")
        try:
            return _spawn(plan, pid_ns, (stdin, stdout, stderr))
        finally:
            if pid_ns is not None:
                os.close(pid_ns)
    finally:
        for fd in plan.namespaces.values():
            os.close(fd)


# --- the caller's side --------------------------------------------------------------------------------


def _prepare(
    container_pid: int,
    bundle: Path,
    args: list[str],
    env: list[str] | None,
    user: str | None,
    cwd: str | None,
    privileged: bool,
) -> _Plan:
    try:
        spec: dict[str, Any] = json.loads((bundle / "config.json").read_bytes())
    except (OSError, ValueError) as e:
        raise ExecError(f"cannot read the container's config.json: {e}") from None
    proc = dict(spec.get("process") or {})
    plan = _Plan()
    plan.args = list(args)
    plan.env = process.merge_env(list(proc.get("env") or []), env or [])
    plan.cwd = cwd or proc.get("cwd") or "/"
    plan.user = dict(proc.get("user") or {})
    if user:
        from pallet.errors import PalletError
        from pallet.runtime import users

        rootfs = bundle / ((spec.get("root") or {}).get("path") or "rootfs")
        try:
            resolved = users.resolve(rootfs, user)
        except PalletError as e:
            raise ExecError(str(e), 126) from None
        extra = [g for g in resolved.groups if g != resolved.gid]
        plan.user = {"uid": resolved.uid, "gid": resolved.gid, "additionalGids": [resolved.gid, *extra]}
    seccomp_section = (spec.get("linux") or {}).get("seccomp")
    if privileged:
        names = host_bounding_capabilities()
        proc["capabilities"] = {k: list(names) for k in ("bounding", "effective", "permitted")}
    elif seccomp_section:
        from pallet.runtime import seccomp

        try:
            plan.seccomp = seccomp.program(seccomp_section)
            plan.seccomp_flags = seccomp.filter_flags(seccomp_section)
        except (OSError, ValueError, KeyError) as e:
            raise ExecError(f"seccomp: {e}") from None
    plan.proc = proc
    try:
        for name in _NAMESPACE_ORDER:
            fd = _open_ns(container_pid, name)
            if fd is not None:
                plan.namespaces[name] = fd
    except BaseException:
        for fd in plan.namespaces.values():
            os.close(fd)
        raise
    return plan


def host_bounding_capabilities() -> list[str]:
    """Names of the capabilities in our own bounding set (the most a privileged process may have)."""
    bnd = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                bnd = int(line.split()[1], 16)
                break
    return [name for name, bit in linux.CAPABILITIES.items() if bnd >> bit & 1]


def _open_ns(pid: int, name: str) -> int | None:
    """An fd of the container's namespace `name`, or None when we already share it (or the kernel has
    no such namespace)."""
    try:
        if os.stat(f"/proc/{pid}/ns/{name}").st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
            return None
        return os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}/ns/pid"):
            raise ContainerGone("container is not running") from None
        return None


def _cgroup_join_files(pid: int) -> list[str]:
    """For every cgroup the container's init is in, the host path of the file a process writes "0" to,
    to join it: `tasks` on v1, `cgroup.procs` on v2."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        raise ContainerGone("container is not running") from None
    # A v1 controller lives in exactly one hierarchy: the mount whose options hold all of a line's
    # controllers is that line's. The first mount of a hierarchy wins.
    v1: list[tuple[set[str], str, str]] = []  # (options, mount root, mountpoint)
    v2: tuple[str, str] | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _src, superopts = (right.split() + ["", ""])[:3]
            fields = left.split()
            where = (fields[3], fields[4].replace("\\040", " "))
            if fstype == "cgroup":
                v1.append((set(superopts.split(",")), *where))
            elif fstype == "cgroup2" and v2 is None:
                v2 = where
    files = []
    for line in lines:
        _, key, path = line.split(":", 2)
        found = v2 if not key else next(((r, m) for opts, r, m in v1 if set(key.split(",")) <= opts), None)
        if found is None:
            continue  # a hierarchy this mount namespace can't see: nothing we could join
        root, mountpoint = found
        if root != "/" and path.startswith(root):
            path = path[len(root) :]
        files.append(os.path.join(mountpoint, path.lstrip("/"), "cgroup.procs" if not key else "tasks"))
    return files


def _spawn(plan: _Plan, pid_ns: int | None, stdio: tuple[int | None, int, int]) -> int:
    report_r, report_w = process.pipe_above_stdio()
    own_pid_ns = None
    try:
        if pid_ns is not None:
            own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(pid_ns, linux.CLONE_NEWPID)
            except OSError as e:
                raise ExecError(f"cannot join the container's pid namespace: {e.strerror}") from None
        try:
            pid = _fork_into_cgroup(plan)
        except OSError as e:
            if e.errno == errno.ENOMEM and pid_ns is not None:
                raise ContainerGone("container is not running") from None  # its pid namespace is dying
            raise
        if pid == 0:
            os.close(report_r)
            _child(plan, stdio, report_w)
    finally:
        if own_pid_ns is not None:
            linux.setns(own_pid_ns, linux.CLONE_NEWPID)
            os.close(own_pid_ns)
        os.close(report_w)
    report = process.read_to_eof(report_r)
    if report:
        code, _, text = report.decode(errors="replace").partition(" ")[2].partition(" ")
        process.kill_and_reap(pid)
        raise ExecError(text.strip(), int(code) if code.isdigit() else 126)
    return pid


def _fork_into_cgroup(plan: _Plan) -> int:
    """fork(), with P born in the container's v2 cgroup when it has one: joining it afterwards through
    cgroup.procs waits for an RCU grace period (8-13 ms here), being born there costs nothing. If the
    kernel refuses clone3 (or we have threads), a plain fork and P joins through cgroup.procs."""
    if plan.cgroup_v2_dir is None:
        return os.fork()
    try:
        fd = os.open(plan.cgroup_v2_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return os.fork()  # the container is going: P's join will tell
    try:
        pid, born_there = linux.fork_in_cgroup(fd)
    finally:
        os.close(fd)  # in P too: it has no more use for it
    if pid == 0 and born_there:
        v2_join = os.path.join(plan.cgroup_v2_dir, "cgroup.procs")
        plan.cgroup_files = [f for f in plan.cgroup_files if f != v2_join]  # born there already
    return pid


# --- inside P: never return, never raise ---------------------------------------------------------------


def _report(fd: int, code: int, text: str) -> None:
    os.write(fd, f"err {code} {text}".replace("\n", " ").encode()[:4000])


def _child(plan: _Plan, stdio: tuple[int | None, int, int], report_w: int) -> NoReturn:
    stage = "signals"
    proc = plan.proc
    try:
        process.reset_signals()
        # What needs the host's view and privileges first: cgroupfs, our own rlimits and OOM score.
        for path in plan.cgroup_files:
            stage = f"join cgroup {os.path.dirname(path)}"
            _join_cgroup(path)
        stage = "rlimits"
        process.apply_rlimits(proc.get("rlimits") or [])  # clamped to the host's; the init warned already
        if proc.get("oomScoreAdj") is not None:
            _write_self("/proc/self/oom_score_adj", str(proc["oomScoreAdj"]))
        for name in _NAMESPACE_ORDER:
            if name in plan.namespaces:
                stage = f"setns {name}"
                linux.setns(plan.namespaces[name], _NS_FLAGS[name])
        stage = "stdio"
        uid, gid = int(plan.user.get("uid", 0)), int(plan.user.get("gid", 0))
        _setup_stdio(stdio, plan.console, report_w, uid, gid)
        try:
            os.chdir(plan.cwd)
        except OSError as e:
            reason = (e.strerror or str(e)).lower()
            _fail(report_w, 126, f'chdir to cwd ("{plan.cwd}") set in config.json failed: {reason}')
        if plan.user.get("umask") is not None:
            os.umask(int(plan.user["umask"]))
        if proc.get("noNewPrivileges"):
            linux.set_no_new_privs()
        stage = "capabilities"
        process.drop_privileges(proc, plan.user, plan.seccomp, plan.seccomp_flags)
    except BaseException as e:  # noqa: BLE001 - everything must become a report, then _exit
        _fail(report_w, 126, f"{stage}: {getattr(e, 'strerror', None) or e}")
    _exec(plan, report_w)


def _exec(plan: _Plan, report_w: int) -> NoReturn:
    environ = dict(e.split("=", 1) for e in plan.env if "=" in e)
    name = plan.args[0]
    path: str | None = name
    if "/" not in name:
        path = process.lookup(name, environ.get("PATH", _DEFAULT_PATH))
        if path is None:
            _fail(report_w, 127, f'exec: "{name}": executable file not found in $PATH')
    assert path is not None
    try:
        os.execve(path, plan.args, environ)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            _fail(report_w, 127, f'exec: "{name}": stat {path}: no such file or directory')
        if e.errno in (errno.EACCES, errno.EPERM, errno.EISDIR):
            _fail(report_w, 126, f'exec: "{name}": permission denied')
        if e.errno == errno.ENOEXEC:
            _fail(report_w, 126, f'exec: "{name}": exec format error')
        _fail(report_w, 126, f'exec: "{name}": {e.strerror}')
    _fail(report_w, 126, "exec returned")


def _fail(report_w: int, code: int, text: str) -> NoReturn:
    try:
        _report(report_w, code, text)
    finally:
        os._exit(code)


def _join_cgroup(path: str) -> None:
    try:
        _write_self(path, "0")
    except FileNotFoundError:
        pass  # the container has no cgroup of its own there (or is ending: its namespaces tell)


def _write_self(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _setup_stdio(
    stdio: tuple[int | None, int, int], console: int | None, report_w: int, uid: int, gid: int
) -> None:
    os.setsid()  # out of the caller's session: its terminal's signals are not ours
    if console is not None:
        fcntl.ioctl(console, _TIOCSCTTY, 0)
        os.fchown(console, uid, gid)  # the process's own terminal, as runc leaves it
        fds: list[int] = [console] * 3
    else:
        stdin = stdio[0] if stdio[0] is not None else os.open("/dev/null", os.O_RDONLY)
        fds = [stdin, stdio[1], stdio[2]]
    # Move the sources out of 0..2 first so that dup2 can't clobber one still needed.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) if fd < 3 else fd for fd in fds]
    for i, fd in enumerate(high):
        os.dup2(fd, i, inheritable=True)
    # Nothing else the caller had open may leak into the container.
    if report_w > 3:
        os.closerange(3, report_w)
    os.closerange(report_w + 1, 1 << 20)
