"""Build progress, as BuildKit shows it: plain numbered lines, a live view on a terminal, or nothing.

Plain (`--progress=plain`, or `auto` when stderr is not a terminal), one block per vertex:

    #5 [2/3] RUN echo hi
    #5 0.231 hi
    #5 DONE 0.3s

a cached step prints `#5 CACHED`, a failed one `#5 ERROR: <message>`. Steps of parallel stages
interleave, each line carrying its vertex number. The terminal view (`tty`) redraws a summary
(`[+] Building 1.2s (5/8)`, one line per vertex with its time, CACHED or ERROR, and the last lines
of the running steps' output) at most ten times a second. Quiet (`-q`) prints nothing here:
the caller prints the image ID. Everything goes to stderr, as docker does.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import TextIO

__all__ = ["Progress", "Vertex", "make_progress"]

_TTY_TAIL = 6  # output lines shown under a running step in the terminal view
_ERROR_TAIL = 10  # output lines repeated in the error summary


class Vertex:
    """One step of the progress (`#N name`)."""

    def __init__(self, progress: Progress, number: int, name: str) -> None:
        self.progress = progress
        self.number = number
        self.name = name
        self.started = time.monotonic()
        self.finished: float | None = None
        self.state = "running"  # running | done | cached | canceled | error
        self.step = False  # a filesystem step (what a fully cached rebuild shows as CACHED)
        self.tail: deque[str] = deque(maxlen=_ERROR_TAIL)
        self._partial = b""

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def log(self, text: str) -> None:
        """A status line of the vertex (`#1 transferring dockerfile: 62B done`)."""
        self.progress._line(self, text)

    def output(self, data: bytes) -> None:
        """Bytes the step's process wrote; shown line by line with the time since the step began."""
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for raw in lines:
            self._emit(raw)

    def _emit(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        stamp = f"{time.monotonic() - self.started:.3f}"
        self.tail.append(f"{stamp} {text}")
        self.progress._output(self, stamp, text)

    def flush(self) -> None:
        if self._partial:
            raw, self._partial = self._partial, b""
            self._emit(raw)

    def cached(self) -> None:
        self.flush()
        self.state, self.finished = "cached", time.monotonic()
        self.progress._end(self, "CACHED")

    def done(self) -> None:
        self.flush()
        self.state, self.finished = "done", time.monotonic()
        self.progress._end(self, f"DONE {self.elapsed:.1f}s")

    def canceled(self) -> None:
        self.flush()
        self.state, self.finished = "canceled", time.monotonic()
        self.progress._end(self, "CANCELED")

    def error(self, message: str) -> None:
        self.flush()
        self.state, self.finished = "error", time.monotonic()
        self.progress._end(self, f"ERROR: {message}")


class Progress:
    """Plain output; the base of the other modes."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.lock = threading.Lock()
        self.vertices: list[Vertex] = []
        self.started = time.monotonic()

    def start(self) -> None:
        self._write('#0 building with "default" instance using pallet driver\n\n')

    def vertex(self, name: str) -> Vertex:
        with self.lock:
            v = Vertex(self, len(self.vertices) + 1, name)
            self.vertices.append(v)
        self._write(f"#{v.number} {name}\n")
        return v

    def _line(self, v: Vertex, text: str) -> None:
        self._write(f"#{v.number} {text}\n")

    def _output(self, v: Vertex, stamp: str, text: str) -> None:
        self._write(f"#{v.number} {stamp} {text}\n")

    def _end(self, v: Vertex, text: str) -> None:
        self._write(f"#{v.number} {text}\n\n")

    def _write(self, text: str) -> None:
        with self.lock:
            self.out.write(text)
            self.out.flush()

    def note(self, text: str) -> None:
        """A warning or remark outside any vertex."""
        self._write(text if text.endswith("\n") else text + "\n")

    def failure(self, vertex: Vertex | None, message: str, excerpt: list[str]) -> None:
        """The summary docker prints after a failed build: the step's last output, the Dockerfile lines."""
        lines = []
        if vertex is not None:
            lines += ["------", f" > {vertex.name}:", *vertex.tail, "------"]
        lines += excerpt
        self.stop()
        self._write("\n".join(lines) + ("\n" if lines else ""))

    def stop(self) -> None:
        """The build is over: a live view draws its final state."""


class QuietProgress(Progress):
    def start(self) -> None:
        pass

    def vertex(self, name: str) -> Vertex:
        with self.lock:
            v = Vertex(self, len(self.vertices) + 1, name)
            self.vertices.append(v)
        return v

    def _line(self, v: Vertex, text: str) -> None:
        pass

    def _output(self, v: Vertex, stamp: str, text: str) -> None:
        pass

    def _end(self, v: Vertex, text: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def failure(self, vertex: Vertex | None, message: str, excerpt: list[str]) -> None:
        # Quiet builds still show why they failed: the step's output and the Dockerfile lines.
        lines = [*(vertex.tail if vertex else []), *excerpt]
        if lines:
            self._write("\n".join(lines) + "\n")


class TtyProgress(Progress):
    """A summary redrawn in place: a timer thread keeps the running steps' clocks moving."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(out)
        self._drawn = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._notes: list[str] = []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.1):
            self._redraw()

    def vertex(self, name: str) -> Vertex:
        with self.lock:
            v = Vertex(self, len(self.vertices) + 1, name)
            self.vertices.append(v)
        return v

    def _line(self, v: Vertex, text: str) -> None:
        pass

    def _output(self, v: Vertex, stamp: str, text: str) -> None:
        pass

    def _end(self, v: Vertex, text: str) -> None:
        pass

    def note(self, text: str) -> None:
        with self.lock:
            self._notes.append(text.rstrip("\n"))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None
        self._redraw(final=True)

    def _redraw(self, final: bool = False) -> None:
        with self.lock:
            width = _columns(self.out)
            done = sum(1 for v in self.vertices if v.state != "running")
            state = "FINISHED" if final else "Building"
            lines = [f"[+] {state} {time.monotonic() - self.started:.1f}s ({done}/{len(self.vertices)})"]
            for v in self.vertices:
                prefix = {"cached": "CACHED ", "error": "ERROR ", "canceled": "CANCELED "}.get(v.state, "")
                clock = f"{v.elapsed:.1f}s"
                label = f" => {prefix}{v.name}"
                room = max(width - len(clock) - 2, 10)
                lines.append(f"{label[:room]:<{room}} {clock}")
                if v.state == "running" or (final and v.state == "error"):
                    for out in list(v.tail)[-_TTY_TAIL:]:
                        lines.append(f" => => # {out}"[: width - 1])
            lines += self._notes
            text = (f"\x1b[{self._drawn}F\x1b[J" if self._drawn else "") + "\n".join(lines) + "\n"
            self._drawn = len(lines)
            self.out.write(text)
            self.out.flush()


def _columns(out: TextIO) -> int:
    import os

    try:
        return max(os.get_terminal_size(out.fileno()).columns, 40)
    except (OSError, ValueError):
        return 80


def make_progress(mode: str, *, quiet: bool, out: TextIO | None = None) -> Progress:
    """`auto` is `tty` on a terminal and `plain` elsewhere; -q is quiet whatever the mode."""
    out = out or sys.stderr
    if quiet:
        return QuietProgress(out)
    if mode == "auto":
        mode = "tty" if out.isatty() else "plain"
    if mode == "tty":
        return TtyProgress(out)
    if mode == "plain":
        return Progress(out)
    raise ValueError(f'invalid progress mode "{mode}": expected auto, plain, tty or quiet')
