"""Root filesystem setup for the built-in runtime: spec mounts, device nodes, pivot_root, masked and
read-only paths. Runs inside the container's fresh mount namespace.

Paths inside the rootfs come from an image, i.e. from a stranger: every mount point is resolved with
symlinks evaluated as if the rootfs were `/` (they can never lead out of it), and the target is then
pinned with an O_PATH fd whose real path is checked before anything is mounted on it.
"""

from __future__ import annotations

import errno
import os
import stat

from pallet.runtime import linux
from pallet.runtime.cgroups import container_dir

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from pallet.runtime.cgroups import Hierarchy

# option -> (set?, flag)
_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (True, linux.MS_RDONLY),
    "rro": (True, linux.MS_RDONLY),
    "rw": (False, linux.MS_RDONLY),
    "nosuid": (True, linux.MS_NOSUID),
    "suid": (False, linux.MS_NOSUID),
    "nodev": (True, linux.MS_NODEV),
    "dev": (False, linux.MS_NODEV),
    "noexec": (True, linux.MS_NOEXEC),
    "exec": (False, linux.MS_NOEXEC),
    "sync": (True, linux.MS_SYNCHRONOUS),
    "async": (False, linux.MS_SYNCHRONOUS),
    "dirsync": (True, linux.MS_DIRSYNC),
    "remount": (True, linux.MS_REMOUNT),
    "mand": (True, linux.MS_MANDLOCK),
    "nomand": (False, linux.MS_MANDLOCK),
    "atime": (False, linux.MS_NOATIME),
    "noatime": (True, linux.MS_NOATIME),
    "diratime": (False, linux.MS_NODIRATIME),
    "nodiratime": (True, linux.MS_NODIRATIME),
    "relatime": (True, linux.MS_RELATIME),
    "norelatime": (False, linux.MS_RELATIME),
    "strictatime": (True, linux.MS_STRICTATIME),
    "nostrictatime": (False, linux.MS_STRICTATIME),
    "lazytime": (True, linux.MS_LAZYTIME),
    "nolazytime": (False, linux.MS_LAZYTIME),
    "nosymfollow": (True, linux.MS_NOSYMFOLLOW),
    "symfollow": (False, linux.MS_NOSYMFOLLOW),
    "bind": (True, linux.MS_BIND),
    "rbind": (True, linux.MS_BIND | linux.MS_REC),
}
_PROPAGATION = {
    "private": linux.MS_PRIVATE,
    "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "shared": linux.MS_SHARED,
    "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE,
    "rslave": linux.MS_SLAVE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE,
    "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}
_IGNORED = frozenset({"tmpcopyup", "idmap", "ridmap", "rrw", "defaults"})

# OCI's default devices: every runtime provides these.
DEFAULT_DEVICES: tuple[tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)
_DEV_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)
# statvfs f_flag bits -> MS_* flags to keep across a bind remount.
_KEEP_FLAGS = (
    (os.ST_NOSUID, linux.MS_NOSUID),
    (os.ST_NODEV, linux.MS_NODEV),
    (os.ST_NOEXEC, linux.MS_NOEXEC),
    (os.ST_NOATIME, linux.MS_NOATIME),
    (os.ST_NODIRATIME, linux.MS_NODIRATIME),
    (os.ST_RELATIME, linux.MS_RELATIME),
)


def parse_options(options: Sequence[str]) -> tuple[int, int, str]:
    """(mount flags, propagation flags, data string) for an OCI mount's options."""
    flags = prop = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            on, bit = _FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        elif opt in _PROPAGATION:
            prop |= _PROPAGATION[opt]
        elif opt not in _IGNORED:
            data.append(opt)
    return flags, prop, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """`unsafe` resolved under `root` with symlinks evaluated as if `root` were `/` (never escapes it)."""
    base = root.rstrip("/")
    pending = [p for p in unsafe.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        path = base + "/" + "/".join([*done, part])
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 255:
                raise OSError(errno.ELOOP, "too many symlinks", root + unsafe)
            target = os.readlink(path)
            if target.startswith("/"):
                done = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        done.append(part)
    return base + "/" + "/".join(done) if done else (base or "/")


def mkdir_all(root: str, dest: str) -> str:
    """Create `dest` and its parents inside `root` (symlink-safe); returns the resolved path."""
    base = root.rstrip("/")
    path = secure_join(root, dest)
    rel = path[len(base) :].strip("/")
    cur = base
    for part in rel.split("/") if rel else []:
        cur = f"{cur}/{part}"
        try:
            os.mkdir(cur, 0o755)
        except FileExistsError:
            if stat.S_ISLNK(os.lstat(cur).st_mode):  # swapped for a symlink since we resolved: refuse
                raise OSError(errno.ELOOP, "mount point changed into a symlink", cur) from None
    return path


def _ensure_file(root: str, dest: str) -> str:
    path = secure_join(root, dest)
    mkdir_all(root, os.path.dirname(path[len(root.rstrip("/")) :]) or "/")
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
    return path


class _Pinned:
    """An O_PATH fd on a mount point verified to lie inside root.

    Mount onto `fd_path` (no path walk an attacker could race). The fd keeps pointing at the covered
    directory, so later operations on the new mount itself (remount, propagation) use `real`, the
    verified path, which now leads to the mount's root.
    """

    def __init__(self, root: str, path: str) -> None:
        self.fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.fd_path = f"/proc/self/fd/{self.fd}"
        self.real = os.readlink(self.fd_path)
        base = root.rstrip("/")
        if base and self.real != base and not self.real.startswith(base + "/"):
            os.close(self.fd)
            raise OSError(errno.EXDEV, f"mount point resolves outside the rootfs ({self.real})", path)

    def __enter__(self) -> _Pinned:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _kept_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _KEEP_FLAGS if f & st)


