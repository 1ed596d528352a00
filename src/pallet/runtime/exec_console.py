"""The terminal of an `exec -t` process: a new pty in the container's own devpts instance, so that
inside the container the process's terminal is one of its /dev/pts/N (as runc does it), not a host
pty it cannot name."""

from __future__ import annotations

import fcntl
import os
import stat

from pallet.runtime.exec import ContainerGone, ExecError

_TIOCSPTLCK = 0x40045431
_TIOCGPTPEER = 0x5441
_PTMX_RDEV = os.makedev(5, 2)


def open_console(container_pid: int) -> tuple[int, int]:
    """(master, slave), both close-on-exec. The container controls its /dev: the path is walked one
    component at a time without following symlinks, and the node must be a ptmx."""
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    fds: list[int] = []
    try:
        fds.append(os.open(f"/proc/{container_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        for part in ("dev", "pts"):
            fds.append(os.open(part, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
        fds.append(os.open("ptmx", flags, dir_fd=fds[-1]))
        st = os.fstat(fds[-1])
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != _PTMX_RDEV:
            raise ExecError("the container's /dev/pts/ptmx is not a pty multiplexer")
        master = os.open(f"/proc/self/fd/{fds[-1]}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError) as e:
        if not os.path.exists(f"/proc/{container_pid}"):
            raise ContainerGone("container is not running") from None
        raise ExecError(f"cannot open a terminal in the container: {e}") from None
    except OSError as e:
        raise ExecError(f"cannot open a terminal in the container: {e}") from None
    finally:
        for fd in fds:
            os.close(fd)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, b"\0\0\0\0")
        slave: int = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        os.close(master)
        raise ExecError(f"cannot open a terminal in the container: {e.strerror}") from None
    return master, slave
