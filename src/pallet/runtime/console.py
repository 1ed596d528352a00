"""A TTY container's console: a pty created inside the container, as runc creates it, whose master
the monitor keeps.

runc/crun open the pty in the container's own devpts and hand the master over a unix socket
(`--console-socket`) with SCM_RIGHTS; `receive_master` takes it. The built-in runtime does the same
over a socket pair: its init, once its /dev is in place, opens the pty (`setup_in_init`), sends the
master (`receive_from_init` takes it) and binds the slave, /dev/pts/N inside, over /dev/console.
Either way the monitor reads the container's output from the master, writes attached clients'
input to it and applies window sizes with TIOCSWINSZ.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


def set_size(fd: int, height: int, width: int) -> None:
    """Set the terminal's window size; the kernel sends SIGWINCH to its foreground group."""
    if height > 0 and width > 0:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def receive_master(listener: socket.socket, timeout: float = 10.0) -> int:
    """Accept the runtime's connection on the console socket and take the pty master from it."""
    listener.settimeout(timeout)
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(timeout)
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
    if not fds:
        raise OSError("the runtime sent no console file descriptor")
    os.set_inheritable(fds[0], False)
    return fds[0]


# --- the built-in runtime ----------------------------------------------------------------------------


def init_pair() -> tuple[socket.socket, socket.socket]:
    """(the caller's end, the init's end) of the pair the init sends its pty master over."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def receive_from_init(sock: socket.socket) -> int:
    """The pty master the init sent (before its "ok": never a wait), or -1; closes `sock`."""
    with sock:
        sock.setblocking(False)
        try:
            _msg, fds, _flags, _addr = socket.recv_fds(sock, 1, 1)
        except BlockingIOError:
            return -1
    return fds[0] if fds else -1


def setup_in_init(sock: socket.socket, proc: Mapping[str, Any], *, bind: bool) -> None:
    """In the container's init, after pivot_root (this module and those below are loaded by then): a pty
    in the container's devpts, its master sent over `sock` (then closed), its slave bound over
    /dev/console if `bind`, and made the controlling terminal and stdio."""
    from pallet.runtime import mounts, process

    master, slave, path = process.open_console()
    try:
        socket.send_fds(sock, [b"m"], [master])
    finally:
        os.close(master)
        sock.close()
    if bind:
        mounts.bind_console(path)
    user = proc.get("user") or {}
    process.attach_console(slave, proc.get("consoleSize"), int(user.get("uid", 0)))
