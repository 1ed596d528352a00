"""The hostile-input half of layer unpacking: creating entries below a destination directory.

`SafeTree` creates entries using only dir-fd relative system calls: every parent component is
opened with O_NOFOLLOW|O_DIRECTORY, so nothing is ever created, written or removed outside the
destination, whatever symlinks, `..` components or hardlinks the layer contains.  `apply_entry`
creates one entry read by `tarstream.TarReader` (whose names are re-exported here).

Everything here works on bytes names, so that names that are not UTF-8 survive unchanged.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pallet.images.tarstream import (
    BLOCK,
    CHUNK,
    HashingSource,
    LayerError,
    Readable,
    TarEntry,
    TarReader,
    show,
)

__all__ = [
    "BLOCK",
    "CHUNK",
    "OPAQUE",
    "HashingSource",
    "LayerError",
    "Readable",
    "SafeTree",
    "TarEntry",
    "TarReader",
    "apply_entry",
    "show",
    "split_name",
]

_MAX_NAME = 4096  # PATH_MAX
# Real trees are a few dozen levels deep; deeper ones only serve to break recursive tree walks
# (Python 3.11's shutil.rmtree among them, which the caller uses to clean up after us).
_MAX_DEPTH = 256
_FD_CACHE = 256  # open directory fds kept between entries

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NODE_TYPES = {b"3": stat.S_IFCHR, b"4": stat.S_IFBLK, b"6": stat.S_IFIFO}
OPAQUE = b".wh..wh..opq"

T = TypeVar("T")


def split_name(name: bytes) -> tuple[bytes, ...]:
    """Normalise a tar name to path components below the layer root.

    Leading slashes are dropped (docker treats "/etc/x" as "etc/x"); `.` components vanish; `..`
    is resolved lexically and rejected when it would climb above the root.  Nothing here looks at
    the filesystem, so `a/../b` is `b` whatever `a` is.
    """
    if len(name) > _MAX_NAME:
        raise LayerError(f"layer entry '{show(name[:64])}...' has a name longer than {_MAX_NAME} bytes")
    parts: list[bytes] = []
    for comp in name.split(b"/"):
        if comp == b".." and parts:
            parts.pop()
        elif comp == b"..":
            raise LayerError(f"layer entry '{show(name)}' escapes the layer directory")
        elif comp not in (b"", b"."):
            parts.append(comp)
    if len(parts) > _MAX_DEPTH:
        raise LayerError(f"layer entry '{show(name[:64])}...' is nested more than {_MAX_DEPTH} levels deep")
    return tuple(parts)


# --------------------------------------------------------------------------- writing the tree


@dataclass
class _DirTimes:
    """Deferred directory mtimes, as a trie so that removing a subtree forgets it in O(depth)."""

    mtime_ns: int | None = None
    children: dict[bytes, _DirTimes] = field(default_factory=dict)

    def set(self, parts: tuple[bytes, ...], mtime_ns: int) -> None:
        node = self
        for comp in parts:
            node = node.children.setdefault(comp, _DirTimes())
        node.mtime_ns = mtime_ns

    def forget(self, parts: tuple[bytes, ...]) -> None:
        node: _DirTimes | None = self
        for comp in parts[:-1]:
            node = node.children.get(comp) if node else None
        if node is not None:
            node.children.pop(parts[-1], None)

    def items(self) -> list[tuple[tuple[bytes, ...], int]]:
        out: list[tuple[tuple[bytes, ...], int]] = []
        stack: list[tuple[tuple[bytes, ...], _DirTimes]] = [((), self)]
        while stack:
            parts, node = stack.pop()
            if node.mtime_ns is not None:
                out.append((parts, node.mtime_ns))
            stack.extend((parts + (comp,), child) for comp, child in node.children.items())
        return out


class SafeTree:
    """Creates layer entries below `root` through directory fds; never follows a symlink."""

    def __init__(self, root: os.PathLike[str] | str) -> None:
        self._root = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fds: dict[tuple[bytes, ...], int] = {(): self._root}
        self._times = _DirTimes()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __enter__(self) -> SafeTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trim(self) -> None:
        """Bound the fd cache; called between entries, never while an entry holds cached fds."""
        if len(self._fds) > _FD_CACHE:
            self._drop_cache()

    def _drop_cache(self) -> None:
        for parts, fd in self._fds.items():
            if parts:
                os.close(fd)
        self._fds = {(): self._root}

    def dir_fd(self, parts: tuple[bytes, ...], name: bytes, *, create: bool = True) -> int:
        """An fd for directory `parts`, opening (and, if `create`, making) each component without
        following symlinks.  The fd is owned by the cache and valid until the next `trim`/removal."""
        i = len(parts)
        while i and parts[:i] not in self._fds:
            i -= 1
        fd = self._fds[parts[:i]]
        owned = False
        try:
            for j in range(i, len(parts)):
                child = self._open_dir(fd, parts[: j + 1], name, create)
                if owned:
                    os.close(fd)
                fd = child
                owned = j < len(parts) - 1 and len(self._fds) >= _FD_CACHE
                if not owned:
                    self._fds[parts[: j + 1]] = fd
        except BaseException:
            if owned:
                os.close(fd)
            raise
        return fd

    def _open_dir(self, parent: int, parts: tuple[bytes, ...], name: bytes, create: bool) -> int:
        comp = parts[-1]
        try:
            return os.open(comp, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise LayerError(
                    f"layer entry '{show(name)}' needs '{show(b'/'.join(parts))}', not in the layer"
                )
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            # Linux says ENOTDIR (not ELOOP) for a symlink opened O_NOFOLLOW|O_DIRECTORY: tell them apart.
            where = show(b"/".join(parts))
            if stat.S_ISLNK(os.lstat(comp, dir_fd=parent).st_mode):
                raise LayerError(f"layer entry '{show(name)}' goes through the symlink '{where}'")
            raise LayerError(f"layer entry '{show(name)}' goes through '{where}', which is not a directory")
        # A missing parent is made root-owned 0755, as docker does.
        os.mkdir(comp, 0o700, dir_fd=parent)
        fd = os.open(comp, _DIR_FLAGS, dir_fd=parent)
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o755)
        return fd

    def remove(self, parent: int, parts: tuple[bytes, ...]) -> None:
        """Remove whatever is at `parts` (a directory with its whole tree), without following symlinks.
        Invalidates cached fds, so callers must look their parent up again."""
        base = parts[-1]
        if stat.S_ISDIR(os.lstat(base, dir_fd=parent).st_mode):
            self._drop_cache_except(parts[:-1])
            self._times.forget(parts)
            shutil.rmtree(base, dir_fd=parent)  # the fd-based walk: safe against symlinks on Linux
        else:
            os.unlink(base, dir_fd=parent)

    def _drop_cache_except(self, keep: tuple[bytes, ...]) -> None:
        # Cached fds below the removed directory would point into a deleted tree; keep only `keep`'s chain.
        for parts in [p for p in self._fds if p and p != keep[: len(p)]]:
            os.close(self._fds.pop(parts))

    def create(self, parts: tuple[bytes, ...], name: bytes, make: Callable[[int, bytes], T]) -> tuple[int, T]:
        """Run make(parent_fd, basename); if the name exists, replace what is there (docker's rule)."""
        parent = self.dir_fd(parts[:-1], name)
        try:
            return parent, make(parent, parts[-1])
        except FileExistsError:
            self.remove(parent, parts)
            return parent, make(parent, parts[-1])

    def mkdir(self, parts: tuple[bytes, ...], name: bytes, mtime_ns: int) -> int:
        """Make (or keep: a directory over a directory merges) directory `parts`; returns its fd."""
        parent = self.dir_fd(parts[:-1], name)
        try:
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(parts[-1], dir_fd=parent).st_mode):
                self.remove(parent, parts)
                os.mkdir(parts[-1], 0o700, dir_fd=parent)
        self._times.set(parts, mtime_ns)
        return self.dir_fd(parts, name)

    def finish(self) -> None:
        """Set directory mtimes last, so that creating their children did not bump them."""
        for parts, mtime_ns in self._times.items():
            self.trim()
            os.utime(self.dir_fd(parts, b"/".join(parts), create=False), ns=(mtime_ns, mtime_ns))


