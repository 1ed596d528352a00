"""COPY/ADD --chown and --chmod: owner strings resolved against the destination's own passwd and
group files, and octal modes checked as BuildKit does."""

from __future__ import annotations

from pathlib import Path

from pallet.build.session import StepFailed


def resolve_chown(root: Path, spec: str) -> tuple[int, int] | None:
    """`user[:group]` against the destination's passwd/group files (BuildKit's readUser)."""
    if not spec:
        return None
    from pallet.runtime.users import read_in_root

    user, _, group = spec.partition(":")
    if user.isdigit():
        uid = gid = int(user)
    else:
        entry = _find(read_in_root(root, "etc/passwd"), user)
        if entry is None or len(entry) < 4:
            raise StepFailed(f"unable to convert uid/gid chown string to host mapping: "
                             f"unable to find user {user}: no matching entries in passwd file")
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            entry = _find(read_in_root(root, "etc/group"), group)
            if entry is None or len(entry) < 3:
                raise StepFailed(f"unable to convert uid/gid chown string to host mapping: "
                                 f"unable to find group {group}: no matching entries in group file")
            gid = int(entry[2])
    return uid, gid


def _find(text: str | None, name: str) -> list[str] | None:
    for line in (text or "").splitlines():
        fields = line.split(":")
        if fields and fields[0] == name and len(fields) > 2 and fields[2].isdigit():
            return fields
    return None


def parse_chmod(value: str) -> int | None:
    if not value:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise StepFailed(f"invalid chmod parameter: '{value}'. it should be octal string and between 0 "
                         "and 07777")
    return mode
