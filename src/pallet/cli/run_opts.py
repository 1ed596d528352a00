"""Parsers for the values of `run`/`create` flags, as docker's CLI (its `opts` package, go-units and
pflag) reads them: sizes, CPU counts, Go durations, ulimits, devices, env and label files, restart
policies, security options. Each raises InvalidArgument with docker's wording."""

from __future__ import annotations

import os
import re

from pallet.engine.hostconfig import go_quote, sysctl_allowed
from pallet.engine.resources import ULIMIT_NAMES
from pallet.errors import InvalidArgument
from pallet.gounits import parse_go_duration, ram_in_bytes

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t"


def flag_error(flag: str, value: str, reason: str) -> InvalidArgument:
    """pflag's message for a value its type refuses."""
    return InvalidArgument(f'invalid argument "{value}" for "{flag}" flag: {reason}')


def mem_bytes(flag: str, value: str | None) -> int:
    if value is None:
        return 0
    try:
        return ram_in_bytes(value)
    except ValueError as e:
        raise flag_error(flag, value, str(e)) from None


def mem_swap_bytes(flag: str, value: str | None) -> int:
    """`--memory-swap`: a size, or -1 for unlimited swap."""
    return -1 if value == "-1" else mem_bytes(flag, value)


def nano_cpus(flag: str, value: str | None) -> int:
    """docker's NanoCPUs: a decimal number of CPUs, exact to 1e-9."""
    if value is None:
        return 0
    from fractions import Fraction

    try:
        cpus = Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise flag_error(flag, value, f"failed to parse {value} as a rational number") from None
    nano = cpus * 1_000_000_000
    if nano.denominator != 1:
        raise flag_error(flag, value, "value is too precise")
    return int(nano)


def int_flag(flag: str, value: str | None, default: int = 0) -> int:
    if value is None:
        return default
    try:
        return int(value, 10)
    except ValueError:
        raise flag_error(flag, value, f'strconv.ParseInt: parsing "{value}": invalid syntax') from None


def duration_flag(flag: str, value: str | None) -> int:
    if value is None:
        return 0
    try:
        return parse_go_duration(value)
    except ValueError as e:
        raise flag_error(flag, value, str(e)) from None


