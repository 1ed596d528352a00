"""The per-container monitor: a small process, detached from whoever started it, that owns the
container's stdio, writes its json-file log, feeds attached clients, and records how the
container ended. One runs per running container, so it imports little.

Clients speak the frame protocol of runtime/stream.py.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARTIAL_LINE_MAX = 16 * 1024  # docker's json-file cuts lines at 16K


@dataclass
class MonitorSpec:
    container_id: str
    bundle: Path
    runtime: str  # "builtin" or the name of an OCI runtime binary (crun, runc)
    runtime_root: Path
    db_path: Path
    log_path: Path
    rootfs: Path
    auto_remove: bool
    open_stdin: bool
    container_dir: Path
    run_dir: Path


class StartError(Exception):
    pass


def spawn(spec: MonitorSpec, attach: socket.socket | None) -> int:
    """Start the monitor (double fork, new session) and return the container's host pid once
    it runs. Raises StartError with the runtime's message if it could not start."""
    status_r, status_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(status_r)
            os.setsid()
            if os.fork() == 0:
                _monitor_main(spec, attach.fileno() if attach else None, status_w)
        finally:
            os._exit(0)
    os.close(status_w)
    os.waitpid(child, 0)
    with os.fdopen(status_r, "rb") as f:
        raw = f.read()
    try:
        msg = json.loads(raw) if raw else {"error": "monitor died before starting the container"}
    except ValueError:
        msg = {"error": raw.decode(errors="replace").strip()}
    if "error" in msg:
        raise StartError(msg["error"])
    return int(msg["pid"])


