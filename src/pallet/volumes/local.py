"""The local volume driver on disk: a `_data` directory per volume, or a filesystem mounted
there (`type=tmpfs`, or any `type`/`device`/`o` such as a bind of a host directory), and the
copy-up of an image's content into a fresh volume."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

from pallet.volumes.store import VolumeRecord


def create_dirs(volumes_dir: Path, rec: VolumeRecord) -> Path:
    data = rec.mountpoint(volumes_dir)
    data.parent.mkdir(mode=0o701, parents=True, exist_ok=True)
    data.mkdir(mode=0o755, exist_ok=True)
    return data


def _is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def mount(volumes_dir: Path, rec: VolumeRecord) -> Path:
    """The host path to bind into a container; mounts the volume's filesystem when it has one."""
    data = create_dirs(volumes_dir, rec)
    fstype = rec.options.get("type")
    if not fstype or _is_mounted(data):
        return data
    from pallet.runtime import linux

    device = rec.options.get("device", "")
    opts = rec.options.get("o", "")
    flags = 0
    words = [w for w in opts.split(",") if w]
    if "bind" in words or fstype == "none":
        flags |= linux.MS_BIND
        words = [w for w in words if w not in ("bind", "rbind")]
        if not os.path.exists(device):
            raise FileNotFoundError(
                errno.ENOENT,
                f"error while mounting volume '{data}': failed to mount local "
                f"volume: mount {device}:{data}, flags: 0x1000: no such file or directory",
            )
    if "size" in rec.options:
        words.append(f"size={rec.options['size']}")
    linux.mount(device, str(data), fstype, flags, ",".join(words) or None)
    return data


def unmount(volumes_dir: Path, rec: VolumeRecord) -> None:
    data = rec.mountpoint(volumes_dir)
    if rec.options.get("type") and _is_mounted(data):
        from pallet.runtime import linux

        linux.umount2(str(data), linux.MNT_DETACH)


def remove(volumes_dir: Path, rec: VolumeRecord) -> None:
    unmount(volumes_dir, rec)
    shutil.rmtree(volumes_dir / rec.name, ignore_errors=True)


def is_empty(path: Path) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except FileNotFoundError:
        return True


def copy_up(source: Path, data: Path) -> None:
    """Docker fills an empty volume with what the image has at the mount path (ownership,
    modes and times kept) the first time a container mounts it."""
    if not source.is_dir() or source.is_symlink() or not is_empty(data):
        return
    st = source.stat()
    os.chown(data, st.st_uid, st.st_gid)
    os.chmod(data, stat.S_IMODE(st.st_mode))
    _copy_children(source, data)


def _copy_children(src: Path, dst: Path) -> None:
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            os.mkdir(target)
            _copy_children(Path(entry.path), target)
            _copy_meta(Path(entry.path), target)
        else:
            _copy_file(entry.path, target)


def _copy_file(src: str | Path, dst: str | Path) -> None:
    s = os.lstat(src)
    if stat.S_ISLNK(s.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(s.st_mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    else:
        os.mknod(dst, s.st_mode, s.st_rdev)
    _copy_meta(Path(src), Path(dst))


def _copy_meta(src: Path, dst: Path) -> None:
    s = os.lstat(src)
    os.chown(dst, s.st_uid, s.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(s.st_mode):
        os.chmod(dst, stat.S_IMODE(s.st_mode))
    os.utime(dst, ns=(s.st_atime_ns, s.st_mtime_ns), follow_symlinks=False)