def parse_ulimit(value: str) -> dict[str, Any]:
    """go-units ParseUlimit: `name=soft[:hard]`, -1 meaning unlimited."""
    name, eq, limits = value.partition("=")
    if not eq:
        raise InvalidArgument(f"invalid ulimit argument: {value}")
    if name not in ULIMIT_NAMES:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    parts = limits.split(":")
    if len(parts) > 2:
        raise InvalidArgument(
            f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`"
        )
    try:
        nums = [int(p, 10) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not re.fullmatch(r"[+-]?\d+", p))
        raise InvalidArgument(f'strconv.ParseInt: parsing "{bad}": invalid syntax') from None
    soft = nums[0]
    hard = nums[1] if len(nums) == 2 else soft
    if hard != -1 and soft > hard:
        raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Hard": hard, "Soft": soft}


def ulimits(values: list[str]) -> list[dict[str, Any]]:
    by_name: dict[str, dict[str, Any]] = {}
    for v in values:
        u = parse_ulimit(v)
        by_name[u["Name"]] = u  # a later flag for the same resource wins, as docker's UlimitOpt
    return list(by_name.values())


def _valid_device_mode(mode: str) -> bool:
    return bool(mode) and len(set(mode)) == len(mode) and set(mode) <= set("rwm")


def parse_device(value: str) -> dict[str, str]:
    """`--device HOST[:CONTAINER][:rwm]` as docker's validateLinuxPath and parseLinuxDevice."""
    if value.count(":") > 2 or value.split(":", 1)[0] == "":
        raise InvalidArgument(f"bad format for path: {value}")
    parts = value.split(":")
    src, dst, perms = parts[0], "", "rwm"
    if len(parts) == 2:
        if _valid_device_mode(parts[1]):
            perms = parts[1]
        else:
            dst = parts[1]
    elif len(parts) == 3:
        dst, perms = parts[1], parts[2]
        if not _valid_device_mode(perms):
            raise InvalidArgument(f"bad mode specified: {perms}")
    dst = os.path.normpath(dst) if dst else os.path.normpath(src)
    if not dst.startswith("/"):
        raise InvalidArgument(f"{dst} is not an absolute path")
    return {"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms}


def extra_host(value: str) -> str:
    """opts.ValidateExtraHost: `host:ip` or `host=ip` (an IPv6 address may be bracketed)."""
    import ipaddress

    sep = "=" if "=" in value else ":"
    host, found, ip = value.partition(sep)
    if not found or not host:
        raise InvalidArgument(f"bad format for add-host: {go_quote(value)}")
    if ip != "host-gateway":
        bare = ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: {go_quote(ip)}") from None
    return value


def sysctls(values: list[str]) -> dict[str, str]:
    """opts.ValidateSysctl: only namespaced sysctls (IPC kernel.* ones, net.*, fs.mqueue.*)."""
    out: dict[str, str] = {}
    for v in values:
        key, eq, val = v.partition("=")
        if not eq or not sysctl_allowed(key):
            raise InvalidArgument(f"sysctl '{v}' is not allowed")
        out[key] = val
    return out


def tmpfs(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        path, _, opts = v.partition(":")
        out[path] = opts
    return out


def restart_policy(value: str | None) -> dict[str, Any]:
    """opts.ParseRestartPolicy: `no`, `always`, `unless-stopped`, `on-failure[:max-retries]`."""
    if not value:
        return {"Name": "no", "MaximumRetryCount": 0}
    name, colon, count = value.partition(":")
    if colon and not name:
        raise InvalidArgument("invalid restart policy format: no policy provided before colon")
    retries = 0
    if count:
        try:
            retries = int(count, 10)
        except ValueError:
            raise InvalidArgument(
                "invalid restart policy format: maximum retry count must be an integer"
            ) from None
    return {"Name": name, "MaximumRetryCount": retries}


def log_opts(driver: str, values: list[str]) -> dict[str, str]:
    opts = kv_map(values)
    if driver == "none" and values:
        raise InvalidArgument(f"invalid logging opts for driver {driver}")
    return opts


def kv_map(values: list[str]) -> dict[str, str]:
    """opts.ConvertKVStringsToMap: `k=v`, a bare `k` maps to ""."""
    out: dict[str, str] = {}
    for v in values:
        key, _, val = v.partition("=")
        out[key] = val
    return out


def security_opts(values: list[str]) -> tuple[list[str], list[str] | None]:
    """parseSecurityOpts and parseSystemPaths: a seccomp profile file is read here and sent as JSON
    (the daemon never reads the client's files); `systempaths=unconfined` becomes empty
    MaskedPaths/ReadonlyPaths. Returns (SecurityOpt, [] when system paths are unconfined else None)."""
    import json

    out: list[str] = []
    unconfined_paths: list[str] | None = None
    for opt in values:
        key, eq, val = opt.partition("=")
        if not eq and key != "no-new-privileges":
            key, eq, val = opt.partition(":")
        if (not eq or not val) and key != "no-new-privileges":
            raise InvalidArgument(f"invalid --security-opt: {go_quote(opt)}")
        if opt == "systempaths=unconfined":
            unconfined_paths = []
            continue
        if key == "seccomp" and val not in ("builtin", "unconfined"):
            try:
                data = open(val, "rb").read()  # noqa: SIM115
            except OSError as e:
                raise InvalidArgument(
                    f"opening seccomp profile ({val}) failed: open {val}: {e.strerror or e}"
                ) from None
            try:
                compact = json.dumps(json.loads(data), separators=(",", ":"))
            except ValueError as e:
                raise InvalidArgument(f"compacting json for seccomp profile ({val}) failed: {e}") from None
            opt = f"seccomp={compact}"
        out.append(opt)
    return out, unconfined_paths


def env_flag(value: str) -> str:
    """opts.ValidateEnv: a bare NAME takes our value, or stays bare (the daemon then unsets it)."""
    key, eq, _ = value.partition("=")
    if not key:
        raise InvalidArgument(f"invalid environment variable: {value}")
    if eq:
        return value
    return f"{key}={os.environ[key]}" if key in os.environ else value


def kv_file(path: str, *, lookup_env: bool) -> list[str]:
    """docker's kvfile.Parse for --env-file/--label-file: KEY=VALUE lines, # comments; a bare KEY
    takes its value from our environment (env files) or stays bare (label files)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InvalidArgument(f"open {path}: {e.strerror or e}") from None
    out: list[str] = []
    for n, bline in enumerate(raw.splitlines(), 1):
        if n == 1 and bline.startswith(b"\xef\xbb\xbf"):
            bline = bline[3:]
        try:
            line = bline.decode("utf-8").lstrip()
        except UnicodeDecodeError:
            raise InvalidArgument(f"invalid env file ({path}): invalid utf8 bytes at line {n}") from None
        if not line or line.startswith("#"):
            continue
        key, eq, _ = line.partition("=")
        key = key.lstrip(_WHITESPACE)
        if not key:
            raise InvalidArgument(f"invalid env file ({path}): no variable name on line '{line}'")
        if any(c in key for c in _WHITESPACE):
            raise InvalidArgument(f"invalid env file ({path}): variable '{key}' contains whitespaces")
        if eq:
            out.append(line)
        elif not lookup_env:
            out.append(key)
        elif key in os.environ:
            out.append(f"{key}={os.environ[key]}")
    return out


def label_flag(value: str) -> str:
    key = value.partition("=")[0]
    if not key.strip():
        raise InvalidArgument(f"invalid label '{value}': empty name")
    return value
