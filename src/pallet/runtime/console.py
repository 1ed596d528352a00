"""The monitor's end of a TTY container's console.

Built-in runtime: the monitor opens a pty pair, gives the slave to the runtime as the
container's controlling terminal and keeps the master. runc/crun allocate the pty inside the
container themselves and hand the master over a unix socket (`--console-socket`) with
SCM_RIGHTS; `receive_master` takes it. Either way the monitor reads the container's output from
the master, writes attached clients' input to it and applies window sizes with TIOCSWINSZ.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios


def open_pty() -> tuple[int, int]:
    """(master, slave), both close-on-exec."""
    master, slave = os.openpty()
    return master, slave


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
