"""Helpers of the container tests: `inspect` through the real CLI, and the clean-up of the runtime tests
that drive the runtimes directly (private_seccomp_cache_then_remove). (Every test root's containers,
processes and cgroups are taken down by conftest.teardown_root.)"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Pallet


def inspect(p: Pallet, name: str) -> dict[str, Any]:
    """A container's `inspect` document, via the real CLI."""
    found: dict[str, Any] = json.loads(p.out("inspect", name))[0]
    return found


def private_seccomp_cache_then_remove(
    tmp_path_factory: pytest.TempPathFactory, parent: str
) -> Iterator[None]:
    """For a module-scoped fixture of runtime tests: a private seccomp program cache while the tests
    run; afterwards the test cgroups' parent `parent` is removed from every hierarchy (relative
    cgroupsPaths land under the runtime's own cgroup or under the root, depending on the runtime)."""
    old = os.environ.get("PALLET_SECCOMP_CACHE")
    os.environ["PALLET_SECCOMP_CACHE"] = str(tmp_path_factory.mktemp("seccomp-cache"))
    yield
    if old is None:
        os.environ.pop("PALLET_SECCOMP_CACHE", None)
    else:
        os.environ["PALLET_SECCOMP_CACHE"] = old
    from pallet.runtime import cgroups

    deadline = time.monotonic() + 5
    for h in cgroups.hierarchies():
        for base in (h.own_path, "/"):
            p = os.path.normpath(f"{h.mountpoint}/{base}/{parent}")
            while os.path.isdir(p):
                try:
                    os.rmdir(p)
                except OSError:  # EBUSY while its removed children are still being released
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
