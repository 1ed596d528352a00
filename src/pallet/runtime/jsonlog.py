"""docker's json-file log driver: the writer the monitor feeds, with rotation, and the options.

One JSON object per line of output, as docker writes them:
  {"log":"hello\\n","stream":"stdout","attrs":{...},"time":"2024-05-01T10:00:00.123456789Z"}
A line longer than 16 KiB is cut into entries without the trailing newline (docker's partial
messages). "attrs" appears only when the `labels`/`env`/`tag` options ask for it.

Rotation is docker's: when the current file has reached max-size, `<id>-json.log.(N-1)` is
dropped, `.i` moves to `.i+1`, the current file becomes `.1` and a new one starts; with
`compress=true` the rotated files are gzipped (`.1.gz`, ...); with max-file 1 the file is
restarted from empty.

Default bound: docker's json-file grows without limit unless told otherwise, a known way to
fill a disk. pallet bounds it when no option is given: max-size 20m and max-file 5 (the
defaults of docker's own `local` driver). Given options keep docker's meaning: max-size alone
keeps one file (max-file 1); max-file alone gets the default max-size.

Imported by the monitor: json, os and time only at runtime.
"""

from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False  # typing costs ~2 ms at import (the monitor loads this module)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

PARTIAL_LINE_MAX = 16 * 1024  # docker's json-file cuts lines at 16K
DEFAULT_MAX_SIZE = 20 * 1000 * 1000  # "20m" as docker's units.FromHumanSize reads it
DEFAULT_MAX_FILE = 5
DRIVERS = ("json-file", "none")
_JSON_FILE_OPTS = ("max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag")


class LogOptions:
    """What the writer needs; built by `options()` in the engine and passed to the monitor."""

    __slots__ = ("max_size", "max_file", "compress", "attrs")

    def __init__(self, max_size: int, max_file: int, compress: bool, attrs: dict[str, str]) -> None:
        self.max_size = max_size  # bytes; -1: no rotation
        self.max_file = max_file
        self.compress = compress
        self.attrs = attrs

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LogOptions:
        return cls(int(d["max_size"]), int(d["max_file"]), bool(d["compress"]), dict(d.get("attrs") or {}))


def driver(log_config: Mapping[str, Any] | None) -> str:
    return str((log_config or {}).get("Type") or "json-file")


def options(
    log_config: Mapping[str, Any] | None, *, info: Mapping[str, Any] | None = None
) -> LogOptions | None:
    """HostConfig.LogConfig -> writer options (None for the `none` driver). Raises ValueError
    with docker's message for a bad driver or option. `info` (ID, Name, ImageID, ImageName,
    Labels, Env) feeds the labels/env/tag attributes."""
    kind = driver(log_config)
    if kind not in DRIVERS:
        raise ValueError(f"logger: no log driver named '{kind}' is registered")
    cfg = {str(k): str(v) for k, v in ((log_config or {}).get("Config") or {}).items()}
    if kind == "none":
        if cfg:
            raise ValueError(f"unknown log opt '{sorted(cfg)[0]}' for none log driver")
        return None
    for key in cfg:
        if key not in _JSON_FILE_OPTS:
            raise ValueError(f"unknown log opt '{key}' for json-file log driver")
    max_size, max_file = -1, 1
    if "max-size" in cfg:
        from pallet.gounits import from_human_size

        max_size = from_human_size(cfg["max-size"])
        if max_size <= 0:
            raise ValueError("max-size must be a positive number")
    if "max-file" in cfg:
        try:
            max_file = int(cfg["max-file"])
        except ValueError:
            raise ValueError(f'strconv.Atoi: parsing "{cfg["max-file"]}": invalid syntax') from None
        if max_file < 1:
            raise ValueError("max-file cannot be less than 1")
    if "max-size" not in cfg:
        # pallet's bound (see the module docstring); docker would let the file grow forever.
        max_size = DEFAULT_MAX_SIZE
        if "max-file" not in cfg:
            max_file = DEFAULT_MAX_FILE
    compress = False
    if "compress" in cfg:
        compress = _parse_bool(cfg["compress"])
        if compress and (max_file == 1 or "max-size" not in cfg):
            raise ValueError("compress cannot be true when max-file is less than 2 or max-size is not set")
    return LogOptions(max_size, max_file, compress, _attributes(cfg, info or {}))


