"""`system df` (GET /system/df) and `system prune`: what images, containers, volumes and the build
cache take on disk, and removing what nothing uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pallet.engine.core import Engine
from pallet.images.store import ImageRecord


@dataclass
class ImageUsage:
    record: ImageRecord
    size: int
    shared_size: int  # bytes of its layers that other listed images have too
    containers: int


@dataclass
class VolumeUsage:
    name: str
    size: int
    ref_count: int  # containers that mount it
    record: Any = None  # volumes.store.VolumeRecord


@dataclass
class BuildCacheUsage:
    count: int  # records and RUN cache mounts
    size: int
    reclaimable: int  # what no image uses
    records: list[Any] = field(default_factory=list)  # build.cache.CacheRecord, for `df -v`


@dataclass
class DiskUsage:
    layers_size: int  # every layer once (docker's LayersSize)
    images: list[ImageUsage]
    containers: list[Any]  # engine.container_list.Listed, with sizes
    volumes: list[VolumeUsage]
    build_cache: BuildCacheUsage


def disk_usage(engine: Engine) -> DiskUsage:
    from pallet.engine import container_list

    conn = engine.conn
    counts = dict(conn.execute("SELECT image_id, COUNT(*) FROM containers GROUP BY image_id").fetchall())
    parents = {r[0] for r in conn.execute("SELECT DISTINCT parent FROM images WHERE parent IS NOT NULL")}
    # as `docker images` (not -a): untagged parents of other images are intermediate, not listed
    images = [r for r in engine.images.all() if r.tags or r.repo_digests or r.id not in parents]
    sizes = {r[0]: int(r[1]) for r in conn.execute("SELECT chain_id, size FROM layers")}
    holders: dict[str, int] = {}
    for image in images:
        for chain in set(image.chain_ids):
            holders[chain] = holders.get(chain, 0) + 1
    usage = [
        ImageUsage(
            image,
            image.size,
            sum(sizes.get(c, 0) for c in set(image.chain_ids) if holders[c] > 1),
            int(counts.get(image.id, 0)),
        )
        for image in images
    ]
    listed = container_list.list_containers(engine, all_containers=True, size=True)
    return DiskUsage(sum(sizes.values()), usage, listed, _volumes(engine), _build_cache(engine))


def _build_cache(engine: Engine) -> BuildCacheUsage:
    from pallet.build.cache import CacheStore
    from pallet.engine import build_cache

    count, size, reclaimable = build_cache.usage(engine)
    return BuildCacheUsage(count, size, reclaimable, CacheStore(engine.conn).all())


def _volumes(engine: Engine) -> list[VolumeUsage]:
    try:
        from pallet.engine.volumes import dir_size
        from pallet.volumes import store
    except ImportError:  # no volume support in this build
        return []
    out = []
    for rec in store.all_volumes(engine.conn):
        out.append(
            VolumeUsage(
                rec.name,
                dir_size(rec.mountpoint(engine.paths.volumes)),
                len(store.users(engine.conn, rec.name)),
                rec,
            )
        )
    return out


def is_active(state: dict[str, Any]) -> bool:
    """A container whose layer is not reclaimable: running, paused or restarting."""
    return bool(state.get("Running") or state.get("Paused") or state.get("Restarting"))


@dataclass
class PruneReport:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    image_lines: list[str] = field(default_factory=list)  # "untagged: ..." / "deleted: sha256:..."
    build_cache: list[str] = field(default_factory=list)
    reclaimed: int = 0


def prune(engine: Engine, *, all_images: bool, volumes: bool) -> PruneReport:
    """Stopped containers, then (with `volumes`) unused anonymous volumes, then dangling images
    (every image no container uses with `all_images`), then unused build cache (all of it with
    `all_images`): docker's order, so that what the removed containers held is free for the later
    steps. Unused user-defined networks go right after the containers, as in docker."""
    from pallet.engine import images
    from pallet.engine.prune import prune_containers

    report = PruneReport()
    report.containers, space = prune_containers(engine)
    report.reclaimed += space
    from pallet.engine import networks

    report.networks = networks.prune(engine)
    if volumes:
        from pallet.engine import volumes as volume_verbs

        report.volumes, space = volume_verbs.prune(engine, all_volumes=False, filters={})
        report.reclaimed += space
    report.image_lines, space = images.prune(engine, all_images=all_images)
    report.reclaimed += space
    from pallet.engine import build_cache

    report.build_cache, space = build_cache.prune(engine, all_records=all_images)
    report.reclaimed += space
    return report
