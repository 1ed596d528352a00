"""Image configs: building them, serialising them stably, and applying `--change` lines.

`apply_changes` works on the runtime part of an image config (the `config` object: Env, Cmd,
Entrypoint, ...), as docker's commit/import do: each change is one Dockerfile instruction.
"""

from __future__ import annotations

import json
import platform
import posixpath
import re
import time
from collections.abc import Sequence
from typing import Any

from pallet.images.store import ImageError
from pallet.oci import mediatypes as mt
from pallet.oci.digest import sha256_digest

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
         "armv6l": "arm", "i386": "386", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64", "mips64": "mips64le"}
_CHANGE_OK = {"cmd", "entrypoint", "healthcheck", "env", "expose", "label", "onbuild", "stopsignal",
              "user", "volume", "workdir"}
_KNOWN = _CHANGE_OK | {"add", "arg", "copy", "from", "maintainer", "run", "shell"}
_SHELL = ["/bin/sh", "-c"]


class ChangeError(ImageError):
    """A --change line docker would reject; the message is docker's."""


def host_architecture() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def rfc3339(ts_ns: int | None = None) -> str:
    """A UTC time as Go's RFC3339Nano prints it (trailing zeros of the fraction dropped)."""
    ns = time.time_ns() if ts_ns is None else ts_ns
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return base + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def new_config(diff_ids: Sequence[str], *, created: str, runtime: dict[str, Any] | None = None,
               history: Sequence[dict[str, Any]] = (), comment: str | None = None) -> dict[str, Any]:
    """An OCI image config for this host's platform."""
    cfg: dict[str, Any] = {
        "architecture": host_architecture(),
        "config": dict(runtime or {}),
        "created": created,
        "history": list(history),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    if comment is not None:
        cfg["comment"] = comment  # docker keeps the import/commit message at the top level too
    return cfg


def serialize(obj: Any) -> bytes:
    """Canonical bytes (compact, sorted keys, UTF-8): the same dict always hashes the same."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def manifest_for(config: bytes, layers: Sequence[tuple[str, str, int]],
                 config_media_type: str = mt.OCI_CONFIG) -> bytes:
    """An OCI image manifest for a config and its layer blobs given as (media type, digest, size)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": config_media_type, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": m, "digest": d, "size": s} for m, d, s in layers],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


# ---- --change lines ----------------------------------------------------------------------------

def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> None:
    """Apply Dockerfile instructions (CMD, ENV, ...) to a runtime config in place."""
    state = {"cmd_set": False}
    for lineno, line in _logical_lines("\n".join(changes)):
        word, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        name = word.lower()
        if name not in _KNOWN:
            raise ChangeError(f"dockerfile parse error on line {lineno}: unknown instruction: {word}")
        if name not in _CHANGE_OK:
            raise ChangeError(f"{name} is not a valid change command")
        _DISPATCH[name](config, rest, state)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations, drop blank and comment lines; keep each start line number."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for i, raw in enumerate(text.split("\n"), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if not buf:
            start = i
        if stripped.endswith("\\"):
            buf.append(stripped[:-1])
            continue
        buf.append(stripped)
        out.append((start, " ".join(buf)))
        buf = []
    if buf:
        out.append((start, " ".join(buf)))
    return out