def _parse_bool(value: str) -> bool:
    # Go's strconv.ParseBool
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _attributes(cfg: Mapping[str, str], info: Mapping[str, Any]) -> dict[str, str]:
    """docker's logger.Info.ExtraAttributes (labels, labels-regex, env, env-regex) and tag."""
    import re

    attrs: dict[str, str] = {}
    labels: Mapping[str, str] = info.get("Labels") or {}
    env = dict(e.split("=", 1) for e in info.get("Env") or [] if "=" in e)
    for key in filter(None, cfg.get("labels", "").split(",")):
        if key in labels:
            attrs[key] = labels[key]
    if cfg.get("labels-regex"):
        rx = re.compile(cfg["labels-regex"])
        attrs.update({k: v for k, v in labels.items() if rx.search(k)})
    for key in filter(None, cfg.get("env", "").split(",")):
        if key in env:
            attrs[key] = env[key]
    if cfg.get("env-regex"):
        rx = re.compile(cfg["env-regex"])
        attrs.update({k: v for k, v in env.items() if rx.search(k)})
    if cfg.get("tag"):
        attrs["tag"] = _tag(cfg["tag"], info)
    return attrs


def _tag(template: str, info: Mapping[str, Any]) -> str:
    """The log tag template with docker's fields; other template syntax is refused."""
    import re

    cid, image_id = str(info.get("ID", "")), str(info.get("ImageID", "")).split(":", 1)[-1]
    fields = {
        "ID": cid[:12],
        "FullID": cid,
        "Name": str(info.get("Name", "")).lstrip("/"),
        "ImageID": image_id[:12],
        "ImageFullID": image_id,
        "ImageName": str(info.get("ImageName", "")),
        "DaemonName": "pallet",
    }
    out = re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: fields.get(m.group(1), m.group(0)), template)
    if "{{" in out:
        raise ValueError(
            f"log tag template {template!r}: only {{{{.Field}}}} of {sorted(fields)} is supported"
        )
    return out


def rfc3339_nano(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: the fraction without trailing zeros (none if zero)."""
    secs, frac = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return stamp + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def rotated_name(path: str, i: int, compressed: bool) -> str:
    return f"{path}.{i}" + (".gz" if compressed else "")


class JsonLogWriter:
    """Appends entries to `<id>-json.log`, rotating as docker does. Not thread-safe: the
    monitor's one loop is its only user."""

    def __init__(self, path: str, opts: LogOptions) -> None:
        self.path = path
        self.opts = opts
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.extra = (
            b',"attrs":' + json.dumps(opts.attrs, separators=(",", ":")).encode() if opts.attrs else b""
        )
        self.compressor = 0  # pid of the child gzipping the last rotated file
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial[stream] + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        for line in lines:
            self._entry(stream, line + b"\n")
        while len(rest) >= PARTIAL_LINE_MAX:
            self._entry(stream, rest[:PARTIAL_LINE_MAX])
            rest = rest[PARTIAL_LINE_MAX:]
        self.partial[stream] = rest

    def flush(self) -> None:
        """Write out unterminated lines (the container ended without a final newline)."""
        for stream, rest in self.partial.items():
            if rest:
                self._entry(stream, rest)
                self.partial[stream] = b""

    def close(self) -> None:
        self.flush()
        os.close(self.fd)
        self.wait_compressor()

    def _entry(self, stream: str, data: bytes) -> None:
        record = (
            b'{"log":'
            + json.dumps(data.decode("utf-8", errors="replace")).encode()
            + b',"stream":"'
            + stream.encode()
            + b'"'
            + self.extra
            + b',"time":"'
            + rfc3339_nano(time.time_ns()).encode()
            + b'"}\n'
        )
        if self.opts.max_size > 0 and self.size >= self.opts.max_size:
            self._rotate()
        os.write(self.fd, record)
        self.size += len(record)

    def _rotate(self) -> None:
        self.wait_compressor()  # the previous rotated file must be .gz before names move on
        os.close(self.fd)
        n, gz = self.opts.max_file, self.opts.compress
        if n >= 2:
            _unlink(rotated_name(self.path, n - 1, gz))
            for i in range(n - 1, 1, -1):
                _rename(rotated_name(self.path, i - 1, gz), rotated_name(self.path, i, gz))
            _rename(self.path, rotated_name(self.path, 1, False))
        else:
            _unlink(self.path)  # readers may still hold it open: never truncate in place
        self.fd = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640
        )
        self.size = 0
        if gz and n >= 2:
            self.compressor = _compress_in_child(rotated_name(self.path, 1, False))

    def wait_compressor(self) -> None:
        if self.compressor:
            try:
                os.waitpid(self.compressor, 0)
            except ChildProcessError:
                pass  # the monitor's reaper got it first: it is done either way
            self.compressor = 0


def _compress_in_child(path: str) -> int:
    """gzip `path` to `path.gz` in a child (zlib stays out of the monitor), atomically: readers
    find either the plain file or the complete .gz."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        import gzip
        import signal

        signal.set_wakeup_fd(-1)  # the monitor's signals are not ours

        tmp = path + ".gz.tmp"
        with open(path, "rb") as src, gzip.open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):  # not shutil.copyfileobj: shutil imports bz2 and lzma
                dst.write(chunk)
        os.rename(tmp, path + ".gz")
        os.unlink(path)
        code = 0
    finally:
        os._exit(code)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rename(src: str, dst: str) -> None:
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        pass
