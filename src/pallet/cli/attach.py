"""The CLI end of an attached container: start it with our socket handed to its monitor, copy
frames to our stdout/stderr and our stdin to it, forward signals, and return its exit code."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading

from pallet.engine.core import Engine


def attached_start(engine: Engine, cid: str, *, stdin: bool, sig_proxy: bool) -> int:
    from pallet.engine import lifecycle

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        rec = lifecycle.start(engine, cid, attach=theirs)
    finally:
        theirs.close()
    from pallet.runtime import stream

    ours.sendall(stream.pack_json(stream.OPEN, {"Stdin": stdin, "Stdout": True, "Stderr": True}))
    pid = int(rec.state.get("Pid") or 0)
    if sig_proxy and pid:
        _proxy_signals(pid)
    if stdin:
        threading.Thread(target=_pump_stdin, args=(ours,), daemon=True).start()
    code = _pump_output(ours)
    if code is None:
        # The monitor went away without a word: read what it recorded, if anything.
        code = int(lifecycle.wait_exit(engine, cid).get("ExitCode", 255))
    return code


def _proxy_signals(pid: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)


def _pump_stdin(sock: socket.socket) -> None:
    from pallet.runtime import stream

    fd = sys.stdin.fileno()
    try:
        while data := os.read(fd, 65536):
            sock.sendall(stream.pack(stream.STDIN, data))
        sock.sendall(stream.pack(stream.STDIN_EOF))
    except OSError:
        pass


def _pump_output(sock: socket.socket) -> int | None:
    from pallet.runtime import stream

    outs = {stream.STDOUT: sys.stdout.buffer, stream.STDERR: sys.stderr.buffer}
    while (frame := stream.recv_frame(sock)) is not None:
        kind, payload = frame
        if kind == stream.EXIT:
            return int(json.loads(payload).get("ExitCode", 0))
        dest = outs.get(kind)
        if dest is not None:
            try:
                dest.write(payload)
                dest.flush()
            except BrokenPipeError:
                outs.pop(kind)
    return None
