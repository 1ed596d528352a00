"""The container's own process: its signals and stdio, its last steps before exec (rlimits,
privileges: capabilities, user, seccomp) and the exec itself with Docker's exit codes (127 not found,
126 not executable).

Runs inside the container's init after pivot_root: everything it needs is imported at module level,
while the host's filesystem is still visible.
"""

from __future__ import annotations

import _signal
import errno
import fcntl
import os
import resource
import signal
import stat
import sys

from pallet.runtime import linux

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, NoReturn

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_TIOCSCTTY = 0x540E
_TIOCSWINSZ = 0x5414
_TIOCSPTLCK = 0x40045431  # unlockpt
_TIOCGPTN = 0x80045430  # ptsname's number
_TIOCGPTPEER = 0x5441  # open the slave from the master, no path walk
_SIG_DFL = 0  # what _signal.getsignal() returns for SIG_DFL


def reset_signals() -> None:
    """Default dispositions and an empty mask: the caller's Python handlers must not run in a child of
    it, and ignored signals must not reach exec."""
    # Only what isn't the default already, asked of _signal directly: `signal` wraps every value in an
    # enum, which made this loop cost ~0.5 ms.
    for sig in _signal.valid_signals():
        if _signal.getsignal(sig) == _SIG_DFL:
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def setup_stdio(stdio: tuple[int | None, int, int] | None, keep: set[int]) -> None:
    """A new session; `stdio` on 0..2 (stdin None: /dev/null), or 0..2 left alone with None (a terminal
    comes later: attach_console); every other descriptor closed but those in `keep`."""
    os.setsid()
    if stdio is not None:
        _onto_stdio([stdio[0] if stdio[0] is not None else os.open("/dev/null", os.O_RDONLY), *stdio[1:]])
    # Close everything else the caller had open (its non-CLOEXEC fds would leak into the container).
    lo = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)


def _onto_stdio(fds: Sequence[int]) -> None:
    # Move the sources out of 0..2 first so that dup2 can't clobber one we still need.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) if fd < 3 else fd for fd in fds]
    for i, fd in enumerate(high):
        os.dup2(fd, i, inheritable=True)


def open_console() -> tuple[int, int, str]:
    """A new pty in the devpts instance behind /dev/ptmx (after pivot_root, the container's own), as
    runc opens it: (master, slave, the slave's path), close-on-exec, and not our controlling terminal
    yet. The master is non-blocking (its reader, the monitor, wants it so; the slave is not)."""
    # O_NONBLOCK: an image's FIFO in ptmx's place must fail below rather than block the open.
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISCHR(os.fstat(master).st_mode):
            raise OSError(errno.ENOTTY, "/dev/ptmx is not a pty multiplexer")
        fcntl.ioctl(master, _TIOCSPTLCK, b"\0\0\0\0")
        n = int.from_bytes(fcntl.ioctl(master, _TIOCGPTN, b"\0\0\0\0"), sys.byteorder)
        slave: int = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(master)
        raise
    return master, slave, f"/dev/pts/{n}"


def attach_console(slave: int, size: Mapping[str, int] | None, uid: int) -> None:
    """The pty slave as controlling terminal and stdio, with the spec's consoleSize; owned by the
    container's user, as runc leaves it (fixStdioPermissions)."""
    fcntl.ioctl(slave, _TIOCSCTTY, 0)
    if size:
        rows, cols = size.get("height", 0), size.get("width", 0)
        winsize = b"".join(v.to_bytes(2, sys.byteorder) for v in (rows, cols, 0, 0))
        fcntl.ioctl(slave, _TIOCSWINSZ, winsize)
    if uid != 0:
        os.fchown(slave, uid, -1)
    _onto_stdio([slave] * 3)
    if slave > 2:
        os.close(slave)


