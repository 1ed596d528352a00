"""The monitor's attached clients: the listening socket `<run_dir>/attach.sock`, the connected
clients (any number), and the frames between them and the container (runtime/stream.py).

Output is queued per client and written when the socket can take it, so a slow client never
stalls the monitor's loop; the monitor stops reading the container's output while any queue is
over BACKLOG_MAX, which passes the back-pressure on to the container as a pipe would. The other
way round, while the container's stdin has more than BACKLOG_MAX queued the monitor stops reading
from clients (`reading`), so a writer faster than the container blocks in its own send.
"""

from __future__ import annotations

import json
import selectors
import socket
import time

from pallet.runtime import stream

TYPE_CHECKING = False  # typing costs ~2 ms at import (the monitor loads this module)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

BACKLOG_MAX = 1 << 20


class Client:
    __slots__ = ("sock", "frames", "pending", "stdin", "stdout", "stderr")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames = stream.FrameBuffer()
        self.pending = bytearray()
        # Until its OPEN frame arrives a client gets both output streams and gives no input.
        self.stdin = False
        self.stdout = True
        self.stderr = True


class Clients:
    def __init__(
        self,
        sel: selectors.BaseSelector,
        listener: socket.socket | None,
        on_stdin: Callable[[bytes], None],
        on_stdin_end: Callable[[], None],
        on_resize: Callable[[int, int], None],
    ) -> None:
        self.sel = sel
        self.listener = listener
        self.on_stdin = on_stdin
        self.on_stdin_end = on_stdin_end  # a client that had stdin sent STDIN_EOF or went away
        self.on_resize = on_resize
        self.clients: list[Client] = []
        self.reading = True
        if listener is not None:
            listener.setblocking(False)
            sel.register(listener, selectors.EVENT_READ, ("listener", None))

    # ---- connections -------------------------------------------------------------------------

    def accept(self) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        self.add(sock)

    def add(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        client = Client(sock)
        self.clients.append(client)
        self._register(client)

    def close_listener(self) -> None:
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None

    def drop(self, client: Client) -> None:
        if client not in self.clients:
            return
        self.clients.remove(client)
        try:
            self.sel.unregister(client.sock)
        except (KeyError, ValueError):
            pass  # not registered while input was paused and nothing was queued
        client.sock.close()
        if client.stdin:
            self.on_stdin_end()

    # ---- events ------------------------------------------------------------------------------

    def on_event(self, client: Client, mask: int) -> None:
        if client not in self.clients:
            return  # dropped earlier in the same round of events
        if mask & selectors.EVENT_WRITE:
            self._flush(client)
        if mask & selectors.EVENT_READ and client in self.clients:
            self._read(client)

    def _read(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(client)  # gone: detached; the container goes on
            return
        for kind, payload in client.frames.feed(data):
            if kind == stream.OPEN:
                self._open(client, payload)
            elif kind == stream.STDIN and client.stdin:
                self.on_stdin(payload)
            elif kind == stream.STDIN_EOF and client.stdin:
                client.stdin = False
                self.on_stdin_end()
            elif kind == stream.RESIZE:
                size = _json(payload)
                self.on_resize(int(size.get("Height") or 0), int(size.get("Width") or 0))

    def _open(self, client: Client, payload: bytes) -> None:
        opts = _json(payload)
        client.stdin = bool(opts.get("Stdin"))
        client.stdout = bool(opts.get("Stdout", True))
        client.stderr = bool(opts.get("Stderr", True))
        if opts.get("Height") and opts.get("Width"):
            self.on_resize(int(opts["Height"]), int(opts["Width"]))

    # ---- output ------------------------------------------------------------------------------

    def broadcast(self, kind: int, data: bytes) -> None:
        frame = stream.pack(kind, data)
        for client in list(self.clients):
            if (kind == stream.STDOUT and not client.stdout) or (kind == stream.STDERR and not client.stderr):
                continue
            self._queue(client, frame)

    def _queue(self, client: Client, frame: bytes) -> None:
        was_empty = not client.pending
        client.pending += frame
        if was_empty:
            self._flush(client)

    def _flush(self, client: Client) -> None:
        try:
            n = client.sock.send(client.pending) if client.pending else 0
            del client.pending[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.drop(client)
            return
        self._register(client)

    def _register(self, client: Client) -> None:
        events = (selectors.EVENT_READ if self.reading else 0) | (
            selectors.EVENT_WRITE if client.pending else 0
        )
        try:
            current = self.sel.get_key(client.sock).events
        except KeyError:
            current = 0
        if events == current:
            return
        if not events:
            self.sel.unregister(client.sock)
        elif not current:
            self.sel.register(client.sock, events, ("client", client))
        else:
            self.sel.modify(client.sock, events, ("client", client))

    def set_reading(self, reading: bool) -> None:
        """Take input from clients, or leave it in their sockets for now (stdin back-pressure)."""
        if reading != self.reading:
            self.reading = reading
            for client in self.clients:
                self._register(client)

    def backlog(self) -> int:
        return max((len(c.pending) for c in self.clients), default=0)

    def finish(self, exit_info: dict[str, Any], timeout: float = 5.0) -> None:
        """Send EXIT to every client, give them `timeout` to take what is queued, close them."""
        frame = stream.pack_json(stream.EXIT, exit_info)
        deadline = time.monotonic() + timeout
        for client in list(self.clients):
            client.pending += frame
            client.sock.setblocking(True)
            try:
                while client.pending:
                    client.sock.settimeout(max(0.01, deadline - time.monotonic()))
                    n = client.sock.send(client.pending)
                    del client.pending[:n]
            except OSError:
                pass
            client.stdin = False  # its end of stdin is handled with the container's
            self.drop(client)


def _json(payload: bytes) -> dict[str, Any]:
    try:
        got = json.loads(payload or b"{}")
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}
