"""The built-in runtime's container init (B, see builtin.py) and what A and B share: the report
line they write to the caller, entering namespaces. B never returns and never raises: every failure
becomes an "err" report and exit 1.

Imported by builtin.py at module level: B runs forked, with no time for imports."""

from __future__ import annotations

import errno
import os

from pallet.runtime import cgroups, linux, mounts, process

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, NoReturn

    from pallet.runtime.builtin import Plan


def report(fd: int, kind: str, text: str = "") -> None:
    os.write(fd, f"{kind} {text}".rstrip().replace("\n", " ").encode()[:4000] + b"\n")


def describe(stage: str, exc: BaseException) -> str:
    return f"{stage}: {exc} (errno {getattr(exc, 'errno', None) or 0})"


def fail(fd: int, stage: str, exc: BaseException) -> NoReturn:
    try:
        report(fd, "err", describe(stage, exc))
    finally:
        os._exit(1)


def enter_namespaces(namespaces: Sequence[Mapping[str, Any]], skip: Sequence[str]) -> int:
    """setns() into those with a path, unshare() the others; returns the flags of the new ones."""
    flags = 0
    for ns in namespaces:
        kind = ns["type"]
        if kind in skip:
            continue
        if kind == "user":
            raise OSError(errno.EINVAL, "user namespaces are not supported by the built-in runtime")
        if ns.get("path"):
            fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, linux.NAMESPACE_FLAGS[kind])
            finally:
                os.close(fd)
        else:
            flags |= linux.NAMESPACE_FLAGS[kind]
    if flags:
        linux.unshare(flags)
    return flags


# --- inside B: never return, never raise -----------------------------------------------------------------


def run_init(plan: Plan, sync_w: int, start_r: int, join_r: int) -> NoReturn:
    spec = plan.spec
    proc = spec.get("process") or {}
    lx = spec.get("linux") or {}
    namespaces = lx.get("namespaces") or []
    new_ns = {ns["type"] for ns in namespaces if not ns.get("path")}
    view = plan.cgroup
    v1: list[tuple[int, str]] = []  # (fd on a v1 hierarchy's mount, our cgroup in it) until joined
    joined = False
    stage = "signals"

    def join() -> None:
        # A has created our cgroups and written their limits once it says "j".
        nonlocal joined, stage
        if not joined:
            outer, stage = stage, "cgroups"
            if os.read(join_r, 1) != b"j":
                raise OSError(errno.ECHILD, "cgroup setup did not complete")
            os.close(join_r)
            for fd, rel in v1:
                cgroups.enter_self(fd, rel)
                os.close(fd)
            joined, stage = True, outer

    if plan.console is not None:
        from pallet.runtime import console  # loaded by create()
    try:
        process.reset_signals()
        stage = "stdio"
        keep = {sync_w, start_r, join_r, plan.seccomp_r}
        if plan.console is not None:
            keep.add(plan.console.fileno())
        process.setup_stdio(None if plan.console is not None else plan.stdio, keep)
        stage = "cgroups"
        # Opened while the host's cgroupfs is in reach: we join after pivot_root.
        for h in view.hierarchies:
            if h.version == 1:
                fd = os.open(h.mountpoint, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                v1.append((fd, cgroups.relative_dir(h, view.cgroups_path)))

        stage = "mount namespace"
        enter_namespaces([ns for ns in namespaces if ns["type"] == "mount"], skip=())
        root_cfg = spec.get("root") or {}
        rootfs = os.path.realpath(os.path.join(plan.bundle, root_cfg.get("path", "rootfs")))
        if "mount" in new_ns:
            stage = "rootfs"
            _build_rootfs(plan, rootfs, view, join)
            stage = "pivot_root"
            mounts.pivot(rootfs)
            if plan.console is not None:
                stage = "console"
                console.setup_in_init(plan.console, proc, bind=True)
            stage = "sysctl"
            mounts.write_sysctls(lx.get("sysctl") or {})
            stage = "masked paths"
            mounts.mask_paths(lx.get("maskedPaths") or [])
            stage = "readonly paths"
            mounts.readonly_paths(lx.get("readonlyPaths") or [])
        else:
            os.chroot(rootfs)  # sharing the host's mount namespace: no pivot_root possible
            if plan.console is not None:
                stage = "console"
                console.setup_in_init(plan.console, proc, bind=False)
        stage = "hostname"
        if spec.get("hostname") and "uts" in new_ns:
            linux.sethostname(spec["hostname"])
        if spec.get("domainname") and "uts" in new_ns:
            linux.setdomainname(spec["domainname"])
        stage = "rlimits"
        for w in process.apply_rlimits(proc.get("rlimits") or []):
            report(sync_w, "warn", w)
        if proc.get("oomScoreAdj") is not None:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(proc["oomScoreAdj"]).encode())
            finally:
                os.close(fd)
        # Only now, with all the rest done, join the container's cgroups (limits applied by then).
        stage = "cgroups"
        join()
        enter_namespaces([ns for ns in namespaces if ns["type"] == "cgroup"], skip=())
        if "mount" in new_ns:
            if view.namespaced:
                for m in spec.get("mounts") or []:
                    if m.get("type") == "cgroup":
                        mounts.mount_cgroup("/", m, view)
            if root_cfg.get("readonly"):
                mounts.readonly_root()
        user = proc.get("user") or {}
        if user.get("umask") is not None:
            os.umask(int(user["umask"]))
        if proc.get("noNewPrivileges"):
            linux.set_no_new_privs()
        stage = "capabilities"
        prog, prog_flags = process.receive_seccomp(plan.seccomp_r) if plan.seccomp_r >= 0 else (None, 0)
        for w in process.drop_privileges(proc, user, prog, prog_flags):
            report(sync_w, "warn", w)
        stage = "cwd"
        os.chdir(proc.get("cwd") or "/")
        report(sync_w, "ok")
        os.close(sync_w)
    except BaseException as e:  # noqa: BLE001
        fail(sync_w, stage, e)
    try:
        go = os.read(start_r, 1)
    except BaseException:  # noqa: BLE001
        os._exit(1)
    if not go:
        os._exit(1)  # the caller went away without start(): never run the user process
    os.close(start_r)
    process.exec_user_process(proc.get("args") or [], proc.get("env") or [])


def _build_rootfs(plan: Plan, rootfs: str, view: mounts.CgroupView, join: Callable[[], None]) -> None:
    """Everything done before pivot_root. `cgroup` mounts wait until the cgroup is joined if namespaced;
    if not, they bind the host's cgroup dirs, which `join` waits for."""
    spec = plan.spec
    lx = spec.get("linux") or {}
    prop = {"shared": linux.MS_SHARED, "slave": linux.MS_SLAVE, "unbindable": linux.MS_UNBINDABLE}
    linux.mount(None, "/", None, linux.MS_REC | prop.get(lx.get("rootfsPropagation", ""), linux.MS_PRIVATE))
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
    cgroup = None if view.namespaced else view
    mounts.mount_all(rootfs, spec.get("mounts") or [], bundle=plan.bundle, cgroup=cgroup, before_cgroup=join)
    mounts.create_devices(rootfs, lx.get("devices") or [])
    mounts.dev_symlinks(rootfs)
    cwd = (spec.get("process") or {}).get("cwd") or "/"
    if not os.path.isdir(mounts.secure_join(rootfs, cwd)):
        mounts.mkdir_all(rootfs, cwd)  # docker creates a missing WORKDIR
