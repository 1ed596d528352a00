"""Load an OCI `linux.seccomp` section into the kernel through libseccomp (ctypes).

libseccomp turns the section into a BPF program; compiling Docker's profile for three architectures costs
~10 ms, so the program is compiled once per distinct section and kept in a small cache directory
(content-checked, see `program`). Installing a program is then a single prctl/seccomp call.

Compilation follows runc's rules: syscall names libseccomp doesn't know are skipped, rules whose action
equals the default action are skipped, and conditions on the same argument index are split into separate
rules (libseccomp ANDs conditions within one rule, and refuses two on one argument).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import zlib

from pallet.runtime import linux

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

# Where compiled programs are kept; PALLET_SECCOMP_CACHE overrides it, an empty value disables the cache.
DEFAULT_CACHE_DIR = "/run/pallet/seccomp"

_ACT_KILL_THREAD = 0x00000000
_ACT_KILL_PROCESS = 0x80000000
_ACT_TRAP = 0x00030000
_ACT_ERRNO = 0x00050000
_ACT_NOTIFY = 0x7FC00000
_ACT_TRACE = 0x7FF00000
_ACT_LOG = 0x7FFC0000
_ACT_ALLOW = 0x7FFF0000

_OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

_FLTATR_CTL_NNP = 3
_FLTATR_CTL_TSYNC = 4
_FLTATR_CTL_LOG = 6
_FLTATR_CTL_SSB = 7
_FLAG_ATTRS = {
    "SECCOMP_FILTER_FLAG_TSYNC": _FLTATR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _FLTATR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _FLTATR_CTL_SSB,
}
_NR_SCMP_ERROR = -1

_FILTER_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


_lib: ctypes.CDLL | None = None


def _libseccomp() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_release.restype = None
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        ]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_version.restype = ctypes.c_void_p
        _lib = lib
    return _lib


def action_value(action: str, errno_ret: int | None, *, default_errno: int = errno.EPERM) -> int:
    """libseccomp's action token for an OCI action name."""
    if action == "SCMP_ACT_ERRNO":
        return _ACT_ERRNO | ((default_errno if errno_ret is None else errno_ret) & 0xFFFF)
    if action == "SCMP_ACT_TRACE":
        return _ACT_TRACE | ((default_errno if errno_ret is None else errno_ret) & 0xFFFF)
    simple = {
        "SCMP_ACT_KILL": _ACT_KILL_THREAD,
        "SCMP_ACT_KILL_THREAD": _ACT_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": _ACT_KILL_PROCESS,
        "SCMP_ACT_TRAP": _ACT_TRAP,
        "SCMP_ACT_LOG": _ACT_LOG,
        "SCMP_ACT_ALLOW": _ACT_ALLOW,
        "SCMP_ACT_NOTIFY": _ACT_NOTIFY,
    }
    try:
        return simple[action]
    except KeyError:
        raise ValueError(f"unknown seccomp action {action!r}") from None


def _check(ret: int, what: str) -> None:
    # libseccomp returns -errno on failure.
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")


def _rule_args(args: list[Mapping[str, Any]]) -> list[list[_ArgCmp]]:
    """One libseccomp rule per returned list of conditions."""
    conds = [
        _ArgCmp(int(a["index"]), _OPS[a["op"]], int(a.get("value", 0)), int(a.get("valueTwo", 0)))
        for a in args
    ]
    indexes = [c.arg for c in conds]
    if len(set(indexes)) == len(indexes):
        return [conds]
    return [[c] for c in conds]


