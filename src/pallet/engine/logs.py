"""Reading a container's json-file log (written by its monitor, runtime/jsonlog.py): the rotated
files in order, the last N lines, a time window, and following a running container across
rotations until it has stopped and its monitor is gone."""

from __future__ import annotations

import calendar
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from pallet.engine.containers import lookup
from pallet.engine.core import Engine
from pallet.errors import PalletError

FOLLOW_POLL = 0.05


class Entry:
    __slots__ = ("stream", "data", "ns", "attrs")

    def __init__(self, stream: str, data: bytes, ns: int, attrs: dict[str, str]) -> None:
        self.stream = stream
        self.data = data
        self.ns = ns  # unix time in nanoseconds
        self.attrs = attrs


def parse_time_ns(text: str) -> int:
    """RFC 3339 (nanoseconds, Z or an offset) -> unix nanoseconds."""
    main, frac, zone = text, "", "Z"
    if text.endswith("Z"):
        main = text[:-1]
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        main, zone = text[:-6], text[-6:]
    if "." in main:
        main, frac = main.split(".", 1)
    secs = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def parse_line(line: bytes) -> Entry | None:
    try:
        obj = json.loads(line)
        return Entry(
            str(obj.get("stream") or "stdout"),
            str(obj.get("log", "")).encode(),
            parse_time_ns(obj["time"]),
            dict(obj.get("attrs") or {}),
        )
    except (ValueError, KeyError, TypeError):
        return None  # a torn or foreign line: skipped, as docker's decoder does


class LogFile:
    """One open log file: the current one or a rotated one (maybe gzipped)."""

    def __init__(self, f: Any, ino: int, seekable: bool = True) -> None:
        self.f = f
        self.ino = ino
        self.seekable = seekable  # a gzipped file is read from its start only
        self.partial = b""

    @classmethod
    def open(cls, path: str) -> LogFile | None:
        try:
            if path.endswith(".gz"):
                import gzip

                raw = open(path, "rb")  # noqa: SIM115 - kept open by the LogFile
                return cls(gzip.GzipFile(fileobj=raw), os.fstat(raw.fileno()).st_ino, seekable=False)
            f = open(path, "rb")  # noqa: SIM115
            return cls(f, os.fstat(f.fileno()).st_ino)
        except FileNotFoundError:
            return None

    def read_lines(self) -> list[bytes]:
        """Complete lines appended since the last call."""
        data = self.partial + self.f.read()
        lines = data.split(b"\n")
        self.partial = lines.pop()
        return [line for line in lines if line]

    def last_lines(self, k: int) -> list[bytes]:
        """The last k complete lines, read backwards from the end (a log can be large); leaves the
        file at its end, ready to follow."""
        if not self.seekable:
            return self.read_lines()[-k:] if k > 0 else []
        end = self.f.seek(0, os.SEEK_END)
        pos, buf = end, b""
        while pos > 0 and buf.count(b"\n") <= k:
            step = min(1 << 16, pos)
            pos -= step
            self.f.seek(pos)
            buf = self.f.read(step) + buf
        self.f.seek(end)
        lines = buf.split(b"\n")
        self.partial = lines.pop()  # an entry still being written: completed by a follow
        if pos > 0:
            lines = lines[1:]  # cut by the block boundary
        return [line for line in lines if line][-k:] if k > 0 else []

    def close(self) -> None:
        self.f.close()


def rotated_paths(path: str, limit: int = 1000) -> list[str]:
    """The rotated files that exist, newest first (`.1` or `.1.gz`, `.2`, ...)."""
    out = []
    for i in range(1, limit):
        for candidate in (f"{path}.{i}", f"{path}.{i}.gz"):
            if os.path.exists(candidate):
                out.append(candidate)
                break
        else:
            break
    return out


def _snapshot(path: str) -> list[LogFile]:
    """Open the current file and the rotated ones, oldest first. Opened newest first: a rotation
    between two opens shows up as the same inode twice, dropped here."""
    files: list[LogFile] = []
    seen: set[int] = set()
    for p in [path, *rotated_paths(path)]:
        lf = LogFile.open(p)
        if lf is None:
            continue
        if lf.ino in seen:
            lf.close()
            continue
        seen.add(lf.ino)
        files.append(lf)
    files.reverse()
    return files


