"""Did the kernel's OOM killer strike inside a container? Read from its memory cgroup, after the
container exited and before the runtime deletes the cgroup.

cgroup v1: memory.oom_control has a line "oom_kill N" (kernels >= 4.13); v2: memory.events has
"oom_kill N". Any kill in the container's cgroup counts, as docker reports OOMKilled for it.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from pallet.runtime.cgroups import Hierarchy


def parse_count(text: str, key: str = "oom_kill") -> int:
    """The value of `key` in a flat-keyed cgroup file ("name value" per line); 0 if absent."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value.strip())
            except ValueError:
                return 0
    return 0


def memory_event_files(cgroups_path: str, hs: list[Hierarchy] | None = None) -> list[str]:
    """The files holding the oom kill count of the cgroup at `cgroups_path` (as in the spec's
    linux.cgroupsPath), for the hierarchies mounted here (`hs`, if the caller has them)."""
    from pallet.runtime import cgroups

    if hs is None:
        hs = cgroups.hierarchies()
    unified = cgroups.is_unified(hs)
    files = []
    for h in hs:
        if h.version == 1 and "memory" in h.controllers:
            files.append(os.path.join(cgroups.container_dir(h, cgroups_path), "memory.oom_control"))
        elif h.version == 2 and unified:
            files.append(os.path.join(cgroups.container_dir(h, cgroups_path), "memory.events"))
    return files


def oom_kills(cgroups_path: str, hs: list[Hierarchy] | None = None) -> int:
    total = 0
    for path in memory_event_files(cgroups_path, hs):
        try:
            with open(path) as f:
                total += parse_count(f.read())
        except OSError:
            pass  # no memory cgroup (or already gone): nothing to report
    return total
