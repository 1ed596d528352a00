"""Load an OCI `linux.seccomp` section into the kernel through libseccomp (ctypes).

Follows runc's rules: syscall names libseccomp doesn't know are skipped, rules whose action equals the
default action are skipped, and conditions on the same argument index are split into separate rules
(libseccomp ANDs conditions within one rule, and refuses two on one argument).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Mapping
from typing import Any

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
        _ArgCmp(int(a["index"]), _OPS[a["op"]], int(a.get("value", 0)), int(a.get("valueTwo", 0))) for a in args
    ]
    indexes = [c.arg for c in conds]
    if len(set(indexes)) == len(indexes):
        return [conds]
    return [[c] for c in conds]


def load(section: Mapping[str, Any]) -> None:
    """Compile and install the filter for the calling process (inherited across fork and exec).

    The caller must have CAP_SYS_ADMIN or no_new_privs set: we clear libseccomp's own NNP attribute so the
    filter doesn't silently force no_new_privs on every container (runc does the same).
    """
    lib = _libseccomp()
    default_errno = int(section.get("defaultErrnoRet") or errno.EPERM)
    default_action = action_value(section.get("defaultAction", "SCMP_ACT_ALLOW"), default_errno)
    ctx = lib.seccomp_init(default_action)
    if not ctx:
        raise OSError(errno.EINVAL, "seccomp_init failed")
    try:
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
        _check(lib.seccomp_load(ctx), "seccomp_load")
    finally:
        lib.seccomp_release(ctx)
