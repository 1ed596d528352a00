"""Our own terminal: raw mode (always restored), its window size; signals (SIGWINCH, SIGCHLD, proxied
ones) as events for a select loop."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import termios
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

_WINSIZE = struct.Struct("HHHH")


def is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def get_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on fd, or None when it is not a terminal or has no size."""
    try:
        rows, cols, _, _ = _WINSIZE.unpack(fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(_WINSIZE.size)))
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, _WINSIZE.pack(rows, cols, 0, 0))


def write_all(fd: int, data: bytes) -> None:
    """Write everything to fd (our stdout may have been left non-blocking by whoever shares it)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            import select

            select.select([], [fd], [])


def our_size() -> tuple[int, int] | None:
    """The size of the terminal we run in: stdout's, else stdin's (docker asks its output stream)."""
    return get_size(1) or get_size(0)


@contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """The terminal on fd in raw mode (cfmakeraw, as docker's MakeRaw) for the block's duration.

    SIGTERM, SIGHUP and SIGQUIT become SystemExit while raw, so that the terminal is restored on those
    exits too (nothing can restore it after SIGKILL)."""
    saved = termios.tcgetattr(fd)
    raw = list(saved)
    raw[0] &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
    )
    raw[1] &= ~termios.OPOST
    raw[2] &= ~(termios.CSIZE | termios.PARENB)
    raw[2] |= termios.CS8
    raw[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cc = list(raw[6])
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    raw[6] = cc
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    for sig, handler in previous.items():
        if handler in (signal.SIG_DFL, None):
            signal.signal(sig, _exit_on_signal)
    termios.tcsetattr(fd, termios.TCSANOW, raw)
    try:
        yield
    finally:
        try:
            termios.tcsetattr(fd, termios.TCSANOW, saved)
        except termios.error:
            pass  # the terminal went away (hangup): nothing left to restore
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


class SignalPipe:
    """Signals turned into readable events for a select loop: each caught signal is queued and a byte
    written to a pipe. (A plain flag would not do: select() is retried after a handler runs.)"""

    def __init__(self, signals: Iterable[int]) -> None:
        self.fd, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pending: list[int] = []
        self._previous: dict[int, Any] = {}
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._caught)

    def _caught(self, signum: int, _frame: Any) -> None:
        self._pending.append(signum)
        try:
            os.write(self._w, b"s")
        except BlockingIOError:
            pass  # already readable

    def take(self) -> list[int]:
        """The signals caught since the last call, in order."""
        try:
            while os.read(self.fd, 512):
                pass
        except BlockingIOError:
            pass
        caught, self._pending = self._pending, []
        return caught

    def close(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        os.close(self.fd)
        os.close(self._w)
