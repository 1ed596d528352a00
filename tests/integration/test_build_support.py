"""Helpers for the `pallet build` tests (imported by the other test_build_* files).

`Build` drives the real CLI against the test's own root (the `busybox` fixture) with a fresh
context directory: write files, build a Dockerfile, run the result, read its config and history.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Pallet

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, namespaces, cgroups)"),
    pytest.mark.skipif(not shutil.which("busybox"), reason="busybox-static is not installed"),
]


class Build:
    def __init__(self, pallet: Pallet, context: Path) -> None:
        self.pallet = pallet
        self.ctx = context

    def files(self, files: dict[str, str | bytes]) -> None:
        for rel, content in files.items():
            path = self.ctx / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)

    def __call__(self, dockerfile: str | None, *args: str, tag: str = "t",
                 files: dict[str, str | bytes] | None = None, check: bool = True, input: bytes | None = None,
                 context: str | None = None) -> subprocess.CompletedProcess[bytes]:
        if files:
            self.files(files)
        if dockerfile is not None:
            (self.ctx / "Dockerfile").write_text(dockerfile)
        argv = ["build", "--progress=plain", *(["-t", tag] if tag else []), *args, context or str(self.ctx)]
        return self.pallet(*argv, check=check, input=input)

    def log(self, dockerfile: str | None, *args: str, **kw: Any) -> str:
        return self(dockerfile, *args, **kw).stderr.decode()

    def sh(self, script: str, image: str = "t", *run_args: str) -> str:
        return self.pallet.out("run", "--rm", *run_args, image, "sh", "-c", script)

    def inspect(self, image: str = "t") -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.pallet.out("image", "inspect", image))[0]
        return data

    def config(self, image: str = "t") -> dict[str, Any]:
        """The image's config blob as stored (what docker writes as the image config)."""
        image_id = self.inspect(image)["Id"]
        blob = self.pallet.root / "content" / "blobs" / "sha256" / image_id[7:]
        data: dict[str, Any] = json.loads(blob.read_bytes())
        return data

    def history(self, image: str = "t") -> list[dict[str, Any]]:
        return list(self.config(image).get("history") or [])

    def new_history(self, image: str = "t") -> list[dict[str, Any]]:
        """History entries the build added (those of the base busybox image left out)."""
        return [h for h in self.history(image) if h.get("comment") == "buildkit.dockerfile.v0"]

    def image_id(self, image: str = "t") -> str:
        return str(self.inspect(image)["Id"])


def leftovers(root: Path) -> list[str]:
    """Temp dirs and mounts a build left behind under `root`."""
    found = [str(p) for p in (root / "tmp").iterdir()] if (root / "tmp").is_dir() else []
    netns_dir = str((root / "run" / "netns").resolve())  # a shared pin, like /run/netns: it stays
    with open("/proc/self/mountinfo") as f:
        prefix = str(root.resolve())
        found += [mp for mp in (line.split()[4] for line in f) if mp.startswith(prefix) and mp != netns_dir]
    return found


@pytest.fixture
def build(busybox: Pallet, tmp_path: Path) -> Iterator[Build]:
    context = tmp_path / "context"
    context.mkdir()
    yield Build(busybox, context)
    assert leftovers(busybox.root) == []