def _bind(root: str, m: Mapping[str, Any], bundle: str, flags: int, prop: int) -> None:
    source = m["source"] if m["source"].startswith("/") else os.path.join(bundle, m["source"])
    dest = m["destination"]
    # stat first: a missing source must fail before a mount point is made for it in the rootfs.
    is_dir = stat.S_ISDIR(os.stat(source).st_mode)
    path = mkdir_all(root, dest) if is_dir else _ensure_file(root, dest)
    with _Pinned(root, path) as pin:
        linux.mount(source, pin.fd_path, None, linux.MS_BIND | (flags & linux.MS_REC))
        extra = flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT)
        if extra:
            # Flags on a bind only take effect through a remount of that bind.
            remount = linux.MS_BIND | linux.MS_REMOUNT | extra | _kept_flags(pin.real)
            linux.mount(None, pin.real, None, remount)
        if prop:
            linux.mount(None, pin.real, None, prop)


class CgroupView:
    """What a `cgroup` mount needs to know about the host's cgroups (gathered before pivot_root)."""

    __slots__ = ("hierarchies", "links", "cgroups_path", "namespaced")

    def __init__(
        self,
        hierarchies: Sequence[Hierarchy],
        links: Sequence[tuple[str, str]],
        cgroups_path: str,
        namespaced: bool,
    ) -> None:
        self.hierarchies = hierarchies
        self.links = links  # comounted controller symlinks in the host's /sys/fs/cgroup
        self.cgroups_path = cgroups_path
        self.namespaced = namespaced  # own cgroup namespace: mount fresh cgroupfs rather than bind


def mount_cgroup(root: str, m: Mapping[str, Any], view: CgroupView) -> None:
    flags, _, _ = parse_options(m.get("options") or [])
    dest = m["destination"]
    path = mkdir_all(root, dest)
    hs = view.hierarchies
    unified = next((h for h in hs if h.version == 2 and h.mountpoint == "/sys/fs/cgroup"), None)
    with _Pinned(root, path) as pin:
        if unified is not None:
            if view.namespaced:
                linux.mount("cgroup2", pin.fd_path, "cgroup2", flags)
            else:
                linux.mount(container_dir(unified, view.cgroups_path), pin.fd_path, None, linux.MS_BIND)
                linux.mount(None, pin.real, None, linux.MS_BIND | linux.MS_REMOUNT | flags)
            return
        # v1: a tmpfs holding one mount per hierarchy, like the host's /sys/fs/cgroup.
        linux.mount("tmpfs", pin.fd_path, "tmpfs", flags & ~linux.MS_RDONLY, "mode=755")
        top = pin.real
    # Inside the tmpfs we just mounted nothing comes from the image: plain paths, no resolving.
    for h in hs:
        sub = f"{top}/{h.name}"
        try:
            os.mkdir(sub, 0o755)
        except FileExistsError:
            pass
        if view.namespaced:
            fstype = "cgroup2" if h.version == 2 else "cgroup"
            # A named hierarchy (name=systemd) has no controller: mount it with "none".
            named = h.controllers and h.controllers[0].startswith("name=")
            ctrls = ("none", *h.controllers) if named else h.controllers
            linux.mount("cgroup", sub, fstype, flags, None if h.version == 2 else ",".join(ctrls))
        else:
            linux.mount(container_dir(h, view.cgroups_path), sub, None, linux.MS_BIND)
            linux.mount(None, sub, None, linux.MS_BIND | linux.MS_REMOUNT | flags)
    for name, link in view.links:
        try:
            os.symlink(link, f"{top}/{name}")
        except FileExistsError:
            pass
    if flags & linux.MS_RDONLY:
        linux.mount(None, top, None, linux.MS_BIND | linux.MS_REMOUNT | flags)


