"""`-u user[:group]` resolved through the container's own /etc/passwd and /etc/group, read
without following any symlink out of the rootfs."""

from __future__ import annotations

import os
from pathlib import Path

from pallet.errors import PalletError
from pallet.records import Record


class ProcessUser(Record):
    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid: int, gid: int, groups: list[int] | None = None, home: str = "/root") -> None:
        self.uid = uid
        self.gid = gid
        self.groups = groups if groups is not None else []
        self.home = home


def read_in_root(rootfs: Path, rel: str) -> str | None:
    """Read a file inside rootfs, resolving symlinks as if rootfs were /."""
    parts = [p for p in rel.split("/") if p]
    cur: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if cur:
                cur.pop()
            continue
        if p == ".":
            continue
        path = os.path.join(rootfs, *cur, p)
        if os.path.islink(path):
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(path)
            if target.startswith("/"):
                cur = []
            parts = [x for x in target.split("/") if x] + parts
            continue
        cur.append(p)
    try:
        with open(os.path.join(rootfs, *cur), encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _entries(text: str | None) -> list[list[str]]:
    if not text:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve(rootfs: Path, spec: str, group_add: list[str] | None = None) -> ProcessUser:
    user, _, group = (spec or "").partition(":")
    passwd = _entries(read_in_root(rootfs, "etc/passwd"))
    groups_file = _entries(read_in_root(rootfs, "etc/group"))
    name = None
    home = "/"
    if not user:
        uid, gid = 0, 0
        entry = next((e for e in passwd if len(e) >= 4 and e[2] == "0"), None)
    else:
        entry = next(
            (e for e in passwd if len(e) >= 4 and (e[0] == user or (user.isdigit() and e[2] == user))), None
        )
        if entry is None and not user.isdigit():
            raise PalletError(f"unable to find user {user}: no matching entries in passwd file")
        uid = int(user) if user.isdigit() else int(entry[2])  # type: ignore[index]
        gid = 0
    if entry is not None:
        name = entry[0]
        gid = int(entry[3]) if entry[3].isdigit() else 0
        home = entry[5] if len(entry) > 5 and entry[5] else "/"
    elif not user:
        home = "/root"
    if group:
        gid = _group_id(groups_file, group)
    supplementary: list[int] = []
    if not group and name:
        supplementary = [
            int(g[2]) for g in groups_file if len(g) >= 4 and g[2].isdigit() and name in g[3].split(",")
        ]
    for g in group_add or []:
        supplementary.append(_group_id(groups_file, g))
    if not group and name is None and not user:
        home = "/root"
    return ProcessUser(uid, gid, sorted(set(supplementary)), home)


def _group_id(groups_file: list[list[str]], group: str) -> int:
    if group.isdigit():
        return int(group)
    for g in groups_file:
        if len(g) >= 3 and g[0] == group and g[2].isdigit():
            return int(g[2])
    raise PalletError(f"unable to find group {group}: no matching entries in group file")