def _monitor_main(spec: MonitorSpec, attach_fd: int | None, status_w: int) -> None:
    code = 1
    try:
        os.chdir("/")  # never pin a mount the CLI happened to be in
        _close_inherited({status_w} | ({attach_fd} if attach_fd is not None else set()))
        _detach_stdio(spec.container_dir / "monitor.log")
        mon = Monitor(spec, attach_fd)
        mon.run(status_w)
        code = 0
    except BaseException as e:  # noqa: BLE001 - the monitor must report, never raise into the CLI
        try:
            os.write(status_w, json.dumps({"error": str(e) or type(e).__name__}).encode())
        except OSError:
            pass
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _close_inherited(keep: set[int]) -> None:
    """Forked from the CLI without exec: drop every descriptor it had open (its lock files above
    all, which would otherwise stay locked for the container's whole life)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _detach_stdio(log: Path) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(err, 2)
    os.close(null)
    os.close(err)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def now_rfc3339() -> str:
    ns = time.time_ns()
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"
    )


class JsonLog:
    """docker's json-file driver: one JSON object per line of output."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "ab", buffering=0)  # noqa: SIM115
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial[stream] + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        out = [self._entry(stream, line + b"\n") for line in lines]
        while len(rest) >= PARTIAL_LINE_MAX:
            out.append(self._entry(stream, rest[:PARTIAL_LINE_MAX]))
            rest = rest[PARTIAL_LINE_MAX:]
        self.partial[stream] = rest
        if out:
            self.f.write(b"".join(out))

    def flush(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self.f.write(self._entry(stream, rest))
                self.partial[stream] = b""

    @staticmethod
    def _entry(stream: str, data: bytes) -> bytes:
        return (
            json.dumps(
                {"log": data.decode("utf-8", errors="replace"), "stream": stream, "time": now_rfc3339()},
                separators=(",", ":"),
            )
            + "\n"
        ).encode()


class Monitor:
    def __init__(self, spec: MonitorSpec, attach_fd: int | None) -> None:
        self.spec = spec
        self.client: socket.socket | None = socket.socket(fileno=attach_fd) if attach_fd is not None else None
        self.sel = selectors.DefaultSelector()
        self.pid = 0
        self.exit_status: int | None = None
        self.stdin_w: int | None = None
        self.stdin_buf = b""
        self.log = JsonLog(spec.log_path)
        from pallet.runtime.stream import FrameBuffer

        self.client_frames = FrameBuffer()

    # ---- start -------------------------------------------------------------------------

    def run(self, status_w: int) -> None:
        from pallet.runtime import linux

        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        _write_pid_file(self.spec.run_dir / "monitor.pid", os.getpid())
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        if self.spec.open_stdin:
            in_r, self.stdin_w = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(self.stdin_w, False)
        else:
            in_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        runtime = _runtime(self.spec)
        created = runtime.create(
            self.spec.bundle, self.spec.container_id, stdin=in_r, stdout=out_w, stderr=err_w
        )
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        self.pid = created.pid
        conn = self._db()
        from pallet.state import containers

        containers.update_state(
            conn,
            self.spec.container_id,
            Status="running",
            Running=True,
            Pid=self.pid,
            PidStart=process_start_time(self.pid),
            StartedAt=now_rfc3339(),
            ExitCode=0,
            Error="",
            OOMKilled=False,
            FinishedAt=containers.ZERO_TIME,
        )
        runtime.start(created)
        os.write(status_w, json.dumps({"pid": self.pid}).encode())
        os.close(status_w)
        self._loop(out_r, err_r, wake_r)
        self._finish(conn, runtime)

    def _db(self) -> Any:
        from pallet.state import db

        return db.connect(self.spec.db_path)

    # ---- pump --------------------------------------------------------------------------

    def _loop(self, out_r: int, err_r: int, wake_r: int) -> None:
        self.sel.register(out_r, selectors.EVENT_READ, "stdout")
        self.sel.register(err_r, selectors.EVENT_READ, "stderr")
        self.sel.register(wake_r, selectors.EVENT_READ, "wake")
        if self.client is not None:
            self.sel.register(self.client, selectors.EVENT_READ, "client")
        open_streams = 2
        deadline: float | None = None
        while open_streams and (deadline is None or time.monotonic() < deadline):
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, mask in self.sel.select(timeout):
                what = key.data
                if what == "wake":
                    _drain_fd(wake_r)
                    self._reap()
                    if self.exit_status is not None and deadline is None:
                        # Output still in the pipes is read; writers kept alive by escaped
                        # processes (e.g. --pid host) do not hold the monitor forever.
                        deadline = time.monotonic() + 2.0
                elif what in ("stdout", "stderr"):
                    data = _read(key.fd)
                    if data:
                        self._output(what, data)
                    else:
                        self.sel.unregister(key.fd)
                        os.close(key.fd)
                        open_streams -= 1
                elif what == "client":
                    self._client_input()
                elif what == "stdin" and mask & selectors.EVENT_WRITE:
                    self._flush_stdin()
        self.log.flush()
        while self.exit_status is None:
            self._reap(block=True)

    def _output(self, stream: str, data: bytes) -> None:
        self.log.write(stream, data)
        if self.client is not None:
            frame = struct.pack(">BxxxI", 1 if stream == "stdout" else 2, len(data)) + data  # stream.pack
            try:
                self.client.sendall(frame)
            except OSError:
                self._drop_client()

    def _client_input(self) -> None:
        from pallet.runtime import stream

        assert self.client is not None
        try:
            data = self.client.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop_client()  # the client went away: detached, the container goes on
            return
        for kind, payload in self.client_frames.feed(data):
            if kind == stream.STDIN and self.stdin_w is not None:
                self.stdin_buf += payload
                self._flush_stdin()
            elif kind == stream.STDIN_EOF:
                self._close_stdin_when_flushed()

    def _flush_stdin(self) -> None:
        if self.stdin_w is None:
            return
        try:
            n = os.write(self.stdin_w, self.stdin_buf) if self.stdin_buf else 0
            self.stdin_buf = self.stdin_buf[n:]
        except BlockingIOError:
            pass
        except OSError:
            self.stdin_buf = b""
        registered = self.stdin_w in self.sel.get_map()
        if self.stdin_buf and not registered:
            self.sel.register(self.stdin_w, selectors.EVENT_WRITE, "stdin")
        elif not self.stdin_buf and registered:
            self.sel.unregister(self.stdin_w)
            if getattr(self, "stdin_eof", False):
                self._close_stdin_when_flushed()

    def _close_stdin_when_flushed(self) -> None:
        self.stdin_eof = True
        if self.stdin_w is not None and not self.stdin_buf:
            if self.stdin_w in self.sel.get_map():
                self.sel.unregister(self.stdin_w)
            os.close(self.stdin_w)
            self.stdin_w = None

    def _drop_client(self) -> None:
        if self.client is not None:
            try:
                self.sel.unregister(self.client)
            except (KeyError, ValueError):
                pass
            self.client.close()
            self.client = None

    def _reap(self, block: bool = False) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                if self.exit_status is None:
                    self.exit_status = 255 << 8  # lost track of it: report failure, never hang
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.exit_status = status
                return

    # ---- end ---------------------------------------------------------------------------

    def _finish(self, conn: Any, runtime: Any) -> None:
        from pallet.state import containers

        status = self.exit_status or 0
        code = os.waitstatus_to_exitcode(status)
        exit_code = 128 - code if code < 0 else code
        record = {"ExitCode": exit_code, "FinishedAt": now_rfc3339(), "OOMKilled": False}
        containers.update_state(
            conn,
            self.spec.container_id,
            Status="exited",
            Running=False,
            Pid=0,
            Paused=False,
            Restarting=False,
            **record,
        )
        _quietly(runtime.delete, self.spec.bundle, self.spec.container_id)
        from pallet.runtime import rootfs

        _quietly(rootfs.unmount, self.spec.rootfs)
        if self.spec.auto_remove:
            import shutil

            containers.delete(conn, self.spec.container_id)
            shutil.rmtree(self.spec.container_dir, ignore_errors=True)
        if self.client is not None:
            payload = json.dumps(record).encode()
            try:
                self.client.sendall(struct.pack(">BxxxI", 0xFE, len(payload)) + payload)  # stream.EXIT
            except OSError:
                pass
            self._drop_client()


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a live process from a later one reusing its pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None  # a zombie has finished: it only waits for its parent to reap it
    return fields[19]


def _write_pid_file(path: Path, pid: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid} {process_start_time(pid)}\n")
    os.rename(tmp, path)


def _runtime(spec: MonitorSpec) -> Any:
    if spec.runtime == "builtin":
        from pallet.runtime import builtin

        return builtin
    from pallet.runtime import oci_cli

    return oci_cli.OciRuntime(spec.runtime, spec.runtime_root)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def _drain_fd(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - cleanup must go on; the reason goes to monitor.log
        print(f"cleanup {getattr(fn, '__name__', fn)}: {e}", file=sys.stderr)
