"""A container's read-write layer (its overlay upper dir) against its image's layers: what changed
(`diff`), how big it is (`ps -s`, `inspect -s`, `system df`) and the entries a `commit` layer holds.

Changes follow docker's naive diff (archive.ChangesDirs), which the overlay2 driver uses on kernels
like this one: an entry is A(dded) when the image lacks it, C(hanged) when its type, mode, owner,
device or file capabilities differ (or, for non-directories, its size or mtime), D(eleted) for a
whiteout or for what an opaque directory hides; a directory with changes below it is C as well.

The runtime creates mount points in the upper dir that docker keeps in a separate "init" layer
(/etc/hosts, /proc, ...): when they are empty and the image lacks them, they are not changes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pallet.errors import PalletError

OPAQUE_XATTR = "trusted.overlay.opaque"
INIT_FILES = frozenset({"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/.dockerenv", "/dev/console"})
INIT_DIRS = frozenset({"/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/etc"})


@dataclass(frozen=True)
class Change:
    kind: str  # "A", "C" or "D", docker's letters
    path: str  # absolute inside the container


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _capability(path: str) -> bytes | None:
    try:
        return os.getxattr(path, "security.capability", follow_symlinks=False)
    except OSError:
        return None


@dataclass
class LowerView:
    """The image's layers (bottom first) seen merged, as overlayfs would show them."""

    layers: list[Path]
    _tops: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self._tops = [str(p) for p in reversed(self.layers)]

    def lstat(self, path: str) -> os.stat_result | None:
        """The topmost visible entry for `path` ("/a/b"), or None when no layer shows one."""
        parts = path.strip("/").split("/")
        for top in self._tops:
            hidden = False
            for i in range(1, len(parts) + 1):
                prefix = top + "/" + "/".join(parts[:i])
                try:
                    st = os.lstat(prefix)
                except (FileNotFoundError, NotADirectoryError):
                    break
                if is_whiteout(st) or (i < len(parts) and not stat.S_ISDIR(st.st_mode)):
                    return None
                if i == len(parts):
                    return st
                if _opaque(prefix):
                    hidden = True  # this dir hides lower layers; keep looking in this layer only
            if hidden:
                return None
        return None

    def capability(self, path: str) -> bytes | None:
        """security.capability of the topmost entry for `path` (file capabilities count as a change)."""
        for top in self._tops:
            if os.path.lexists(top + path):
                return _capability(top + path)
        return None

    def children(self, path: str) -> set[str]:
        """Names visible in directory `path` of the merged layers."""
        seen: set[str] = set()
        gone: set[str] = set()
        for top in self._tops:
            d = top + path.rstrip("/")
            try:
                st = os.lstat(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            with os.scandir(d) as it:
                for e in it:
                    if e.name in gone or e.name in seen:
                        continue
                    if is_whiteout(e.stat(follow_symlinks=False)):
                        gone.add(e.name)
                    else:
                        seen.add(e.name)
            if _opaque(d):
                break
        return seen


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_mode, st.st_uid, st.st_gid, st.st_rdev


def _stat_different(old: os.stat_result, new: os.stat_result) -> bool:
    if _identity(old) != _identity(new):
        return True
    if stat.S_ISDIR(new.st_mode):
        return False  # a directory's size and mtime say nothing (moby#9874)
    return old.st_size != new.st_size or not _same_time(old.st_mtime_ns, new.st_mtime_ns)


def _same_time(a: int, b: int) -> bool:
    # docker's sameFsTimeSpec: equal, or equal seconds when one side lost its nanoseconds
    return a == b or (a // 10**9 == b // 10**9 and (a % 10**9 == 0 or b % 10**9 == 0))


class ChangeWalker:
    def __init__(self, upper: Path, lower: LowerView) -> None:
        self.upper = str(upper)
        self.lower = lower

    def changes(self) -> list[Change]:
        return list(self._dir("", in_lower=True))

    def _dir(self, rel: str, *, in_lower: bool) -> Iterator[Change]:
        """Changes below upper dir `rel` ("" = top), in path order."""
        here = self.upper + rel
        names = set(os.listdir(here))
        deleted: set[str] = set()
        if in_lower and rel and _opaque(here):
            deleted = self.lower.children(rel) - names
        for name in sorted(names | deleted):
            path = f"{rel}/{name}"
            if name in deleted:
                yield Change("D", path)
                continue
            st = os.lstat(self.upper + path)
            low = self.lower.lstat(path) if in_lower else None
            if is_whiteout(st):
                if low is not None:
                    yield Change("D", path)
                continue
            if low is None:
                if not self._init_stub(path, st):
                    yield Change("A", path)
                    if stat.S_ISDIR(st.st_mode):
                        yield from self._dir(path, in_lower=False)
                continue
            caps_differ = _capability(self.upper + path) != self.lower.capability(path)
            changed = caps_differ or _stat_different(low, st)
            below: list[Change] = []
            if stat.S_ISDIR(st.st_mode):
                below = list(self._dir(path, in_lower=stat.S_ISDIR(low.st_mode)))
            if changed or below:
                yield Change("C", path)
                yield from below

    def _init_stub(self, path: str, st: os.stat_result) -> bool:
        """A mount point the runtime made, empty, where docker's init layer would hold it."""
        if stat.S_ISREG(st.st_mode):
            return path in INIT_FILES and st.st_size == 0
        if not stat.S_ISDIR(st.st_mode) or path not in INIT_DIRS:
            return False
        for name in os.listdir(self.upper + path):
            sub = f"{path}/{name}"
            if not self._init_stub(sub, os.lstat(self.upper + sub)):
                return False
        return True


def changes(upper: Path, layers: list[Path]) -> list[Change]:
    if not upper.is_dir():
        return []
    try:
        return ChangeWalker(upper, LowerView(layers)).changes()
    except RecursionError:
        raise PalletError("the container's filesystem is nested too deeply to list its changes") from None


def upper_size(upper: Path) -> int:
    """Bytes of the files in the upper dir, each inode once (docker's directory.Size); symlinks
    count their own size, directories nothing."""
    total = 0
    seen: set[tuple[int, int]] = set()
    todo = [str(upper)]
    while todo:
        try:
            it = os.scandir(todo.pop())
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    todo.append(e.path)
                    continue
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
