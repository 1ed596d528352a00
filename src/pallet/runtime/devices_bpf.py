"""The device allow-list of `linux.resources.devices` as an eBPF program for cgroup v2.

cgroup v2 has no devices controller: access to device nodes is decided by a BPF_PROG_TYPE_CGROUP_DEVICE
program attached to the cgroup. Without it a container with CAP_MKNOD (Docker's default) could make and
open any device node, so v2 hosts get this program. Rules are matched last-to-first; the first match
decides, and a device no rule matches is allowed (as in a fresh v1 devices cgroup: the spec's leading
"deny all" rule is what closes it).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

from pallet.runtime import linux

_PROG_TYPE_CGROUP_DEVICE = 15
_ATTACH_CGROUP_DEVICE = 6
_F_ALLOW_MULTI = 2
_DEV_BLOCK, _DEV_CHAR = 1, 2
_ACC = {"m": 1, "r": 2, "w": 4}

# eBPF opcodes
_LDXW = 0x61  # dst = *(u32 *)(src + off)
_AND64K = 0x57
_RSH64K = 0x77
_MOV64K = 0xB7
_MOV64X = 0xBF
_JNEK = 0x55  # if dst != imm goto +off
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _parse(rule: Mapping[str, Any] | str) -> tuple[bool, str, int | None, int | None, int]:
    """(allow, type, major, minor, access bits) from an OCI rule or a v1-style "c 1:3 rwm" line."""
    if isinstance(rule, str):
        kind, nums, acc = (rule.split() + ["rwm"])[:3]
        major_s, _, minor_s = nums.partition(":")
        major = None if major_s in ("*", "") else int(major_s)
        minor = None if minor_s in ("*", "") else int(minor_s)
        return True, kind, major, minor, sum(_ACC[c] for c in acc)
    major = rule.get("major")
    minor = rule.get("minor")
    return (
        bool(rule.get("allow")),
        rule.get("type") or "a",
        None if major is None or major < 0 else int(major),
        None if minor is None or minor < 0 else int(minor),
        sum(_ACC[c] for c in (rule.get("access") or "rwm")),
    )


def program(rules: Iterable[Mapping[str, Any] | str]) -> bytes:
    """Compile the rules (OCI dicts, or v1 lines which are allows) into eBPF instructions."""
    # r2 = device type, r3 = requested access, r4 = major, r5 = minor (struct bpf_cgroup_dev_ctx).
    out = [
        _insn(_LDXW, 2, 1, 0),
        _insn(_AND64K, 2, imm=0xFFFF),
        _insn(_LDXW, 3, 1, 0),
        _insn(_RSH64K, 3, imm=16),
        _insn(_LDXW, 4, 1, 4),
        _insn(_LDXW, 5, 1, 8),
    ]
    for allow, kind, major, minor, acc in reversed([_parse(r) for r in rules]):
        checks: list[tuple[int, ...]] = []  # (code, dst, src, imm) before the conditional jump
        if kind != "a":
            checks.append((_JNEK, 2, 0, _DEV_BLOCK if kind == "b" else _DEV_CHAR))
        if acc != 7:
            # The requested access must be a subset of the rule's: (access & ~acc) == 0.
            checks.append((_MOV64X, 1, 3, 0))
            checks.append((_AND64K, 1, 0, ~acc & 7))
            checks.append((_JNEK, 1, 0, 0))
        if major is not None:
            checks.append((_JNEK, 4, 0, major))
        if minor is not None:
            checks.append((_JNEK, 5, 0, minor))
        body_len = len(checks) + 2  # + "r0 = allow" + "exit"
        for n, (code, dst, src, imm) in enumerate(checks):
            off = body_len - n - 1 if code == _JNEK else 0  # jump past this rule's block
            out.append(_insn(code, dst, src, off, imm))
        out.append(_insn(_MOV64K, 0, imm=int(allow)))
        out.append(_insn(_EXIT))
        if not checks:
            # Matches every device: nothing after it can run (and the verifier rejects unreachable code).
            return b"".join(out)
    out.append(_insn(_MOV64K, 0, imm=1))
    out.append(_insn(_EXIT))
    return b"".join(out)


def attach(cgroup_dir: str, rules: Iterable[Mapping[str, Any] | str]) -> None:
    """Load the program for `rules` and attach it to the v2 cgroup at `cgroup_dir`."""
    import ctypes
    import os

    prog = program(rules)
    insns = ctypes.create_string_buffer(prog, len(prog))
    license_ = ctypes.create_string_buffer(b"Apache")
    # union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, then zeros.
    attr = struct.pack(
        "<IIQQ", _PROG_TYPE_CGROUP_DEVICE, len(prog) // 8, ctypes.addressof(insns), ctypes.addressof(license_)
    ) + bytes(128 - 24)
    prog_fd = linux.bpf(linux.BPF_PROG_LOAD, attr)
    try:
        cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            attr = struct.pack("<IIII", cg_fd, prog_fd, _ATTACH_CGROUP_DEVICE, _F_ALLOW_MULTI) + bytes(16)
            linux.bpf(linux.BPF_PROG_ATTACH, attr)
        finally:
            os.close(cg_fd)
    finally:
        os.close(prog_fd)  # the attachment keeps the program alive
