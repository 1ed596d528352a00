"""Unix sockets in directories whose path is too long for sockaddr_un (108 bytes): a state root
under a test's temporary directory plus a 64-hex container id easily passes that. Binding and
connecting go through /proc/<pid>/fd/<dirfd>/<name>, a short path to the same directory.
"""

from __future__ import annotations

import os
import socket


def _dir_fd(directory: str) -> int:
    return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def listen(directory: str, name: str, backlog: int = 16) -> socket.socket:
    """A listening SOCK_STREAM socket at directory/name (a stale one there is replaced)."""
    fd = _dir_fd(directory)
    try:
        try:
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(f"/proc/self/fd/{fd}/{name}")
            os.chmod(name, 0o600, dir_fd=fd)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)


def connect(directory: str, name: str) -> socket.socket:
    """Connect to directory/name; raises FileNotFoundError / ConnectionRefusedError."""
    fd = _dir_fd(directory)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(f"/proc/self/fd/{fd}/{name}")
        except BaseException:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)


def path_for_others(directory: str, name: str) -> tuple[str, int]:
    """A short path to directory/name that another process (e.g. runc) can use while the
    returned directory fd stays open in this one; the caller closes the fd afterwards."""
    fd = _dir_fd(directory)
    return f"/proc/{os.getpid()}/fd/{fd}/{name}", fd
