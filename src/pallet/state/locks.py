"""File locks shared by every pallet process (the engine is daemonless)."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager
    from pathlib import Path


@contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """flock(2) on `path`: released by the kernel if the holder dies, so a crash never wedges others."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def store_lock(locks_dir: Path, *, shared: bool) -> AbstractContextManager[None]:
    """Writers of blobs and layers hold it shared; garbage collection holds it exclusive, so
    nothing is swept while another process is between writing a layer and registering it."""
    return file_lock(locks_dir / "store.lock", shared=shared)