# --------------------------------------------------------------------------- one entry


def apply_entry(tree: SafeTree, reader: TarReader, entry: TarEntry) -> int:
    """Create one entry; returns the bytes of file content written."""
    parts = split_name(entry.name)
    if not parts:
        if entry.kind == b"5":
            return 0  # docker ignores the layer root's own entry
        raise LayerError(f"layer entry '{show(entry.name)}' would replace the layer root")
    if parts[-1].startswith(b".wh."):
        _whiteout(tree, parts, entry)
    elif entry.kind == b"0":
        _file(tree, reader, parts, entry)
        return entry.size
    elif entry.kind == b"5":
        fd = tree.mkdir(parts, entry.name, entry.mtime_ns)
        _set_fd_meta(fd, entry)
    elif entry.kind == b"2":
        target = entry.linkname  # stored as is: it resolves inside the container, never here
        parent, _ = tree.create(parts, entry.name, lambda fd, base: os.symlink(target, base, dir_fd=fd))
        _set_meta_at(parent, parts[-1], entry, symlink=True)
    elif entry.kind == b"1":
        _hardlink(tree, parts, entry)
    else:
        mode, dev = _NODE_TYPES[entry.kind] | 0o600, os.makedev(entry.devmajor, entry.devminor)
        parent, _ = tree.create(parts, entry.name, lambda fd, base: os.mknod(base, mode, dev, dir_fd=fd))
        _set_meta_at(parent, parts[-1], entry, symlink=False)
    return 0


