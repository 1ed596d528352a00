"""Frames on an attach connection between a client (CLI, API server) and a container's monitor.

Every frame is docker's multiplexed-stream header `[kind, 0, 0, 0, size(u32 BE)]` then `size`
bytes. The kinds 1 (stdout) and 2 (stderr) are docker's; the others are ours:

  client -> monitor: OPEN first (JSON {"Stdin": bool, "Stdout": bool, "Stderr": bool}),
                     then STDIN data, RESIZE (JSON {"Height": h, "Width": w}), STDIN_EOF.
  monitor -> client: STDOUT / STDERR data (a TTY container's output is all STDOUT), and last
                     EXIT (JSON {"ExitCode": n, "OOMKilled": bool, ...}) when the container ends.

A client that just goes away is detached; the container goes on.

How the monitor (runtime/monitor_process.py) serves it, at `<run_dir>/attach.sock` (any number of
clients at once) or over the socket handed to it at start:
  - Until its OPEN arrives a client gets both output streams and gives no input; OPEN's "Stdin"
    false makes its STDIN frames ignored, "Stdout"/"Stderr" false stop those frames (a client with
    neither gets just EXIT: that is how `wait` learns an exit code), "Height"/"Width" (TTY) set the
    initial window size as a RESIZE would.
  - STDIN_EOF, or a client with stdin going away, closes the container's stdin only when
    Config.StdinOnce is set (docker run -i) and it has no TTY.
  - EXIT comes at every exit of the container, restarts by a restart policy included (docker ends
    attach streams at each exit), always after the exit is recorded in the state database; then
    the connection closes.
"""

from __future__ import annotations

import json
import socket
import struct

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

STDIN = 0
STDOUT = 1
STDERR = 2
STDIN_EOF = 0xFC
RESIZE = 0xFD
EXIT = 0xFE
OPEN = 0xFB

_HEADER = struct.Struct(">BxxxI")


def pack(kind: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def pack_json(kind: int, obj: Any) -> bytes:
    return pack(kind, json.dumps(obj).encode())


class FrameBuffer:
    """Accumulates bytes from a non-blocking socket and yields whole frames."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        frames = []
        while len(self.buf) >= 8:
            kind, size = _HEADER.unpack_from(self.buf)
            if len(self.buf) < 8 + size:
                break
            frames.append((kind, bytes(self.buf[8 : 8 + size])))
            del self.buf[: 8 + size]
        return frames


def recv_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    """Blocking read of one frame; None at end of stream."""
    header = _recv_exact(sock, 8)
    if len(header) < 8:
        return None
    kind, size = _HEADER.unpack(header)
    payload = _recv_exact(sock, size)
    if len(payload) < size:
        return None
    return kind, payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except InterruptedError:
            continue
        if not chunk:
            break
        buf += chunk
    return buf