def mount_all(
    root: str,
    mounts: Sequence[Mapping[str, Any]],
    *,
    bundle: str,
    cgroup: CgroupView | None,
    before_cgroup: Callable[[], None] | None = None,
) -> None:
    """Every spec mount in order. With `cgroup` None, `cgroup` mounts are skipped: the caller does them
    later with mount_cgroup (after the container has been moved into its cgroup). `before_cgroup` runs
    right before a `cgroup` mount is made (binding the container's cgroup dirs needs them to exist)."""
    for m in mounts:
        flags, prop, data = parse_options(m.get("options") or [])
        kind = m.get("type") or ""
        if kind == "bind" or flags & linux.MS_BIND:
            _bind(root, m, bundle, flags | linux.MS_BIND, prop)
            continue
        if kind == "cgroup":
            if cgroup is not None:
                if before_cgroup is not None:
                    before_cgroup()
                mount_cgroup(root, m, cgroup)
            continue
        path = mkdir_all(root, m["destination"])
        with _Pinned(root, path) as pin:
            try:
                linux.mount(m.get("source") or kind, pin.fd_path, kind, flags, data or None)
            except OSError as e:
                if kind != "sysfs" or e.errno != errno.EPERM:
                    raise
                # sysfs can't be mounted fresh from a netns we don't own: bind the host's, as runc does.
                linux.mount("/sys", pin.fd_path, None, linux.MS_BIND | linux.MS_REC)
                linux.mount(None, pin.real, None, linux.MS_BIND | linux.MS_REMOUNT | flags)
            if prop:
                linux.mount(None, pin.real, None, prop)


def _device_type(kind: str) -> int:
    return {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]


def create_devices(root: str, devices: Sequence[Mapping[str, Any]]) -> None:
    """OCI default devices plus `linux.devices`; mknod, or a bind of the host node when mknod is refused."""
    wanted: dict[str, Mapping[str, Any]] = {
        path: {"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 0o666}
        for path, major, minor in DEFAULT_DEVICES
    }
    for dev in devices:
        wanted[dev["path"]] = dev
    old_umask = os.umask(0)
    try:
        for dev in wanted.values():
            parent = mkdir_all(root, os.path.dirname(dev["path"]))
            path = f"{parent}/{os.path.basename(dev['path'])}"
            if os.path.lexists(path):
                os.unlink(path)
            mode = int(dev.get("fileMode", 0o666)) & 0o7777
            try:
                os.mknod(
                    path,
                    mode | _device_type(dev["type"]),
                    os.makedev(dev.get("major", 0), dev.get("minor", 0)),
                )
            except PermissionError:
                _ensure_file(root, dev["path"])
                with _Pinned(root, path) as pin:
                    linux.mount(dev["path"], pin.fd_path, None, linux.MS_BIND)
                continue
            if dev.get("uid") is not None or dev.get("gid") is not None:
                os.lchown(path, int(dev.get("uid", 0)), int(dev.get("gid", 0)))
    finally:
        os.umask(old_umask)


def dev_symlinks(root: str) -> None:
    links = [*_DEV_SYMLINKS, ("pts/ptmx", "/dev/ptmx")]
    if os.path.exists(root + "/proc/kcore"):
        links.append(("/proc/kcore", "/dev/core"))
    for target, name in links:
        path = secure_join(root, name)
        if name == "/dev/ptmx" and os.path.lexists(path):
            os.unlink(path)
        try:
            os.symlink(target, path)
        except FileExistsError:
            pass


def bind_console(slave_path: str) -> None:
    """After pivot_root: the container's pty slave bind-mounted over /dev/console, as runc does it."""
    path = _ensure_file("/", "/dev/console")
    with _Pinned("/", path) as pin:
        linux.mount(slave_path, pin.fd_path, None, linux.MS_BIND)


def pivot(root: str) -> None:
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only the new.
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


def mask_paths(paths: Sequence[str]) -> None:
    for path in paths:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISDIR(st.st_mode):
            linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY)
        else:
            linux.mount("/dev/null", path, None, linux.MS_BIND)


def readonly_paths(paths: Sequence[str]) -> None:
    for path in paths:
        try:
            linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
        except FileNotFoundError:
            continue
        flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_REC
        linux.mount(path, path, None, flags | _kept_flags(path))


def readonly_root() -> None:
    flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY
    linux.mount(None, "/", None, flags | _kept_flags("/"))


def write_sysctls(sysctl: Mapping[str, str]) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        except OSError as e:
            raise OSError(e.errno, f"sysctl {key}={value}: {e.strerror}", path) from None
        finally:
            os.close(fd)
