"""Where pallet keeps things on disk: one record of every path, derived from the root."""

from __future__ import annotations

import os
from pathlib import Path

from pallet.records import FrozenRecord

DEFAULT_ROOT = "/var/lib/pallet"
DEFAULT_RUNROOT = "/run/pallet"


class StatePaths(FrozenRecord):
    __slots__ = ("root", "runroot")
    root: Path
    runroot: Path

    def __init__(self, root: Path, runroot: Path) -> None:
        self._set(root=root, runroot=runroot)

    @classmethod
    def resolve(cls, root: str | None = None, runroot: str | None = None) -> StatePaths:
        """--root/--runroot win over PALLET_ROOT/PALLET_RUNROOT. A non-default root gets its
        volatile state beside it so that test roots never share /run/pallet."""
        r = root or os.environ.get("PALLET_ROOT") or DEFAULT_ROOT
        rr = runroot or os.environ.get("PALLET_RUNROOT")
        if not rr:
            rr = DEFAULT_RUNROOT if os.path.abspath(r) == DEFAULT_ROOT else os.path.join(r, "run")
        return cls(Path(os.path.abspath(r)), Path(os.path.abspath(rr)))

    @property
    def db(self) -> Path:
        return self.root / "pallet.db"

    @property
    def blobs(self) -> Path:
        return self.root / "content" / "blobs" / "sha256"

    @property
    def ingest(self) -> Path:
        return self.root / "content" / "ingest"

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def container_dir(self, cid: str) -> Path:
        return self.containers / cid

    def container_run(self, cid: str) -> Path:
        return self.runroot / "containers" / cid

    def ensure(self) -> None:
        for p in (
            self.root,
            self.blobs,
            self.ingest,
            self.layers,
            self.containers,
            self.volumes,
            self.tmp,
            self.locks,
            self.runroot,
        ):
            p.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
