"""Named network namespaces: nsfs files bind-mounted under <runroot>/netns/<name>, as `ip netns` does.

A bind mount keeps a namespace alive with no process in it, so the engine can wire a container's
network before the container starts and hand the runtime a path (OCI `linux.namespaces[].path`).
Namespace switches happen on a short-lived thread: setns(CLONE_NEWNET) moves only the calling
thread, so the rest of the process never leaves the host namespace.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path

from pallet.runtime import linux
from pallet.state.locks import file_lock

TYPE_CHECKING = False  # typing costs ~2 ms at import (this module is on `run`'s path)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

MNT_DETACH = 2
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), linux/nsfs.h
NETNS_DIR = "netns"


def netns_dir(runroot: Path) -> Path:
    return runroot / NETNS_DIR


def netns_path(runroot: Path, name: str) -> Path:
    return netns_dir(runroot) / name


def _is_mountpoint(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].replace("\\040", " ") == target for line in f)


def _share_dir(directory: Path) -> None:
    """Make the directory a shared mount (iproute2 does the same for /run/netns): an unmount of a
    namespace file then propagates to mount namespaces cloned later, which would otherwise keep
    the network namespace alive after delete()."""
    directory.mkdir(parents=True, exist_ok=True)
    with file_lock(directory.parent / ".netns.lock"):
        if not _is_mountpoint(directory):
            linux.mount(str(directory), str(directory), None, linux.MS_BIND | linux.MS_REC)
        linux.mount(None, str(directory), None, linux.MS_SHARED | linux.MS_REC)


def _on_thread(fn: Callable[[], T]) -> T:
    """Run fn on a fresh thread and return its result (or raise its exception)."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed back to the caller below
            box["error"] = e

    t = threading.Thread(target=target, name="pallet-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def create(runroot: Path, name: str, inside: Callable[[], object] | None = None) -> Path:
    """Create a new, empty network namespace (only `lo`, down) pinned at <runroot>/netns/<name>.
    `inside`, if given, runs in the new namespace first (on the same short-lived thread)."""
    directory = netns_dir(runroot)
    path = directory / name
    if not _is_mountpoint(directory):
        _share_dir(directory)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)

    def pin() -> None:
        linux.unshare(linux.CLONE_NEWNET)
        if inside is not None:
            inside()
        linux.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(path), None, linux.MS_BIND)

    try:
        _on_thread(pin)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def delete(path: Path) -> None:
    """Unpin and remove a namespace file; the namespace goes away with its last user. Idempotent."""
    try:
        linux.umount2(str(path), MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    path.unlink(missing_ok=True)


def is_netns(path: Path) -> bool:
    """True when path is a live network namespace handle (a pinned nsfs file or /proc/<pid>/ns/net)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == linux.CLONE_NEWNET
    except OSError:  # not an nsfs file
        return False
    finally:
        os.close(fd)


def run_in(path: Path, fn: Callable[[], T]) -> T:
    """Call fn inside the network namespace at path (sockets it creates stay in that namespace)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def inside() -> T:
        linux.setns(fd, linux.CLONE_NEWNET)
        return fn()

    try:
        return _on_thread(inside)
    finally:
        os.close(fd)


def list_names(runroot: Path) -> list[str]:
    directory = netns_dir(runroot)
    try:
        return sorted(p.name for p in directory.iterdir())
    except FileNotFoundError:
        return []


def nsenter_argv(path: Path) -> list[str]:
    """The argv prefix that runs a command inside the namespace (util-linux nsenter; unlike
    `ip netns exec` it leaves /sys alone)."""
    return ["nsenter", f"--net={path}", "--"]