def receive_seccomp(fd: int) -> tuple[bytes, int]:
    """(BPF program, seccomp(2) flags) from the pipe the runtime writes "FLAGS\n" and the program to
    (builtin._send_seccomp), read to its end."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    flags, nl, prog = b"".join(chunks).partition(b"\n")
    if not nl or not prog:
        raise OSError(errno.ECHILD, "no seccomp program came")
    return prog, int(flags)


def _rlimit_value(v: int) -> int:
    return resource.RLIM_INFINITY if v < 0 or v >= (1 << 64) - 1 else v


def apply_rlimits(rlimits: Sequence[Mapping[str, Any]]) -> list[str]:
    """Set the spec's rlimits; a hard limit above the host's is clamped with a warning, never fatal."""
    warnings = []
    for rl in rlimits:
        res = getattr(resource, rl["type"], None)
        if res is None:
            raise OSError(errno.EINVAL, f"unknown rlimit {rl['type']}")
        soft, hard = _rlimit_value(int(rl["soft"])), _rlimit_value(int(rl["hard"]))
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError):
            # No CAP_SYS_RESOURCE: the hard limit can't go above the current one. Clamp, don't fail.
            cur = resource.getrlimit(res)[1]

            def clamp(v: int, cur: int = cur) -> int:
                if cur == resource.RLIM_INFINITY:
                    return v
                return cur if v == resource.RLIM_INFINITY else min(v, cur)

            resource.setrlimit(res, (clamp(soft), clamp(hard)))
            warnings.append(f"{rl['type']} {soft}:{hard} exceeds the host's hard limit; clamped to {cur}")
    return warnings


def drop_privileges(
    proc: Mapping[str, Any], user: Mapping[str, Any], seccomp_prog: bytes | None, seccomp_flags: int
) -> list[str]:
    """Bounding set, user switch, seccomp, then the final capability sets, in that order.

    seccomp goes in after the user switch but while CAP_SYS_ADMIN is still effective (so no_new_privs
    isn't forced on the container); the last capset and the exec are then calls the filter must allow.
    Capabilities the host doesn't have (no CAP_SYS_RESOURCE on some hosts) are dropped with a warning.
    """
    warnings: list[str] = []
    caps = proc.get("capabilities")
    last = linux.cap_last_cap()
    bounding = (1 << (last + 1)) - 1
    if caps is not None:
        bounding = linux.cap_mask(caps.get("bounding"))
        for cap in range(last + 1):
            if not bounding >> cap & 1:
                linux.capbset_drop(cap)
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    linux.set_keepcaps(True)  # keep the permitted set across setuid to a non-root uid
    os.setgroups([int(g) for g in user.get("additionalGids") or []])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    linux.set_keepcaps(False)
    _, permitted, _ = linux.capget()
    if seccomp_prog is not None:
        if uid != 0:
            linux.capset(permitted, permitted, 0)  # setuid cleared the effective set; seccomp needs it
        linux.seccomp_set_filter(seccomp_prog, seccomp_flags)
    if caps is not None:
        want = {k: linux.cap_mask(caps.get(k)) for k in ("effective", "permitted", "inheritable", "ambient")}
        missing = (want["permitted"] | want["effective"]) & ~permitted
        if missing:
            names = [n for n, v in linux.CAPABILITIES.items() if missing >> v & 1]
            warnings.append(f"capabilities not available on this host, dropped: {', '.join(names)}")
        prm = want["permitted"] & permitted
        linux.capset(want["effective"] & prm, prm, want["inheritable"] & (prm | bounding))
        if want["ambient"]:
            linux.ambient_clear_all()
            for cap in range(last + 1):
                if want["ambient"] >> cap & 1:
                    linux.ambient_raise(cap)
    return warnings


def lookup(name: str, path_env: str) -> str | None:
    # Go's exec.LookPath, as runc uses it: the first non-directory with any x bit wins.
    for d in path_env.split(":"):
        candidate = os.path.join(d or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if st.st_mode & 0o170000 != 0o040000 and st.st_mode & 0o111:
            return candidate
    return None


def exec_user_process(args: Sequence[str], env: Sequence[str]) -> NoReturn:
    environ = dict(e.split("=", 1) for e in env if "=" in e)
    if not args:
        _die(127, 'exec: "": executable file not found in $PATH')
    name = args[0]
    if "/" in name:
        path = name
    else:
        found = lookup(name, environ.get("PATH", _DEFAULT_PATH))
        if found is None:
            _die(127, f'exec: "{name}": executable file not found in $PATH')
        path = found
    try:
        os.execve(path, list(args), environ)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            _die(127, f'exec: "{name}": stat {path}: no such file or directory')
        if e.errno in (errno.EACCES, errno.EPERM, errno.EISDIR):
            _die(126, f'exec: "{name}": permission denied')
        if e.errno == errno.ENOEXEC:
            _die(126, f'exec: "{name}": exec format error')
        _die(126, f'exec: "{name}": {e.strerror}')
    _die(127, "exec returned")


def _die(code: int, message: str) -> NoReturn:
    try:
        os.write(2, message.encode() + b"\n")
    finally:
        os._exit(code)


def pipe_above_stdio() -> tuple[int, int]:
    """A close-on-exec pipe whose ends are never 0..2 (a daemonized caller may have closed those),
    so that a child's dup2 of the container's stdio can't clobber them."""
    r, w = os.pipe()
    return _above_stdio(r), _above_stdio(w)


def _above_stdio(fd: int) -> int:
    if fd >= 3:
        return fd
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return high


def merge_env(base: Sequence[str], env: Sequence[str]) -> list[str]:
    """Docker's env merge: later entries replace earlier ones with the same key, order kept."""
    merged: list[str] = []
    index: dict[str, int] = {}
    for item in [*base, *env]:
        key = item.split("=", 1)[0]
        if key in index:
            merged[index[key]] = item
        else:
            index[key] = len(merged)
            merged.append(item)
    return merged


# --- for the caller of a child ---------------------------------------------------------------------------


def read_to_eof(fd: int) -> bytes:
    """Everything a child writes to the pipe `fd` until every writer has closed it; closes fd."""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def kill_and_reap(pid: int) -> None:
    """SIGKILL a child of ours and wait for it (quietly, if it is gone already)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