class Filter:
    """A compiled filter, not yet installed. Compile before pivot_root: libseccomp must be loaded from the
    host's filesystem, and compile errors are then reported before anything irreversible happens."""

    def __init__(self, section: Mapping[str, Any]) -> None:
        lib = _libseccomp()
        default_errno = int(section.get("defaultErrnoRet") or errno.EPERM)
        default_action = action_value(section.get("defaultAction", "SCMP_ACT_ALLOW"), default_errno)
        self._ctx = lib.seccomp_init(default_action)
        if not self._ctx:
            raise OSError(errno.EINVAL, "seccomp_init failed")
        try:
            self._add_rules(lib, section, default_action)
        except BaseException:
            self.release()
            raise

    def _add_rules(self, lib: ctypes.CDLL, section: Mapping[str, Any], default_action: int) -> None:
        ctx = self._ctx
        # Don't let libseccomp force no_new_privs on every container (runc clears this too).
        _check(lib.seccomp_attr_set(ctx, _FLTATR_CTL_NNP, 0), "seccomp_attr_set(NNP)")
        for flag in section.get("flags") or []:
            attr = _FLAG_ATTRS.get(flag)
            if attr is not None:
                _check(lib.seccomp_attr_set(ctx, attr, 1), f"seccomp_attr_set({flag})")
        for arch in section.get("architectures") or []:
            token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
            if token == 0:
                continue  # an architecture this libseccomp doesn't know: skip, as runc does
            ret = lib.seccomp_arch_add(ctx, token)
            if ret != -errno.EEXIST:
                _check(ret, f"seccomp_arch_add({arch})")
        for call in section.get("syscalls") or []:
            action = action_value(call["action"], call.get("errnoRet"))
            if action == default_action:
                continue
            rules = _rule_args(call.get("args") or [])
            for name in call["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == _NR_SCMP_ERROR:
                    continue
                for conds in rules:
                    array = (_ArgCmp * len(conds))(*conds) if conds else None
                    _check(
                        lib.seccomp_rule_add_array(ctx, action, nr, len(conds), array),
                        f"seccomp_rule_add({name})",
                    )

    def load(self) -> None:
        """Install the filter for the calling process (kept across fork and exec).

        Needs CAP_SYS_ADMIN or no_new_privs."""
        _check(_libseccomp().seccomp_load(self._ctx), "seccomp_load")

    def export(self) -> bytes:
        """The BPF program (an array of struct sock_filter) that load() would install."""
        fd = os.memfd_create("pallet-seccomp", os.MFD_CLOEXEC)
        try:
            _check(_libseccomp().seccomp_export_bpf(self._ctx, fd), "seccomp_export_bpf")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._ctx:
            _libseccomp().seccomp_release(self._ctx)
            self._ctx = None


def _libseccomp_version() -> str:
    lib = _libseccomp()
    ver = ctypes.cast(lib.seccomp_version(), ctypes.POINTER(ctypes.c_uint * 3)).contents
    return ".".join(str(v) for v in ver)


def compile_program(section: Mapping[str, Any]) -> bytes:
    f = Filter(section)
    try:
        return f.export()
    finally:
        f.release()


def program(section: Mapping[str, Any], cache_dir: str | None = None) -> bytes:
    """The BPF program for `section`, from the cache when an identical section was compiled before.

    A cache file holds the canonical JSON of the section it was compiled from and is used only when that
    text matches exactly, so a checksum collision can never hand a container someone else's filter.
    """
    if any(c.get("action") == "SCMP_ACT_NOTIFY" for c in section.get("syscalls") or []):
        raise OSError(errno.ENOTSUP, "seccomp: SCMP_ACT_NOTIFY is not supported by the built-in runtime")
    if cache_dir is None:
        cache_dir = os.environ.get("PALLET_SECCOMP_CACHE", DEFAULT_CACHE_DIR)
    if not cache_dir:
        return compile_program(section)
    canon = json.dumps(section, sort_keys=True, separators=(",", ":")).encode()
    key = f"{zlib.crc32(canon):08x}-{len(canon)}-{os.uname().machine}"
    path = os.path.join(cache_dir, key + ".bpf")
    try:
        with open(path, "rb") as f:
            blob = f.read()
        head, _, rest = blob.partition(b"\n")
        version, _, size = head.decode().partition(" ")
        if rest[: int(size)] == canon:
            return rest[int(size) :]
    except (OSError, ValueError):
        pass
    prog = compile_program(section)
    # The libseccomp version goes in the header only as a note; the program is plain kernel BPF.
    blob = f"{_libseccomp_version()} {len(canon)}".encode() + b"\n" + canon + prog
    try:
        os.makedirs(cache_dir, 0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(blob)
        os.rename(tmp, path)
    except OSError:
        pass  # a cache we can't write only costs time
    return prog


def filter_flags(section: Mapping[str, Any]) -> int:
    """The seccomp(2) flag bits for the section's `flags`; flags this runtime doesn't know are ignored."""
    bits = 0
    for flag in section.get("flags") or ():
        bits |= _FILTER_FLAGS.get(flag, 0)
    return bits


def install(prog: bytes, flags: int = 0) -> None:
    """Install a compiled program for the calling process. Needs CAP_SYS_ADMIN or no_new_privs."""
    linux.seccomp_set_filter(prog, flags)


def load(section: Mapping[str, Any]) -> None:
    """Compile (or fetch from the cache) and install `section` for the calling process."""
    install(program(section), filter_flags(section))
