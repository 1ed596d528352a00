"""A container's root filesystem: an overlay mount of its image's layers (read-only, shared)
under its own upper dir, or a private copy where overlayfs is unavailable.

Layer paths go into the mount options as short relative names (layers/l/<16 hex>, resolved
against the layers dir as the working directory) so that images with many layers stay under
the one-page limit of mount data.
"""

from __future__ import annotations

import errno
import os
import stat

from pallet.runtime import linux

TYPE_CHECKING = False  # pathlib and shutil stay out of the monitor's exit child (~4 ms of imports)
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

SHORT = 16
MOUNT_DATA_MAX = 4000  # a page, less room for the rest of the options


def short_link(layers_root: Path, chain_id: str) -> str:
    """Ensure layers/l/<short> -> ../<hex> exists; return the relative name for mount options."""
    hexid = chain_id.split(":", 1)[-1]
    links = layers_root / "l"
    links.mkdir(exist_ok=True)
    name = hexid[:SHORT]
    try:
        os.symlink(f"../{hexid}", links / name)
    except FileExistsError:
        if os.readlink(links / name) != f"../{hexid}":
            raise OSError(errno.EEXIST, f"layer short name collision for {hexid}") from None
    return f"l/{name}"


def mount_overlay(
    layers_root: Path, chain_ids: list[str], upper: Path, work: Path, target: Path, *, volatile: bool = False
) -> None:
    """chain_ids bottom first. An image with no layers still gets an overlay over an empty dir.

    volatile: for a container whose upper dir is thrown away at its exit (--rm), as podman does:
    overlayfs then never syncs the upper filesystem, which spares the unmount at the exit a
    flush of the whole filesystem (about a millisecond, more under load). Such an upper dir is
    marked (work/work/incompat/volatile) and overlayfs refuses to mount it again until the mark
    is gone: it is removed here, as a volatile mount's caller does not care for the old content."""
    if volatile:
        remove_tree(work / "work" / "incompat", ignore_errors=True)
    upper.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    if chain_ids:
        lowers = [short_link(layers_root, c) for c in reversed(chain_ids)]
    else:
        empty = layers_root / "empty"
        empty.mkdir(exist_ok=True)
        lowers = ["empty"]
    data = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work},index=off"
    try:
        _mount_from(layers_root, target, data + (",volatile" if volatile else ""), 0, len(chain_ids))
    except OSError as e:
        if not volatile or e.errno != errno.EINVAL:
            raise
        # A kernel before 5.10 has no volatile overlays: the plain mount is correct, only slower.
        _mount_from(layers_root, target, data, 0, len(chain_ids))


def mount_readonly_overlay(layers_root: Path, chain_ids: list[str], target: Path) -> None:
    """A read-only overlay of the layers (bottom first), without an upper dir."""
    (layers_root / "empty").mkdir(exist_ok=True)
    # At least two lower dirs: an overlay without an upper dir needs them on older kernels.
    lowers = [short_link(layers_root, c) for c in reversed(chain_ids)] + ["empty"]
    _mount_from(layers_root, target, f"lowerdir={':'.join(lowers)}", linux.MS_RDONLY, len(chain_ids))


def _mount_from(layers_root: Path, target: Path, data: str, flags: int, layers: int) -> None:
    """The overlay mount, its lower dirs named by the short links relative to layers_root (so that
    many layers fit in the one page of mount data)."""
    if len(data) > MOUNT_DATA_MAX:
        raise OSError(errno.E2BIG, f"too many layers for one overlay mount ({layers})")
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir(layers_root)
        linux.mount("overlay", str(target), "overlay", flags, data)
    finally:
        os.fchdir(cwd)
        os.close(cwd)


def overlay_supported(probe_dir: Path) -> bool:
    """Try a throwaway overlay mount where the container dirs live."""
    base = probe_dir / ".overlay-probe"
    dirs = [base / d for d in ("lower", "upper", "work", "merged")]
    try:
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        linux.mount(
            "overlay", str(dirs[3]), "overlay", 0, f"lowerdir={dirs[0]},upperdir={dirs[1]},workdir={dirs[2]}"
        )
        linux.umount2(str(dirs[3]), linux.MNT_DETACH)
        return True
    except OSError:
        return False
    finally:
        remove_tree(base, ignore_errors=True)


