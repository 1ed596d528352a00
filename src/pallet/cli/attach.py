"""The CLI end of an attached container (`run` without -d, `start -a/-i`, `attach`): frames from its
monitor (runtime/stream.py) to our stdout/stderr, our stdin to it, and its exit code back.

For a TTY container with our stdin attached and a terminal: our terminal goes raw (restored on every
way out), its size goes in OPEN and every SIGWINCH in a RESIZE, and the detach keys end the session
leaving the container running (exit 0, nothing printed). Without a TTY, signals we get are forwarded
to the container (`--sig-proxy`, on by default), as docker does.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
from contextlib import nullcontext

from pallet.cli import terminal
from pallet.cli.args import SUPPRESS, Parser, requires
from pallet.engine.core import Engine
from pallet.errors import PalletError

_PROXIED = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGALRM, signal.SIGCONT,
)  # fmt: skip
_DETACHED = -1  # what _session returns when the user typed the detach keys (no exit code is negative)


def check_tty(stdin: bool, tty: bool) -> None:
    """docker's CheckTty: a TTY session that takes our input needs a terminal to read it from."""
    if stdin and tty and not terminal.is_tty(0):
        raise PalletError("the input device is not a TTY")


def attached_start(
    engine: Engine, cid: str, *, stdin: bool, sig_proxy: bool, detach_keys: str | None = None
) -> int:
    """Start the container with our end of a socket pair handed to its monitor (so not a byte of
    output is missed) and stay attached; returns its exit code, or 0 once detached."""
    from pallet.cli import detach_keys as dk
    from pallet.engine import lifecycle
    from pallet.engine.containers import lookup

    keys = dk.parse(detach_keys)
    tty = bool(lookup(engine, cid).config.get("Config", {}).get("Tty"))
    check_tty(stdin, tty)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Queued before the monitor exists: it reads OPEN first, whenever it gets to it.
        ours.sendall(_open_frame(stdin, tty))
        rec = lifecycle.start(engine, cid, attach=theirs)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    pid = int(rec.state.get("Pid") or 0)
    code = _session(ours, pid=pid, stdin=stdin, tty=tty, sig_proxy=sig_proxy, keys=keys)
    if code is None:
        # The monitor went away without a word: read what it recorded, if anything.
        code = int(lifecycle.wait_exit(engine, cid).get("ExitCode", 255))
    return 0 if code == _DETACHED else code


def attach(prog: str, args: list[str]) -> int:
    """`attach [--no-stdin] [--sig-proxy=BOOL] [--detach-keys KEYS] CONTAINER`."""
    p = Parser(prog, "[OPTIONS] CONTAINER",
               "Attach local standard input, output, and error streams to a running container")  # fmt: skip
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", nargs="?", const="true", default="true",
                   help="Proxy all received signals to the process (default true)")  # fmt: skip
    p.add_argument("container", nargs="?", help=SUPPRESS)
    ns = p.parse(args)
    requires([ns.container] if ns.container else [], prog, "[OPTIONS] CONTAINER", at_least=1)
    from pallet.cli import detach_keys as dk
    from pallet.engine import lifecycle
    from pallet.engine.containers import lookup

    keys = dk.parse(ns.detach_keys)
    engine = Engine()
    rec = lookup(engine, ns.container)
    sock = lifecycle.attach(engine, rec.id)  # refuses a stopped or paused container, as docker
    cfg = rec.config.get("Config") or {}
    tty = bool(cfg.get("Tty"))
    stdin = bool(cfg.get("OpenStdin")) and not ns.no_stdin
    try:
        check_tty(stdin, tty)
    except PalletError:
        sock.close()
        raise
    pid = int(lifecycle.refresh(engine, rec).state.get("Pid") or 0)
    engine.close()
    sock.sendall(_open_frame(stdin, tty))
    code = _session(sock, pid=pid, stdin=stdin, tty=tty, sig_proxy=parse_bool(ns.sig_proxy), keys=keys)
    if code is None:
        code = int(lifecycle.wait_exit(engine, rec.id).get("ExitCode", 255))
    return 0 if code == _DETACHED else code


def parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool, which docker's boolean flags use (`--sig-proxy=false`)."""
    v = value.strip().lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise PalletError(f'invalid argument "{value}" for "--sig-proxy" flag: strconv.ParseBool: parsing '
                      f'"{value}": invalid syntax')


def _open_frame(stdin: bool, tty: bool) -> bytes:
    from pallet.runtime import stream

    opts: dict[str, object] = {"Stdin": stdin, "Stdout": True, "Stderr": True}
    size = terminal.our_size() if tty else None
    if size:
        opts["Height"], opts["Width"] = size
    return stream.pack_json(stream.OPEN, opts)


def _session(
    sock: socket.socket, *, pid: int, stdin: bool, tty: bool, sig_proxy: bool, keys: bytes
) -> int | None:
    """Pump until the container exits (its code), we detach (_DETACHED), or the monitor vanishes
    (None)."""
    caught = [signal.SIGWINCH] if tty else []
    if sig_proxy and not tty:
        caught += _PROXIED
    signals = terminal.SignalPipe(caught)
    try:
        with terminal.raw_mode(0) if stdin and tty and terminal.is_tty(0) else nullcontext():
            return _Pump(sock, pid, stdin=stdin, tty=tty, keys=keys, signals=signals).run()
    finally:
        signals.close()
        sock.close()


class _Pump:
    def __init__(
        self, sock: socket.socket, pid: int, *, stdin: bool, tty: bool, keys: bytes,
        signals: terminal.SignalPipe,
    ) -> None:
        from pallet.cli.detach_keys import DetachKeyFilter
        from pallet.runtime import stream

        self.stream = stream
        self.sock = sock
        self.pid = pid
        self.stdin = stdin
        self.tty = tty
        # docker spots the detach keys only in a TTY session's input.
        self.keys = DetachKeyFilter(keys) if tty else None
        self.signals = signals
        self.frames = stream.FrameBuffer()
        self.out_ok = {1: True, 2: True}

    def run(self) -> int | None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, "sock")
        sel.register(self.signals.fd, selectors.EVENT_READ, "signals")
        if self.stdin:
            sel.register(0, selectors.EVENT_READ, "stdin")
        try:
            while True:
                for key, _ in sel.select():
                    if key.data == "sock":
                        done = self._from_monitor()
                        if done is not False:
                            return done
                    elif key.data == "stdin":
                        if self._from_stdin(sel):
                            return _DETACHED
                    else:
                        self._on_signals()
        finally:
            sel.close()

    def _from_monitor(self) -> int | None | bool:
        """False to go on; else the exit code, or None when the monitor went away without one."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            return None
        for kind, payload in self.frames.feed(data):
            if kind == self.stream.EXIT:
                try:
                    return int(json.loads(payload).get("ExitCode", 0))
                except (ValueError, TypeError, AttributeError):
                    return None
            if kind in (self.stream.STDOUT, self.stream.STDERR):
                self._write(kind, payload)
        return False

    def _write(self, fd: int, data: bytes) -> None:
        if not self.out_ok[fd]:
            return
        try:
            terminal.write_all(fd, data)
        except OSError:
            self.out_ok[fd] = False  # our reader went away: keep draining, stop writing

    def _from_stdin(self, sel: selectors.BaseSelector) -> bool:
        """Forward what we read; True when the detach keys were typed."""
        try:
            data = os.read(0, 65536)
        except OSError:
            data = b""
        if not data:
            sel.unregister(0)
            self._send(self.stream.pack(self.stream.STDIN_EOF))
            return False
        detach = False
        if self.keys is not None:
            data, detach = self.keys.feed(data)
        if data:
            self._send(self.stream.pack(self.stream.STDIN, data))
        return detach

    def _on_signals(self) -> None:
        for sig in self.signals.take():
            if sig == signal.SIGWINCH:
                size = terminal.our_size()
                if size:
                    resize = {"Height": size[0], "Width": size[1]}
                    self._send(self.stream.pack_json(self.stream.RESIZE, resize))
            elif self.pid > 0:
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    pass

    def _send(self, frame: bytes) -> None:
        try:
            self.sock.sendall(frame)
        except OSError:
            pass  # the monitor is gone; reading its socket will tell
