"""What every step of one build shares: the stores, the context, secrets, the progress output, and
the cancellation of the processes still running when the build is interrupted."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pallet.errors import PalletError

if TYPE_CHECKING:
    from pallet.build.cache import CacheStore
    from pallet.build.context_source import BuildContext
    from pallet.build.progress import Progress
    from pallet.images.store import ImageStore

__all__ = ["BuildError", "BuildSession", "Cancelled", "Canceller", "StepFailed"]


class BuildError(PalletError):
    """A build that cannot go on; printed as `ERROR: failed to solve: <message>`."""


class StepFailed(BuildError):
    """A step failed; `line` is its Dockerfile line (for the excerpt docker prints)."""

    def __init__(self, message: str, *, line: int = 0, end_line: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.end_line = end_line or line


class Cancelled(BuildError):
    """The build was interrupted (Ctrl-C, SIGTERM) or another stage failed first."""


class Canceller:
    """The processes of running steps, so that an interrupt can kill them all at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pids: set[int] = set()
        self.event = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        if self.event.is_set():
            raise Cancelled("build cancelled")

    def register(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)
            cancelled = self.event.is_set()
        if cancelled:
            _kill(pid)

    def unregister(self, pid: int) -> None:
        with self._lock:
            self._pids.discard(pid)

    def cancel(self) -> None:
        with self._lock:
            self.event.set()
            pids = list(self._pids)
        for pid in pids:
            _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class BuildSession:
    store: ImageStore
    cache: CacheStore
    context: BuildContext
    progress: Progress
    canceller: Canceller
    secrets: dict[str, bytes] = field(default_factory=dict)  # --secret id -> content
    network: str = "default"  # --network: default (none for now) | none | host
    no_cache: bool = False
    # What the build read, for the build memo (engine/build_memo.py): context source patterns,
    # the cache keys of its steps, and whether anything (an ADD URL) makes it unrepeatable.
    context_reads: list[list[str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    replayable: bool = True
