"""ctypes bindings for the Linux syscalls that Python 3.11's `os` lacks.

This is the one place where pallet talks to libc directly. Every wrapper raises OSError carrying the
errno and a message that names the call and the path (or argument) it was given.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal

# libc is loaded once; use_errno makes ctypes save errno right after each call so it can't be clobbered.
_libc = ctypes.CDLL("libc.so.6", use_errno=True)

# Namespaces (linux/sched.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
CLONE_INTO_CGROUP = 0x200000000

# OCI namespace type -> clone flag.
NAMESPACE_FLAGS: dict[str, int] = {
    "mount": CLONE_NEWNS,
    "cgroup": CLONE_NEWCGROUP,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "time": CLONE_NEWTIME,
}

# Mount flags (linux/mount.h).
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MNT_FORCE = 0x1
MNT_DETACH = 0x2

# prctl options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_LOWER = 3
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Capability numbers (linux/capability.h).
CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

# glibc has no wrapper on some libcs; fall back to the raw syscall number for the machine.
_PIVOT_ROOT_NR = {
    "x86_64": 155,
    "aarch64": 41,
    "riscv64": 41,
    "loongarch64": 41,
    "s390x": 217,
    "ppc64le": 203,
}


_SECCOMP_NR = {
    "x86_64": 317,
    "aarch64": 277,
    "riscv64": 277,
    "loongarch64": 277,
    "s390x": 348,
    "ppc64le": 358,
}
_CLONE3_NR = 435  # one number on every architecture: syscalls added since 5.1 share a table
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1


def _fail(call: str, target: str | None = None) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{call}: {os.strerror(err)}", target)


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise _fail("unshare", hex(flags))


def setns(fd: int, nstype: int = 0) -> None:
    if _libc.setns(fd, nstype) != 0:
        raise _fail("setns", f"fd {fd}")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _fail(f"mount {fstype or ''} {source or ''}".rstrip(), target)


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        raise _fail("umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    fn = getattr(_libc, "pivot_root", None)
    if fn is not None:
        ret = fn(_b(new_root), _b(put_old))
    else:
        ret = _libc.syscall(_PIVOT_ROOT_NR[os.uname().machine], _b(new_root), _b(put_old))
    if ret != 0:
        raise _fail("pivot_root", new_root)


def clone_into_cgroup(cgroup_fd: int) -> int:
    """fork() with the child born in the cgroup v2 directory `cgroup_fd` (clone3, CLONE_INTO_CGROUP).

    Moving a process there afterwards through cgroup.procs waits for an RCU grace period (the cgroup
    threadgroup lock, 6-15 ms); being born there costs nothing extra. Returns the child's pid in the
    parent and 0 in the child, like os.fork(); raises OSError if the kernel refuses (before 5.7, a
    seccomp filter), and the caller then falls back to os.fork().

    A raw system call, so neither glibc's nor Python's at-fork handlers run: only for a single-threaded
    caller (checked) whose child execs or exits without going back to ordinary Python life.
    """
    if len(os.listdir("/proc/self/task")) != 1:
        raise OSError(errno.EBUSY, "clone3: the caller has more than one thread")
    # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
    # set_tid, set_tid_size, cgroup.
    args = (ctypes.c_uint64 * 11)(CLONE_INTO_CGROUP, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, 0, 0, cgroup_fd)
    size = ctypes.c_size_t(ctypes.sizeof(args))
    pid: int = _libc.syscall(ctypes.c_long(_CLONE3_NR), ctypes.byref(args), size)
    if pid < 0:
        raise _fail("clone3(CLONE_INTO_CGROUP)", f"cgroup fd {cgroup_fd}")
    return pid


def fork_in_cgroup(cgroup_fd: int) -> tuple[int, bool]:
    """fork(), the child born in the v2 cgroup `cgroup_fd` (-1: none) when the kernel lets us, see
    clone_into_cgroup; returns (pid, or 0 in the child; whether it was born there). When clone3 is
    refused this is a plain fork, except for ENOMEM (a dying pid namespace), which a fork would meet
    too and is raised."""
    if cgroup_fd >= 0:
        try:
            return clone_into_cgroup(cgroup_fd), True
        except OSError as e:
            if e.errno == errno.ENOMEM:
                raise
    return os.fork(), False


def sethostname(name: str) -> None:
    raw = name.encode()
    if _libc.sethostname(raw, len(raw)) != 0:
        raise _fail("sethostname", name)


def setdomainname(name: str) -> None:
    raw = name.encode()
    if _libc.setdomainname(raw, len(raw)) != 0:
        raise _fail("setdomainname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    ret: int = _libc.prctl(option, arg2, arg3, arg4, arg5)
    if ret < 0:
        raise _fail("prctl", str(option))
    return ret


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def set_keepcaps(keep: bool) -> None:
    prctl(PR_SET_KEEPCAPS, int(keep))


def capbset_drop(cap: int) -> None:
    prctl(PR_CAPBSET_DROP, cap)


def capbset_read(cap: int) -> bool:
    return prctl(PR_CAPBSET_READ, cap) == 1


def ambient_clear_all() -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def ambient_raise(cap: int) -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


_cap_last: int | None = None


def cap_last_cap() -> int:
    global _cap_last
    if _cap_last is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                _cap_last = int(f.read())
        except OSError:
            _cap_last = max(CAPABILITIES.values())
    return _cap_last


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of `pid` (0 = self) as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(hdr), data) != 0:
        raise _fail("capget", str(pid))
    return (
        data[0].effective | data[1].effective << 32,
        data[0].permitted | data[1].permitted << 32,
        data[0].inheritable | data[1].inheritable << 32,
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(hdr), data) != 0:
        raise _fail("capset", f"eff={effective:#x} prm={permitted:#x} inh={inheritable:#x}")


def cap_mask(names: list[str] | None) -> int:
    """Bit mask for capability names; names this kernel doesn't know are ignored (as runc does)."""
    last = cap_last_cap()
    mask = 0
    for name in names or ():
        num = CAPABILITIES.get(name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper())
        if num is not None and num <= last:
            mask |= 1 << num
    return mask


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter(prog: bytes, flags: int = 0) -> None:
    """Install a classic-BPF seccomp program (struct sock_filter[]) for the calling process."""
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _SockFprog(len(prog) // 8, ctypes.addressof(buf))
    if flags:  # only seccomp(2) takes flags
        ret = _libc.syscall(
            _SECCOMP_NR[os.uname().machine], SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(fprog)
        )
    else:
        ret = _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0)
    if ret != 0:
        raise _fail("seccomp(SET_MODE_FILTER)", f"{len(prog) // 8} instructions")


_BPF_NR = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "loongarch64": 280, "s390x": 351, "ppc64le": 361}
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8


def bpf(cmd: int, attr: bytes) -> int:
    """The bpf(2) syscall with a packed `union bpf_attr`; returns its result (an fd for PROG_LOAD)."""
    buf = ctypes.create_string_buffer(attr, len(attr))
    ret: int = _libc.syscall(_BPF_NR[os.uname().machine], cmd, buf, len(attr))
    if ret < 0:
        raise _fail("bpf", f"cmd {cmd}")
    return ret
