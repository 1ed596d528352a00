"""`RUN --mount=type=cache,target=/root/.cache,…`: the mount specification of a RUN step.

The value is one CSV record of `key=value` fields (a few keys, like `ro`, may stand alone).
BuildKit parses it twice: when the Dockerfile is parsed, only `from` is looked at (it cannot
contain variables, because the stage graph is built from it); at dispatch time every value is
expanded with the stage's variables and the whole mount is validated. `parse_mount` does both,
depending on whether it is given an expander; without one, a spec that contains no `$` is also
fully validated so that mistakes are reported with their line before anything runs.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass

from pallet.build.flags import parse_go_bool, parse_ram_bytes
from pallet.build.gocompat import with_suggestion

__all__ = ["MOUNT_TYPES", "Mount", "MountError", "mount_from", "parse_mount"]

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES = ("shared", "private", "locked")
_ALL_KEYS = ["type", "from", "source", "target", "readonly", "id", "sharing", "required", "size", "mode",
             "uid", "gid", "src", "dst", "destination", "ro", "rw", "readwrite", "env"]


class MountError(ValueError):
    """An invalid --mount value; the caller adds the location."""


@dataclass
class Mount:
    type: str = "bind"
    from_: str = ""  # a stage name or an image reference; "" = the build context (bind) or scratch
    source: str = ""
    target: str = ""
    readonly: bool = False
    size_limit: int = 0  # tmpfs, bytes
    cache_id: str = ""  # cache: id=…; secret: the secret's id
    sharing: str = ""  # cache: shared | private | locked ("" = shared)
    required: bool = False  # secret/ssh
    env: str | None = None  # secret: expose as this environment variable
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def _fields(spec: str) -> list[str]:
    try:
        rows = list(csv.reader([spec], strict=True))
    except csv.Error as e:
        raise MountError(f"failed to parse csv mounts: {e}") from None
    return rows[0] if rows else []


def mount_from(spec: str) -> str:
    """The `from=` of a mount spec, checked for variables (the stage graph needs it unexpanded)."""
    found = ""
    for item in _fields(spec):
        key, has_value, value = item.partition("=")
        if has_value and key.lower() == "from":
            idx = value.find("$")
            if idx != -1 and idx != len(value) - 1:
                raise MountError("'from' doesn't support variable expansion, define alias stage instead")
            found = value
    return found


def _parse_bool(key: str, value: str) -> bool:
    try:
        return parse_go_bool(value)
    except ValueError:
        raise MountError(f"invalid value for {key}: {value}") from None


def _parse_uint(key: str, value: str, base: int) -> int:
    digits = "01234567" if base == 8 else "0123456789"
    if not value or any(ch not in digits for ch in value):  # int() would accept "0o7", "+1", "1_0"
        raise MountError(f"invalid value {value} for {key}")
    number = int(value, base)
    if number >= 1 << 32:
        raise MountError(f"invalid value {value} for {key}")
    return number


def parse_mount(spec: str, expand: Callable[[str], str] | None = None) -> Mount:
    """The mount a --mount value describes, its values expanded with `expand` when given."""
    m = Mount()
    ro_auto = True
    for item in _fields(spec):
        key, has_value, value = item.partition("=")
        key = key.lower()
        if not has_value:
            if key in ("readonly", "ro"):
                m.readonly, ro_auto = True, False
            elif key in ("readwrite", "rw"):
                m.readonly, ro_auto = False, False
            elif key == "required":
                if m.type not in ("secret", "ssh"):
                    raise MountError(f"unexpected key '{key}' for mount type '{m.type}'")
                m.required = True
            else:
                raise MountError(f"invalid field '{item}' must be a key=value pair")
            continue
        if expand is not None:
            value = expand(value)
        _apply(m, key, value, item)
        if key in ("readonly", "ro", "readwrite", "rw"):
            ro_auto = False
    _validate(m)
    if ro_auto:
        m.readonly = m.type not in ("cache", "tmpfs")
    return m


def _apply(m: Mount, key: str, value: str, item: str) -> None:
    if key == "type":
        if value.lower() not in MOUNT_TYPES:
            raise MountError(with_suggestion(f'unsupported mount type "{value}"', value, list(MOUNT_TYPES),
                                             case_sensitive=True))
        m.type = value.lower()
    elif key == "from":
        m.from_ = value
    elif key in ("source", "src"):
        m.source = value
    elif key in ("target", "dst", "destination"):
        m.target = value
    elif key in ("readonly", "ro"):
        m.readonly = _parse_bool(key, value)
    elif key in ("readwrite", "rw"):
        m.readonly = not _parse_bool(key, value)
    elif key == "required":
        if m.type not in ("secret", "ssh"):
            raise MountError(f"unexpected key '{key}' for mount type '{m.type}'")
        m.required = _parse_bool(key, value)
    elif key == "size":
        if m.type != "tmpfs":
            raise MountError(f"unexpected key '{key}' for mount type '{m.type}'")
        try:
            m.size_limit = parse_ram_bytes(value)
        except ValueError:
            raise MountError(f"invalid value for {key}: {value}") from None
    elif key == "id":
        m.cache_id = value
    elif key == "sharing":
        if value.lower() not in SHARING_MODES:
            raise MountError(with_suggestion(f'unsupported sharing value "{value}"', value,
                                             list(SHARING_MODES), case_sensitive=True))
        m.sharing = value.lower()
    elif key == "mode":
        m.mode = _parse_uint(key, value, 8)
    elif key == "uid":
        m.uid = _parse_uint(key, value, 10)
    elif key == "gid":
        m.gid = _parse_uint(key, value, 10)
    elif key == "env":
        m.env = value
    else:
        raise MountError(with_suggestion(f"unexpected key '{key}' in '{item}'", key, _ALL_KEYS,
                                         case_sensitive=True))


def _validate(m: Mount) -> None:
    if m.type not in ("secret", "ssh", "cache"):
        for name, value in (("mode", m.mode), ("uid", m.uid), ("gid", m.gid)):
            if value is not None:
                raise MountError(f'{name} not allowed for "{m.type}" type mounts')
    if m.type == "secret":
        if m.from_:
            raise MountError("secret mount should not have a from")
        if m.sharing:
            raise MountError("secret mount should not define sharing")
        if not m.source and not m.target and not m.cache_id:
            raise MountError("invalid secret mount. one of source, target required")
        if m.source and m.cache_id:
            raise MountError("both source and id can't be set")
    if m.sharing and m.type != "cache":
        raise MountError(f"invalid cache sharing set for {m.type} mount")
