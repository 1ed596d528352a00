"""A container's security settings: docker's daemon-side reading of HostConfig's CapAdd/CapDrop,
Privileged, SecurityOpt, Devices and DeviceCgroupRules — checked at create, turned into their OCI
form (capabilities, seccomp, no_new_privs, linux.devices, device cgroup rules) for the bundle.

Capabilities are clamped to the host's bounding set (CapBnd): a host without CAP_SYS_RESOURCE can
still run `--privileged`, with everything the host has.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping

from pallet.engine.hostconfig import go_quote
from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_DEVICE_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")
# Directories of /dev that --privileged does not copy (containerd's HostDevices).
_SKIPPED_DEV_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})


def _all_capabilities() -> list[str]:
    from pallet.runtime import linux

    last = linux.cap_last_cap()
    return [name for name, num in sorted(linux.CAPABILITIES.items(), key=lambda kv: kv[1]) if num <= last]


def normalize_cap(name: str) -> str:
    c = name.strip().upper()
    return c if c == "ALL" or c.startswith("CAP_") else "CAP_" + c


def host_bounding_set() -> set[str]:
    """Capability names in this process's bounding set (CapBnd of /proc/self/status)."""
    from pallet.runtime import linux

    mask = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                break
    return {name for name, num in linux.CAPABILITIES.items() if mask >> num & 1}


def _checked_caps(names: list[str] | None) -> list[str]:
    if not names:
        return []
    known = set(_all_capabilities())
    out = []
    for raw in names or []:
        cap = normalize_cap(raw)
        if cap != "ALL" and cap not in known:
            raise InvalidArgument(f'unknown capability: "{cap}"')
        out.append(cap)
    return out


def capabilities(hc: Mapping[str, Any]) -> list[str]:
    """moby's TweakCapabilities over docker's defaults, then clamped to the host's bounding set."""
    from pallet.runtime.spec import DEFAULT_CAPABILITIES

    adds, drops = _checked_caps(hc.get("CapAdd")), _checked_caps(hc.get("CapDrop"))
    if hc.get("Privileged"):
        caps = _all_capabilities()
    elif "ALL" in adds:
        caps = [c for c in _all_capabilities() if c not in drops]
    elif "ALL" in drops:
        caps = list(dict.fromkeys(adds))
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drops]
        caps += [c for c in adds if c not in caps]
    host = host_bounding_set()
    return [c for c in caps if c in host]


def parse_security_opts(opts: list[str] | None) -> dict[str, Any]:
    """dockerd's parseSecurityOpt: {"no_new_privileges": bool, "seccomp": "" | "unconfined" | JSON}.
    label= and apparmor= are accepted and have no effect: this host runs neither SELinux nor AppArmor,
    which is how dockerd treats them there."""
    out: dict[str, Any] = {"no_new_privileges": False, "seccomp": ""}
    for opt in opts or []:
        if opt == "no-new-privileges":
            out["no_new_privileges"] = True
            continue
        if opt == "disable":
            continue
        if "=" in opt:
            key, _, val = opt.partition("=")
        elif ":" in opt:
            key, _, val = opt.partition(":")
        else:
            raise InvalidArgument(f"invalid --security-opt 1: {go_quote(opt)}")
        if key in ("label", "apparmor"):
            continue
        if key == "seccomp":
            out["seccomp"] = val
        elif key == "no-new-privileges" and val in _TRUE + _FALSE:
            out["no_new_privileges"] = val in _TRUE
        else:
            raise InvalidArgument(f"invalid --security-opt 2: {go_quote(opt)}")
    return out


