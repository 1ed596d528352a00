"""--ipc shareable and --ipc container:NAME, as dockerd does them: a shareable container's /dev/shm
is a tmpfs mounted on the host (<container dir>/shm) and bound into it, so that a container joining
its IPC namespace can bind the same one. A private container's /dev/shm lives only inside its own
mount namespace: joining it is refused ("non-shareable IPC"), as docker refuses it."""

from __future__ import annotations

import os
from pathlib import Path

from pallet.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.engine.core import Engine
    from pallet.state.containers import ContainerRecord

SHM = "shm"  # the host-side mount point, beside the rootfs


def shm_dir(engine: Engine, cid: str) -> Path:
    return engine.paths.container_dir(cid) / SHM


def mount_shareable(engine: Engine, rec: ContainerRecord, size: int) -> str:
    """Mount (once per run) the tmpfs a shareable container gets as /dev/shm; returns its path."""
    from pallet.runtime import linux, rootfs

    target = shm_dir(engine, rec.id)
    target.mkdir(mode=0o755, exist_ok=True)
    if not rootfs.is_mounted(target):
        flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
        linux.mount("shm", str(target), "tmpfs", flags, f"mode=1777,size={size}")
    return str(target)


def donor_shm(engine: Engine, donor_id: str) -> str:
    """The /dev/shm of a running shareable container another one joins (`--ipc container:NAME`)."""
    from pallet.runtime import rootfs

    target = shm_dir(engine, donor_id)
    if not rootfs.is_mounted(target):
        raise InvalidArgument(
            f"container {donor_id}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
        )
    return str(target)


def unmount(container_dir: str | os.PathLike[str]) -> None:
    """Let go of a shareable container's /dev/shm (its joiners keep their own binds of it)."""
    from pallet.runtime import rootfs

    rootfs.unmount(os.path.join(container_dir, SHM))
