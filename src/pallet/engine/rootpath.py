"""Paths inside a container's root filesystem, resolved as if that directory were `/`.

Everything works on directory file descriptors and *at() system calls: a symlink met on the way is
read and resolved by hand, absolute targets restart at the rootfs top and `..` never climbs above
it, so no path a container controls can reach the host's files (the kernel's RESOLVE_IN_ROOT, done
in user space because Python has no openat2).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

MAX_SYMLINKS = 40  # the kernel's limit (ELOOP)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class Location:
    """Where a path lands: `name` inside the directory `dir_fd` (owned by the caller: close()).
    `name` is "" when the path is that directory itself (the rootfs top, or a path ending in "/")."""

    dir_fd: int
    name: str
    dir_path: str  # the directory's path inside the rootfs, for messages and rebasing

    def lstat(self) -> os.stat_result | None:
        try:
            if not self.name:
                return os.stat(self.dir_fd)
            return os.lstat(self.name, dir_fd=self.dir_fd)
        except FileNotFoundError:
            return None

    @property
    def path(self) -> str:
        if not self.name:
            return self.dir_path
        return self.dir_path.rstrip("/") + "/" + self.name

    def close(self) -> None:
        os.close(self.dir_fd)


def components(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def resolve(
    root_fd: int,
    path: str,
    *,
    follow_last: bool,
    create_dirs: bool = False,
    mode: int = 0o755,
    owner: tuple[int, int] | None = None,
) -> Location:
    """Resolve `path` below `root_fd`. Every component but the last is followed (symlinks in-root);
    the last is followed too when `follow_last` (then a directory comes back as name ""). A missing
    last component is fine (the caller may create it); a missing parent raises FileNotFoundError.
    With `create_dirs`, missing directories are made instead (mode, owner), as `mkdir -p` would
    inside the rootfs, the last one too when `follow_last`."""
    todo = components(path)
    stack: list[tuple[int, str]] = [(os.dup(root_fd), "/")]
    links = 0
    try:
        while todo:
            comp = todo.pop(0)
            fd, where = stack[-1]
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop()[0])
                continue
            last = not todo
            if last and not follow_last:
                return _location(stack, comp)
            try:
                st = os.lstat(comp, dir_fd=fd)
            except FileNotFoundError:
                if not create_dirs:
                    if last:
                        return _location(stack, comp)
                    raise
                os.mkdir(comp, mode, dir_fd=fd)
                if owner is not None:
                    os.chown(comp, owner[0], owner[1], dir_fd=fd, follow_symlinks=False)
                st = os.lstat(comp, dir_fd=fd)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(comp, dir_fd=fd)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop()[0])
                todo = components(target) + todo
                continue
            if not stat.S_ISDIR(st.st_mode):
                if last:
                    return _location(stack, comp)
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            sub = os.open(comp, DIR_FLAGS, dir_fd=fd)
            stack.append((sub, where.rstrip("/") + "/" + comp))
        top_fd, top_path = stack.pop()
        return Location(top_fd, "", top_path)
    finally:
        for fd, _ in stack:
            os.close(fd)


def _location(stack: list[tuple[int, str]], name: str) -> Location:
    fd, where = stack.pop()
    return Location(fd, name, where)


def open_dir(loc: Location) -> int:
    """An fd of the directory a Location names (the Location itself stays open)."""
    if not loc.name:
        return os.dup(loc.dir_fd)
    return os.open(loc.name, DIR_FLAGS, dir_fd=loc.dir_fd)
