"""A container's root filesystem on the host: the overlay of its image's layers (or a private
copy where overlayfs is unavailable), mounted for each run, and what a run mounts beside it."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pallet.engine.core import Engine
    from pallet.state.containers import ContainerRecord


def mount_rootfs(engine: Engine, rec: ContainerRecord) -> Any:
    """Mount the container's rootfs (overlay of its image's layers, or a private copy where
    overlayfs is unavailable) unless it already is; returns its path."""
    from pallet.runtime import rootfs

    cdir = engine.paths.container_dir(rec.id)
    target = cdir / "rootfs"
    if rootfs.is_mounted(target):
        return target
    chains = engine.images.get(rec.image_id).chain_ids if rec.image_id else []
    if _use_overlay(engine):
        # --rm: the upper dir is thrown away at the exit, so overlayfs need never sync it (podman too).
        volatile = bool(rec.config["HostConfig"].get("AutoRemove"))
        rootfs.mount_overlay(
            engine.paths.layers, chains, cdir / "upper", cdir / "work", target, volatile=volatile
        )
    elif not (cdir / ".copied").exists():
        rootfs.copy_layers([engine.images.layer_dir(c) for c in chains], target)
        (cdir / ".copied").touch()
    return target


def _use_overlay(engine: Engine) -> bool:
    if os.environ.get("PALLET_NO_OVERLAY") == "1":
        return False
    marker = engine.paths.root / ".overlay"
    if marker.exists():
        return marker.read_text() == "yes"
    from pallet.runtime import rootfs

    ok = rootfs.overlay_supported(engine.paths.tmp)
    marker.write_text("yes" if ok else "no")
    return ok


def unmount_container(engine: Engine, cid: str) -> None:
    """What a container has mounted on the host while it runs: its rootfs, and a shareable
    container's /dev/shm."""
    from pallet.engine import container_ipc
    from pallet.runtime import rootfs

    cdir = engine.paths.container_dir(cid)
    rootfs.unmount(cdir / "rootfs")
    container_ipc.unmount(cdir)