def seccomp_profile(hc: Mapping[str, Any]) -> str | dict[str, Any]:
    """What default_spec takes: "default", "unconfined" or a moby-format profile."""
    import json

    if hc.get("Privileged"):
        return "unconfined"
    value = parse_security_opts(hc.get("SecurityOpt"))["seccomp"]
    if value in ("", "builtin"):
        return "default"
    if value == "unconfined":
        return "unconfined"
    try:
        profile = json.loads(value)
    except ValueError as e:
        raise InvalidArgument(f"decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict):
        raise InvalidArgument("decoding seccomp profile failed: not a JSON object")
    return profile


def check_seccomp_profile(profile: dict[str, Any]) -> None:
    """Fail at create, not at start, on a profile the runtimes would refuse."""
    from pallet.runtime import seccomp
    from pallet.runtime.spec import native_arch, seccomp_for

    try:
        seccomp.action_value(str(profile.get("defaultAction") or ""), profile.get("defaultErrnoRet"))
        resolved = seccomp_for(profile, _all_capabilities(), native_arch())
        for rule in resolved.get("syscalls") or []:
            seccomp.action_value(rule["action"], rule.get("errnoRet"))
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidArgument(f"invalid seccomp profile: {e}") from None


def no_new_privileges(hc: Mapping[str, Any]) -> bool:
    return bool(parse_security_opts(hc.get("SecurityOpt"))["no_new_privileges"])


def _device_entry(path: str, container_path: str, perms: str) -> dict[str, Any] | None:
    st = os.stat(path)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return {
        "path": container_path,
        "type": kind,
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "_access": perms,
    }


def _devices_under(
    host_dir: str, container_dir: str, perms: str, skip: frozenset[str]
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    try:
        entries = sorted(os.scandir(host_dir), key=lambda e: e.name)
    except OSError:
        return found
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            if e.name not in skip:
                found += _devices_under(e.path, f"{container_dir}/{e.name}", perms, skip)
            continue
        if e.is_symlink() or (host_dir == "/dev" and e.name == "console"):
            continue
        try:
            dev = _device_entry(e.path, f"{container_dir}/{e.name}", perms)
        except OSError:
            continue
        if dev is not None:
            found.append(dev)
    return found


def _mapped_devices(mapping: Mapping[str, Any]) -> list[dict[str, Any]]:
    src = str(mapping.get("PathOnHost") or "")
    dst = str(mapping.get("PathInContainer") or src)
    perms = str(mapping.get("CgroupPermissions") or "rwm")
    where = f"error gathering device information while adding custom device {go_quote(src)}"
    resolved = os.path.realpath(src) if os.path.islink(src) else src
    try:
        st = os.stat(resolved)
    except OSError as e:
        raise InvalidArgument(f"{where}: {(e.strerror or str(e)).lower()}") from None
    if stat.S_ISDIR(st.st_mode):
        found = _devices_under(resolved, dst.rstrip("/"), perms, frozenset())
    else:
        dev = _device_entry(resolved, dst, perms)
        found = [dev] if dev else []
    if not found:
        raise InvalidArgument(f"{where}: not a device node")
    return found


def check_devices(hc: Mapping[str, Any]) -> None:
    for mapping in hc.get("Devices") or []:
        _mapped_devices(mapping)
    for rule in hc.get("DeviceCgroupRules") or []:
        if not _DEVICE_RULE.match(rule):
            raise InvalidArgument(f"invalid device cgroup format '{rule}'")


def oci_devices(hc: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(linux.devices, extra resources.devices rules) for --privileged, --device and
    --device-cgroup-rule, resolved on the host now (at start), as dockerd does."""
    found: list[dict[str, Any]] = []
    if hc.get("Privileged"):
        found = _devices_under("/dev", "/dev", "rwm", _SKIPPED_DEV_DIRS)
    for mapping in hc.get("Devices") or []:
        found += _mapped_devices(mapping)
    devices: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for dev in found:
        access = dev.pop("_access")
        devices.append(dev)
        if not hc.get("Privileged"):
            numbers = {"major": dev["major"], "minor": dev["minor"]}
            rules.append({"allow": True, "type": dev["type"], **numbers, "access": access})
    for rule in hc.get("DeviceCgroupRules") or []:
        m = _DEVICE_RULE.match(rule)
        if m:
            kind, major, minor, access = m.groups()
            entry: dict[str, Any] = {"allow": True, "type": kind, "access": access}
            if major != "*":
                entry["major"] = int(major)
            if minor != "*":
                entry["minor"] = int(minor)
            rules.append(entry)
    return devices, rules


def check(hc: dict[str, Any], warnings: list[str]) -> None:
    """Create-time checks of the security settings; warns about added capabilities the host lacks."""
    adds = _checked_caps(hc.get("CapAdd"))
    _checked_caps(hc.get("CapDrop"))
    parse_security_opts(hc.get("SecurityOpt"))
    profile = seccomp_profile(hc)
    if isinstance(profile, dict):
        check_seccomp_profile(profile)
    check_devices(hc)
    if not hc.get("Privileged") and adds and "ALL" not in adds:
        missing = sorted(set(adds) - host_bounding_set())
        if missing:
            warnings.append(
                f"capabilities not in this host's bounding set are not granted: {', '.join(missing)}"
            )