def _file(tree: SafeTree, reader: TarReader, parts: tuple[bytes, ...], entry: TarEntry) -> None:
    # O_EXCL|O_NOFOLLOW: an existing name (even a symlink) is removed and replaced, never written through.
    _, fd = tree.create(
        parts, entry.name, lambda parent, base: os.open(base, _FILE_FLAGS, 0o600, dir_fd=parent)
    )
    try:
        reader.consume_data(fd, entry)
        _set_fd_meta(fd, entry)
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
    finally:
        os.close(fd)


def _hardlink(tree: SafeTree, parts: tuple[bytes, ...], entry: TarEntry) -> None:
    """A hardlink's target is a layer path (a leading / means the layer root, as in docker), reached
    through real directories only; the final component is linked itself, never followed."""
    what = f"layer entry '{show(entry.name)}' is a hardlink to '{show(entry.linkname)}'"
    try:
        target = split_name(entry.linkname)
    except LayerError:
        raise LayerError(f"{what}, outside the layer")
    if not target or target == parts:
        raise LayerError(what)

    def link(parent: int, base: bytes) -> None:
        src_dir = tree.dir_fd(target[:-1], entry.name, create=False)
        try:
            os.link(target[-1], base, src_dir_fd=src_dir, dst_dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(f"{what}, which is not in the layer")

    parent, _ = tree.create(parts, entry.name, link)
    is_symlink = stat.S_ISLNK(os.lstat(parts[-1], dir_fd=parent).st_mode)
    _set_meta_at(parent, parts[-1], entry, symlink=is_symlink)


def _whiteout(tree: SafeTree, parts: tuple[bytes, ...], entry: TarEntry) -> None:
    """OCI whiteouts become overlay ones: `.wh.x` a 0:0 char device `x`, `.wh..wh..opq` an opaque dir."""
    base = parts[-1]
    if base == OPAQUE:
        os.setxattr(tree.dir_fd(parts[:-1], entry.name), b"trusted.overlay.opaque", b"y")
        return
    if base.startswith(b".wh..wh."):
        return  # aufs bookkeeping (.wh..wh.plnk and friends), which docker drops too
    name = base[4:]
    if name in (b"", b".", b".."):
        raise LayerError(f"layer entry '{show(entry.name)}' is a whiteout of an invalid name")
    target = parts[:-1] + (name,)
    dev = os.makedev(0, 0)
    parent, _ = tree.create(target, entry.name, lambda fd, base: os.mknod(base, stat.S_IFCHR, dev, dir_fd=fd))
    os.chown(name, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
    os.utime(name, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)


def _set_fd_meta(fd: int, entry: TarEntry) -> None:
    os.fchown(fd, entry.uid, entry.gid)
    os.fchmod(fd, entry.mode)  # after chown, which clears setuid/setgid
    _set_xattrs(fd, entry.xattrs)  # after chown, which clears security.capability


def _set_meta_at(parent: int, base: bytes, entry: TarEntry, *, symlink: bool) -> None:
    """Metadata for entries we must not open (symlinks, devices, fifos, hardlinks to those)."""
    os.chown(base, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
    if not symlink:
        os.chmod(base, entry.mode, dir_fd=parent)  # we just made it, and it is not a symlink
    if entry.xattrs:
        _set_xattrs(b"/proc/self/fd/%d/%s" % (parent, base), entry.xattrs)  # the final name is not followed
    os.utime(base, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)


def _set_xattrs(target: int | bytes, xattrs: dict[bytes, bytes]) -> None:
    for key, value in xattrs.items():
        if key.startswith(b"trusted.overlay."):
            continue  # overlay metadata only ever comes from whiteouts, never from layer content
        try:
            if isinstance(target, int):
                os.setxattr(target, key, value)
            else:
                os.setxattr(target, key, value, follow_symlinks=False)
        except OSError as exc:
            # As moby: EPERM (e.g. user.* on a symlink), and security.* where the filesystem lacks it.
            if exc.errno != errno.EPERM and not (
                exc.errno == errno.EOPNOTSUPP and key.startswith(b"security.")
            ):
                raise
