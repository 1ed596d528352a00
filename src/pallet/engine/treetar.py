"""A directory tree as tar entries, and tar entries extracted into a tree, with the rules of
docker's pkg/archive as `cp`, `export` and `commit` use them.

Entries are produced and consumed in one process, so a copy between a container and the host never
serialises a tar unless one end is a stream (`cp -` and `cp ... -`, `export`). Both ends work on
directory fds: extraction resolves every entry's parent with `rootpath.resolve` (symlinks followed
inside the extraction root only) and sets metadata through fds, never through a path a container
could swap for a symlink meanwhile.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pallet.engine import rootpath
from pallet.errors import PalletError

CAPABILITY_XATTR = "security.capability"


class ArchiveError(PalletError):
    """An entry that cannot be extracted (breakout, type conflict); the message is docker's."""


@dataclass
class Entry:
    info: tarfile.TarInfo
    content: Callable[[], BinaryIO] | None = None  # regular files: opens the bytes to copy


def only_capabilities(name: str) -> bool:
    """docker's TarResource and export keep security.capability alone (file capabilities)."""
    return name == CAPABILITY_XATTR


def layer_xattrs(name: str) -> bool:
    """What a layer keeps: everything but overlay's own bookkeeping and the host's SELinux labels."""
    return not name.startswith("trusted.overlay.") and name != "security.selinux"


# --------------------------------------------------------------------------- producing entries