def read(
    engine: Engine,
    ref: str,
    *,
    follow: bool = False,
    tail: int | None = None,
    since: float | None = None,
    until: float | None = None,
) -> Iterator[Entry]:
    """The container's log entries, oldest first. `tail`: only the last N lines (None: all);
    `since`/`until`: unix seconds."""
    from pallet.runtime import jsonlog

    rec = lookup(engine, ref)
    if jsonlog.driver(rec.config["HostConfig"].get("LogConfig")) == "none":
        raise PalletError("configured logging driver does not support reading")
    path = str(engine.paths.container_dir(rec.id) / f"{rec.id}-json.log")
    since_ns = int(since * 1e9) if since is not None else None
    until_ns = int(until * 1e9) if until is not None else None

    def window(entries: Iterator[Entry]) -> Iterator[Entry]:
        for e in entries:
            if since_ns is not None and e.ns < since_ns:
                continue
            if until_ns is not None and e.ns > until_ns:
                raise _Until
            yield e

    files = _snapshot(path)
    try:
        lines = _last_lines(files, tail) if tail is not None else (ln for f in files for ln in f.read_lines())
        yield from window(e for e in map(parse_line, lines) if e is not None)
        if follow:
            current = files.pop() if files and _same_file(files[-1], path) else LogFile.open(path)
            yield from window(_follow(engine, rec.id, path, current))
    except _Until:
        return
    finally:
        for f in files:
            f.close()


class _Until(Exception):
    pass


def _same_file(lf: LogFile, path: str) -> bool:
    try:
        return os.stat(path).st_ino == lf.ino
    except FileNotFoundError:
        return False


def _last_lines(files: list[LogFile], n: int) -> list[bytes]:
    """The last n lines over all files (oldest first), reading the newest files backwards."""
    newest_first = files[::-1]
    if not newest_first:
        return []
    kept = newest_first[0].last_lines(n)  # also leaves the current file at its end, for a follow
    for f in newest_first[1:]:
        if len(kept) >= n:
            break
        kept = f.last_lines(n - len(kept)) + kept
    return kept


def _follow(engine: Engine, cid: str, path: str, current: LogFile | None) -> Iterator[Entry]:
    """New entries as the monitor writes them, through rotations, until the container has
    stopped and its monitor is gone."""
    try:
        while True:
            if current is None:
                current = LogFile.open(path)
            got = False
            if current is not None:
                for line in current.read_lines():
                    entry = parse_line(line)
                    if entry is not None:
                        got = True
                        yield entry
                current, newer = _after_rotation(path, current)
                for line in newer:
                    entry = parse_line(line)
                    if entry is not None:
                        got = True
                        yield entry
            if not got and _ended(engine, cid):
                if current is not None:
                    for line in current.read_lines():  # the last words written before the end
                        entry = parse_line(line)
                        if entry is not None:
                            yield entry
                return
            if not got:
                time.sleep(FOLLOW_POLL)
    finally:
        if current is not None:
            current.close()


def _after_rotation(path: str, current: LogFile) -> tuple[LogFile, list[bytes]]:
    """If `current` was rotated away: the rest of it, then every newer rotated file in order,
    and the new current file (left open at its start)."""
    if _same_file(current, path):
        return current, []
    lines = current.read_lines()
    current.close()
    rotated = rotated_paths(path)
    index = next((i for i, p in enumerate(rotated) if _ino(p) == current.ino), None)
    newer = rotated[:index] if index is not None else []
    for p in reversed(newer):
        lf = LogFile.open(p)
        if lf is not None:
            lines += lf.read_lines()
            lf.close()
    fresh = LogFile.open(path)
    if fresh is None:  # between the rename and the new file: try again on the next round
        fresh = LogFile(open(os.devnull, "rb"), -1)  # noqa: SIM115
    return fresh, lines


def _ino(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _ended(engine: Engine, cid: str) -> bool:
    from pallet.engine.lifecycle import monitor_pid, refresh
    from pallet.state import containers as records

    rec = records.get(engine.conn, cid)
    if rec is None:
        return True
    if refresh(engine, rec).state.get("Running"):
        return False
    return monitor_pid(engine, cid) == 0