def copy_layers(layer_dirs: list[Path], target: Path) -> None:
    """The fallback: apply each layer (bottom first) onto a plain directory, honouring overlay
    whiteouts (0/0 char devices) and opaque directories as overlayfs would."""
    target.mkdir(parents=True, exist_ok=True)
    for layer in layer_dirs:
        _apply_dir(layer, target)


def _apply_dir(src: Path, dst: Path) -> None:
    import shutil

    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        s = src / e.name
        d = dst / e.name
        st = e.stat(follow_symlinks=False)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            _remove(d)
            continue
        if stat.S_ISDIR(st.st_mode):
            if d.is_symlink() or (d.exists() and not d.is_dir()):
                _remove(d)
            opaque = _is_opaque(s)
            if opaque and d.is_dir():
                remove_tree(d)
            if not d.exists():
                os.mkdir(d)
            _apply_dir(s, d)
            os.chown(d, st.st_uid, st.st_gid)
            os.chmod(d, stat.S_IMODE(st.st_mode))
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
            continue
        _remove(d)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(s, d, follow_symlinks=False)
        else:
            os.mknod(d, st.st_mode, st.st_rdev)
        os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(d, stat.S_IMODE(st.st_mode))
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        remove_tree(path)


def remove_tree(path: str | os.PathLike[str], *, ignore_errors: bool = False) -> None:
    """`rm -rf --one-file-system` without shutil (whose import pulls in bz2 and lzma): every
    directory is opened relative to its parent's fd with O_NOFOLLOW, so a symlink swapped in while
    we work is removed, never followed, and a mount point inside the tree is left alone (its rmdir
    then fails with EBUSY). A missing `path` is no error."""
    top = os.fspath(path)
    try:
        fd = os.open(top, _DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            if ignore_errors:
                return
            raise
        _try(ignore_errors, os.unlink, top)  # a symlink or a file: itself, never its target
        return
    try:
        _clear_dir(fd, os.fstat(fd).st_dev, ignore_errors)
    finally:
        os.close(fd)
    _try(ignore_errors, os.rmdir, top)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _clear_dir(fd: int, dev: int, ignore_errors: bool) -> None:
    with os.scandir(fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in entries:
        if is_dir:
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                continue
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):  # replaced under us: not a directory now
                    _try(ignore_errors, os.unlink, name, dir_fd=fd)
                elif not ignore_errors:
                    raise
                continue
            try:
                if os.fstat(sub).st_dev == dev:  # a mount point's content is not ours: its rmdir fails
                    _clear_dir(sub, dev, ignore_errors)
            finally:
                os.close(sub)
            _try(ignore_errors, os.rmdir, name, dir_fd=fd)
        else:
            _try(ignore_errors, os.unlink, name, dir_fd=fd)


def _try(ignore_errors: bool, fn: Callable[..., None], name: str, *, dir_fd: int | None = None) -> None:
    try:
        fn(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError:
        if not ignore_errors:
            raise


def unmount(target: str | os.PathLike[str]) -> None:
    """Detach the rootfs mount if there is one; a plain (copied) rootfs needs nothing."""
    try:
        linux.umount2(os.fspath(target), linux.MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise


def is_mounted(target: Path) -> bool:
    t = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == t for line in f)


def make_dir_in(root: Path, path: str, uid: int, gid: int) -> None:
    """mkdir -p of `path` inside `root`, resolving symlinks as if root were / (never escaping);
    new directories belong to the container's user, as docker's WorkingDir does."""
    cur = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in [p for p in path.split("/") if p and p != "."]:
            if part == "..":
                continue  # at worst stays at the rootfs top, like the kernel's chroot
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=cur)
                os.chown(part, uid, gid, dir_fd=cur, follow_symlinks=False)
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    return  # a symlink on the way: the runtime resolves it inside the container
                raise
            os.close(cur)
            cur = nxt
    finally:
        os.close(cur)