def _env_map(config: dict[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in config.get("Env") or [])


def _maybe_json(rest: str) -> list[str] | None:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return None


def _cmdline(rest: str) -> list[str]:
    parsed = _maybe_json(rest)
    return parsed if parsed is not None else [*_SHELL, rest]


def _cmd(config: dict[str, Any], rest: str, state: dict[str, bool]) -> None:
    config["Cmd"] = _cmdline(rest)
    state["cmd_set"] = True


def _entrypoint(config: dict[str, Any], rest: str, state: dict[str, bool]) -> None:
    config["Entrypoint"] = _cmdline(rest) if rest else None
    if not state["cmd_set"]:
        config["Cmd"] = None  # as in a Dockerfile: a new ENTRYPOINT drops the inherited CMD


def _pairs(name: str, rest: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """ENV/LABEL arguments: `k=v k2="v 2"`, or the legacy `k value with spaces`."""
    words = _split_words(rest)
    if not words:
        raise ChangeError(f"{name} requires at least one argument")
    if "=" not in words[0]:
        if len(words) < 2:
            raise ChangeError(f"{name} must have two arguments")
        return [(_expand(words[0], env), _expand(rest[len(words[0]):].strip(), env))]
    out = []
    for w in words:
        if "=" not in w:
            raise ChangeError(f"Syntax error - can't find = in \"{w}\". Must be of the form: name=value")
        k, v = w.split("=", 1)
        out.append((_expand(k, env), _expand(v, env)))
    return out


def _env(config: dict[str, Any], rest: str, state: dict[str, bool]) -> None:
    env = list(config.get("Env") or [])
    for k, v in _pairs("ENV", rest, _env_map(config)):  # every pair sees the env from before
        if not k:
            raise ChangeError("ENV names can not be blank")
        keys = [e.split("=", 1)[0] for e in env]
        if k in keys:
            env[keys.index(k)] = f"{k}={v}"  # docker replaces a variable in place
        else:
            env.append(f"{k}={v}")
    config["Env"] = env


def _label(config: dict[str, Any], rest: str, state: dict[str, bool]) -> None:
    labels = dict(config.get("Labels") or {})
    for k, v in _pairs("LABEL", rest, _env_map(config)):
        if not k:
            raise ChangeError("LABEL names can not be blank")
        labels[k] = v
    config["Labels"] = labels


def _expose(config: dict[str, Any], rest: str, state: dict[str, bool]) -> None:
    words = _split_words(rest)
    if not words:
        raise ChangeError("EXPOSE requires at least one argument")
    ports = dict(config.get("ExposedPorts") or {})
    env = _env_map(config)
    for w in words:
        spec = _expand(w, env)
        port, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise ChangeError(f"invalid proto: {proto}")
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", port.rsplit(":", 1)[-1])
        if not m:
            raise ChangeError(f"invalid containerPort: {port}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 0 < lo <= hi <= 65535:
            raise ChangeError(f"invalid containerPort: {port}")
        for p in range(lo, hi + 1):
            ports[f"{p}/{proto}"] = {}
    config["ExposedPorts"] = ports


def _volume(config: dict[str, Any], rest: str, state: dict[str, bool]) -> None:
    env = _env_map(config)
    paths = _maybe_json(rest)
    paths = [_expand(p, env) for p in (paths if paths is not None else _split_words(rest))]
    if not paths:
        raise ChangeError("VOLUME requires at least one argument")
    volumes = dict(config.get("Volumes") or {})
    for p in paths:
        if not p.strip():
            raise ChangeError("VOLUME specified can not be an empty string")
        volumes[p] = {}
    config["Volumes"] = volumes


def _single(name: str, rest: str, config: dict[str, Any]) -> str:
    words = _split_words(rest)
    if len(words) != 1:
        raise ChangeError(f"{name} requires exactly one argument")
    return _expand(words[0], _env_map(config))


def _workdir(config: dict[str, Any], rest: str, state: dict[str, bool]) -> None:
    path = _expand(rest, _env_map(config)) if rest else ""
    if not path:
        raise ChangeError("WORKDIR requires exactly one argument")
    if not path.startswith("/"):
        path = posixpath.normpath(posixpath.join("/", config.get("WorkingDir") or "", path))
    config["WorkingDir"] = path


def _user(config: dict[str, Any], rest: str, state: dict[str, bool]) -> None:
    config["User"] = _single("USER", rest, config)


def _stopsignal(config: dict[str, Any], rest: str, state: dict[str, bool]) -> None:
    sig = _single("STOPSIGNAL", rest, config)
    if not re.fullmatch(r"\d+|(SIG)?[A-Z0-9+-]+", sig.upper()):
        raise ChangeError(f"Invalid signal: {sig}")
    config["StopSignal"] = sig


def _onbuild(config: dict[str, Any], rest: str, state: dict[str, bool]) -> None:
    trigger = rest.split(" ", 1)[0].upper()
    if not trigger:
        raise ChangeError("ONBUILD requires at least one argument")
    if trigger == "ONBUILD":
        raise ChangeError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("FROM", "MAINTAINER"):
        raise ChangeError(f"{trigger} isn't allowed as an ONBUILD trigger")
    config["OnBuild"] = [*(config.get("OnBuild") or []), rest]


def _healthcheck(config: dict[str, Any], rest: str, state: dict[str, bool]) -> None:
    flags: dict[str, str] = {}
    while m := re.match(r"--([a-z-]+)=(\S*)\s*", rest):
        flags[m.group(1)] = m.group(2)
        rest = rest[m.end():]
    kind, _, cmd = rest.partition(" ")
    kind, cmd = kind.upper(), cmd.strip()
    if not kind:
        raise ChangeError("HEALTHCHECK requires at least one argument")
    if kind == "NONE":
        if cmd or flags:
            raise ChangeError("HEALTHCHECK NONE takes no arguments")
        config["Healthcheck"] = {"Test": ["NONE"]}
        return
    if kind != "CMD":
        raise ChangeError(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    parsed = _maybe_json(cmd)
    hc: dict[str, Any] = {"Test": ["CMD", *parsed] if parsed is not None else ["CMD-SHELL", cmd]}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        if flag in flags:
            hc[key] = _duration_ns(flags.pop(flag))
    if "retries" in flags:
        hc["Retries"] = int(flags.pop("retries"))
    if flags:
        raise ChangeError(f"Unknown flag: {next(iter(flags))}")
    config["Healthcheck"] = hc


def _duration_ns(text: str) -> int:
    units = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
             "h": 3600 * 10**9}
    parts = re.findall(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ChangeError(f"time: invalid duration {text!r}")
    return int(sum(float(n) * units[u] for n, u in parts))


_DISPATCH = {"cmd": _cmd, "entrypoint": _entrypoint, "env": _env, "label": _label, "expose": _expose,
             "volume": _volume, "workdir": _workdir, "user": _user, "stopsignal": _stopsignal,
             "onbuild": _onbuild, "healthcheck": _healthcheck}


# ---- Dockerfile word splitting and expansion (quotes, backslash escapes, $VAR) ------------------

def _split_words(text: str) -> list[str]:
    """Split on blanks outside quotes; quotes and escapes stay in the words (expanded later)."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quote != "'" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            if cur:
                words.append("".join(cur))
                cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    if cur:
        words.append("".join(cur))
    return words


def _expand(word: str, env: dict[str, str]) -> str:
    out: list[str] = []
    i, n = 0, len(word)
    quote = ""
    while i < n:
        ch = word[i]
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                out.append(ch)
            i += 1
        elif ch == "\\" and i + 1 < n:
            nxt = word[i + 1]
            if quote == '"' and nxt not in '"$\\':
                out.append(ch)
            out.append(nxt)
            i += 2
        elif ch in "'\"" and (not quote or ch == quote):
            quote = "" if quote else ch
            i += 1
        elif ch == "$":
            value, i = _variable(word, i + 1, env)
            out.append(value)
        else:
            out.append(ch)
            i += 1
    if quote:
        raise ChangeError(f"unexpected end of statement while looking for matching {quote}")
    return "".join(out)


def _variable(word: str, i: int, env: dict[str, str]) -> tuple[str, int]:
    """Expand the variable starting after `$` at i; return (value, index after it)."""
    if i < len(word) and word[i] == "{":
        end = word.find("}", i)
        if end < 0:
            raise ChangeError("missing '}' in variable expansion")
        body = word[i + 1:end]
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?::([-+?])(.*))?", body, re.S)
        if not m:
            raise ChangeError(f"bad substitution: ${{{body}}}")
        name, op, arg = m.groups()
        value = env.get(name, "")
        if op == "-":
            value = value or _expand(arg, env)
        elif op == "+":
            value = _expand(arg, env) if value else ""
        elif op == "?" and not value:
            raise ChangeError(f"{name}: {arg or 'is not allowed to be unset'}")
        return value, end + 1
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", word[i:])
    if not m:
        return "$", i
    return env.get(m.group(0), ""), i + m.end()