class TreeReader:
    """Walks a tree below a directory fd, depth-first, names sorted (filepath.Walk's order)."""

    def __init__(self, keep_xattr: Callable[[str], bool] = only_capabilities) -> None:
        self.keep_xattr = keep_xattr
        self.links: dict[tuple[int, int], str] = {}

    def entries(self, dir_fd: int, name: str, arcname: str, *, with_top: bool = True) -> Iterator[Entry]:
        """`name` in dir_fd ("" = dir_fd itself) archived as `arcname`, then its contents when it is
        a directory. `with_top=False` leaves the top out (export: the rootfs itself is no entry).
        Iterative, so that no depth a container can build exhausts Python's recursion limit."""
        st = os.stat(dir_fd) if not name else os.lstat(name, dir_fd=dir_fd)
        if with_top:
            entry = self.entry(dir_fd, name, arcname, st)
            if entry is not None:
                yield entry
        if not stat.S_ISDIR(st.st_mode):
            return
        top_prefix = "" if not with_top and not arcname else arcname.rstrip("/") + "/"
        first = rootpath.open_dir(rootpath.Location(dir_fd, name, ""))
        # one level per open directory: (its fd, the names left in it, their archive prefix)
        stack: list[tuple[int, Iterator[str], str]] = [(first, iter(sorted(os.listdir(first))), top_prefix)]
        try:
            while stack:
                fd, names, prefix = stack[-1]
                child = next(names, None)
                if child is None:
                    os.close(stack.pop()[0])
                    continue
                child_st = os.lstat(child, dir_fd=fd)
                entry = self.entry(fd, child, prefix + child, child_st)
                if entry is not None:
                    yield entry
                if stat.S_ISDIR(child_st.st_mode):
                    sub = os.open(child, rootpath.DIR_FLAGS, dir_fd=fd)
                    stack.append((sub, iter(sorted(os.listdir(sub))), prefix + child + "/"))
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    def entry(self, dir_fd: int, name: str, arcname: str, st: os.stat_result) -> Entry | None:
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return None  # sockets cannot be archived, as docker skips them
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(mode)
        info.uid, info.gid, info.uname, info.gname = st.st_uid, st.st_gid, "", ""
        info.mtime = int(st.st_mtime)
        info.pax_headers = self._xattrs(dir_fd, name)
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            if key in self.links:
                info.type, info.linkname = tarfile.LNKTYPE, self.links[key]
                return Entry(info)
            self.links[key] = arcname
        if stat.S_ISREG(mode):
            info.size = st.st_size
            return Entry(info, _opener(dir_fd, name))
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        return Entry(info)

    def _xattrs(self, dir_fd: int, name: str) -> dict[str, str]:
        target: int | str = f"/proc/self/fd/{dir_fd}" + (f"/{name}" if name else "")
        try:
            names = os.listxattr(target, follow_symlinks=False)
        except OSError:
            return {}
        out = {}
        for key in names:
            if self.keep_xattr(key):
                try:
                    value = os.getxattr(target, key, follow_symlinks=False)
                except OSError:
                    continue
                out["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
        return out


def _opener(dir_fd: int, name: str) -> Callable[[], BinaryIO]:
    # The dir fd must still be open when the consumer opens the file: consumers take entries one at
    # a time, in order, while the walk holds that directory open.
    def open_file() -> BinaryIO:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        return open(fd, "rb")

    return open_file


def tar_entries(stream: BinaryIO) -> Iterator[Entry]:
    """The entries of a tar stream (plain, gzip, bzip2 or xz), read once, in order."""
    try:
        with tarfile.open(fileobj=stream, mode="r|*", encoding="utf-8", errors="surrogateescape") as tf:
            for member in tf:
                reader = (lambda m=member: tf.extractfile(m)) if member.isreg() else None
                yield Entry(member, reader)  # type: ignore[arg-type]
    except (tarfile.TarError, EOFError) as e:
        raise ArchiveError(f"Error processing tar file: {e}") from None


def write_tar(entries: Iterator[Entry], out: BinaryIO) -> None:
    with tarfile.open(
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tf:
        for e in entries:
            if e.content is not None:
                with e.content() as f:
                    tf.addfile(e.info, f)
            else:
                tf.addfile(e.info)


# --------------------------------------------------------------------------- extracting entries


class Extractor:
    """Applies entries below `dest` (a path inside the tree `root_fd` is the top of), as docker's
    Untar with NoOverwriteDirNonDir does. `ids` forces every entry's owner (docker's ChownOpts);
    `keep_ids` keeps the archive's; neither leaves files owned by us (the CLI's NoLchown)."""

    def __init__(
        self,
        root_fd: int,
        dest: str,
        *,
        shown: Callable[[str], str],
        ids: tuple[int, int] | None = None,
        keep_ids: bool = False,
    ) -> None:
        self.root_fd = root_fd
        self.dest = "/" + "/".join(rootpath.components(dest))
        self.shown = shown  # a path below root as the user should read it in an error
        self.ids = ids
        self.keep_ids = keep_ids
        self.dir_times: list[tuple[str, int]] = []

    def extract(self, entries: Iterator[Entry]) -> None:
        for entry in entries:
            self.apply(entry)
        for path, mtime in reversed(self.dir_times):  # children first changed their parents' mtimes
            self._set_dir_time(path, mtime)

    def _full(self, rel: str) -> str:
        return self.dest.rstrip("/") + "/" + rel if rel != "." else self.dest

    def apply(self, entry: Entry) -> None:
        info = entry.info
        rel = posixpath.normpath(info.name.lstrip("/") or ".")
        if rel == ".." or rel.startswith("../"):
            raise ArchiveError(f'"{info.name}" is outside of "{self.shown(self.dest)}"')
        if rel == ".":
            if info.isdir():
                return  # docker never touches the extraction directory's own metadata
            raise ArchiveError(
                f'cannot overwrite directory "{self.shown(self.dest)}" with non-directory '
                f'"{self.shown(self.dest)}"'
            )
        parent_rel, base = posixpath.split(rel)
        parent = rootpath.resolve(
            self.root_fd,
            self._full(parent_rel or "."),
            follow_last=True,
            create_dirs=True,
            owner=self._owner(None),
        )
        pfd = rootpath.open_dir(parent)
        parent.close()
        try:
            if info.issym():
                self._check_symlink(rel, info.linkname)
            self._replace(pfd, base, info, rel)
            self._create(pfd, base, entry, rel)
        finally:
            os.close(pfd)

    def _owner(self, info: tarfile.TarInfo | None) -> tuple[int, int] | None:
        if self.keep_ids and info is not None:
            return info.uid, info.gid
        return self.ids

    def _replace(self, pfd: int, base: str, info: tarfile.TarInfo, rel: str) -> None:
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        path, dest = self.shown(self._full(rel)), self.shown(self.dest)
        if is_dir and not info.isdir():
            raise ArchiveError(f'cannot overwrite directory "{path}" with non-directory "{dest}"')
        if not is_dir and info.isdir():
            raise ArchiveError(f'cannot overwrite non-directory "{path}" with directory "{dest}"')
        if not is_dir:
            os.unlink(base, dir_fd=pfd)

    def _create(self, pfd: int, base: str, entry: Entry, rel: str) -> None:
        info = entry.info
        owner = self._owner(info)
        if info.isdir():
            try:
                os.mkdir(base, 0o700, dir_fd=pfd)
            except FileExistsError:
                pass
            fd = os.open(base, rootpath.DIR_FLAGS, dir_fd=pfd)
            self._finish_fd(fd, info, owner, times=False)
            self.dir_times.append((self._full(rel), int(info.mtime)))
        elif info.isreg():
            fd = os.open(
                base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd
            )
            with open(fd, "wb", closefd=False) as out, (entry.content or _empty)() as src:
                _copy(src, out, info.size)
            self._finish_fd(fd, info, owner, times=True)
        elif info.issym():
            os.symlink(info.linkname, base, dir_fd=pfd)
            if owner is not None:
                os.chown(base, owner[0], owner[1], dir_fd=pfd, follow_symlinks=False)
            os.utime(base, (info.mtime, info.mtime), dir_fd=pfd, follow_symlinks=False)
        elif info.islnk():
            self._hardlink(pfd, base, info)
        elif info.ischr() or info.isblk() or info.isfifo():
            kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK if info.isblk() else stat.S_IFIFO
            os.mknod(base, kind | 0o600, os.makedev(info.devmajor, info.devminor), dir_fd=pfd)
            fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            self._finish_fd(fd, info, owner, times=True, via_proc=True)
        # other types (GNU sparse, contiguous...) carry nothing docker would extract either

    def _finish_fd(
        self,
        fd: int,
        info: tarfile.TarInfo,
        owner: tuple[int, int] | None,
        *,
        times: bool,
        via_proc: bool = False,
    ) -> None:
        """Owner, mode, xattrs and times through the fd itself: no path is looked up again."""
        target: int | str = f"/proc/self/fd/{fd}" if via_proc else fd
        try:
            if owner is not None:
                os.chown(target, owner[0], owner[1])
            os.chmod(target, info.mode & 0o7777)
            for key, value in info.pax_headers.items():
                if key.startswith("SCHILY.xattr."):
                    try:
                        os.setxattr(target, key[13:], value.encode("utf-8", "surrogateescape"))
                    except OSError:
                        pass  # docker ignores xattrs the filesystem refuses too
            if times:
                os.utime(target, (info.mtime, info.mtime))
        finally:
            os.close(fd)

    def _check_symlink(self, rel: str, linkname: str) -> None:
        # docker's breakout check: a relative target must stay inside the extraction directory.
        target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), linkname))
        if not linkname.startswith("/") and (target == ".." or target.startswith("../")):
            raise ArchiveError(f'invalid symlink "{self.shown(self._full(rel))}" -> "{linkname}"')

    def _hardlink(self, pfd: int, base: str, info: tarfile.TarInfo) -> None:
        rel = posixpath.normpath(info.linkname.lstrip("/") or ".")
        if rel == ".." or rel.startswith("../"):
            raise ArchiveError(f'invalid hardlink "{self.shown(self._full(rel))}" -> "{info.linkname}"')
        src = rootpath.resolve(self.root_fd, self._full(rel), follow_last=False)
        try:
            os.link(src.name, base, src_dir_fd=src.dir_fd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            src.close()

    def _set_dir_time(self, path: str, mtime: int) -> None:
        try:
            loc = rootpath.resolve(self.root_fd, path, follow_last=False)
        except OSError:
            return
        try:
            fd = rootpath.open_dir(loc)
        except OSError:
            return
        finally:
            loc.close()
        try:
            os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)


def _empty() -> BinaryIO:
    import io

    return io.BytesIO()


def _copy(src: BinaryIO, out: BinaryIO, size: int) -> None:
    left = size
    while left > 0:
        chunk = src.read(min(left, 1 << 20))
        if not chunk:
            break
        out.write(chunk)
        left -= len(chunk)
