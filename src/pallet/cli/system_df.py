"""`system df` output, as docker's DiskUsageContext writes it: the summary table (TYPE TOTAL ACTIVE
SIZE RECLAIMABLE), the verbose sections of `-v`, or a Go template."""

from __future__ import annotations

from typing import Any

from pallet.cli.units import ago, human_size
from pallet.engine.core import Engine
from pallet.engine.system import DiskUsage, is_active
from pallet.errors import PalletError

DF_TABLE = [
    ("TYPE", "{{.Type}}"),
    ("TOTAL", "{{.TotalCount}}"),
    ("ACTIVE", "{{.Active}}"),
    ("SIZE", "{{.Size}}"),
    ("RECLAIMABLE", "{{.Reclaimable}}"),
]
DF_IMAGES_TABLE = [
    ("REPOSITORY", "{{.Repository}}"),
    ("TAG", "{{.Tag}}"),
    ("IMAGE ID", "{{.ID}}"),
    ("CREATED", "{{.CreatedSince}}"),
    ("SIZE", "{{.Size}}"),
    ("SHARED SIZE", "{{.SharedSize}}"),
    ("UNIQUE SIZE", "{{.UniqueSize}}"),
    ("CONTAINERS", "{{.Containers}}"),
]
DF_CONTAINERS_TABLE = [
    ("CONTAINER ID", "{{.ID}}"),
    ("IMAGE", "{{.Image}}"),
    ("COMMAND", "{{.Command}}"),
    ("LOCAL VOLUMES", "{{.LocalVolumes}}"),
    ("SIZE", "{{.Size}}"),
    ("CREATED", "{{.RunningFor}}"),
    ("STATUS", "{{.Status}}"),
    ("NAMES", "{{.Names}}"),
]
DF_VOLUMES_TABLE = [("VOLUME NAME", "{{.Name}}"), ("LINKS", "{{.Links}}"), ("SIZE", "{{.Size}}")]
DF_CACHE_TABLE = [
    ("CACHE ID", "{{.ID}}"),
    ("CACHE TYPE", "{{.CacheType}}"),
    ("SIZE", "{{.Size}}"),
    ("CREATED", "{{.CreatedSince}}"),
    ("LAST USED", "{{.LastUsedSince}}"),
    ("USAGE", "{{.UsageCount}}"),
    ("SHARED", "{{.Shared}}"),
]


def _size(n: int) -> str:
    return human_size(n, 4)  # go-units HumanSize: four significant digits


def _reclaimable(reclaimable: int, total: int) -> str:
    if total > 0:
        return f"{_size(reclaimable)} ({reclaimable * 100 // total}%)"
    return _size(reclaimable)


def summary_rows(usage: DiskUsage) -> list[dict[str, str]]:
    used = sum(i.size - i.shared_size for i in usage.images if i.containers)
    rw = [c.sizes.rw for c in usage.containers]
    idle_rw = sum(c.sizes.rw for c in usage.containers if not is_active(c.record.state))
    volume_total = sum(v.size for v in usage.volumes)
    volume_idle = sum(v.size for v in usage.volumes if v.ref_count == 0)

    def row(kind: str, total: int, active: int, size: str, reclaimable: str) -> dict[str, str]:
        return {
            "Active": str(active),
            "Reclaimable": reclaimable,
            "Size": size,
            "TotalCount": str(total),
            "Type": kind,
        }

    return [
        row(
            "Images",
            len(usage.images),
            sum(1 for i in usage.images if i.containers),
            _size(usage.layers_size),
            _reclaimable(usage.layers_size - used, usage.layers_size),
        ),
        row(
            "Containers",
            len(usage.containers),
            sum(1 for c in usage.containers if is_active(c.record.state)),
            _size(sum(rw)),
            _reclaimable(idle_rw, sum(rw)),
        ),
        row(
            "Local Volumes",
            len(usage.volumes),
            sum(1 for v in usage.volumes if v.ref_count),
            _size(volume_total),
            _reclaimable(volume_idle, volume_total),
        ),
        row(
            "Build Cache",
            usage.build_cache.count,
            0,
            _size(usage.build_cache.size),
            _size(usage.build_cache.reclaimable),
        ),
    ]


def image_rows(usage: DiskUsage, trunc: bool) -> list[dict[str, str]]:
    from pallet.oci import reference as refs

    rows = []
    for i in usage.images:
        repo = tag = "<none>"
        if i.record.tags:
            ref = refs.parse(i.record.tags[0])  # docker shows the first tag only
            repo, tag = ref.familiar_name, ref.tag or "<none>"
        rows.append({
            "Containers": str(i.containers), "CreatedAt": i.record.created,
            "CreatedSince": ago(i.record.created), "ID": i.record.short_id if trunc else i.record.id,
            "Repository": repo,
            "SharedSize": _size(i.shared_size), "Size": human_size(i.size), "Tag": tag,
            "UniqueSize": _size(i.size - i.shared_size),
        })  # fmt: skip
    return rows


def container_rows(engine: Engine, usage: DiskUsage, trunc: bool) -> list[Any]:
    from pallet.cli.ps_rows import ps_row
    from pallet.engine import inspect_shape
    from pallet.engine.container_list import Listed
    from pallet.engine.inspect import Sizes, port_map

    rows = []
    for item in usage.containers:
        rec = item.record
        shown = Listed(rec, item.image, Sizes(item.sizes.rw, 0))  # docker hides the virtual size here
        networks = inspect_shape.network_settings(
            rec.config["HostConfig"].get("NetworkMode") or "none", rec.config.get("NetworkSettings") or {}, {}
        )["Networks"]
        rows.append(ps_row(shown, trunc=trunc, port_map=port_map(rec), networks=list(networks)))
    return rows


def cache_rows(usage: DiskUsage, trunc: bool) -> list[dict[str, str]]:
    import time

    from pallet.cli.units import human_duration

    image_layers = {c for i in usage.images for c in i.record.chain_ids}
    rows = []
    for r in usage.build_cache.records:
        rows.append({
            "CacheType": "regular", "CreatedAt": r.created, "CreatedSince": ago(r.created),
            "Description": r.description, "ID": r.key[7:32] if trunc else r.key[7:],
            "InUse": "false", "LastUsedSince": human_duration(time.time() - r.last_used) + " ago",
            "Parent": r.parent[7:32] if r.parent else "", "Shared": str(r.chain_id in image_layers).lower(),
            "Size": _size(r.size), "UsageCount": str(r.usage_count),
        })  # fmt: skip
    return rows


def volume_rows(usage: DiskUsage) -> list[dict[str, str]]:
    return [{"Links": str(v.ref_count), "Name": v.name, "Size": _size(v.size)} for v in usage.volumes]


def render(engine: Engine, usage: DiskUsage, fmt: str, *, verbose: bool) -> str:
    from pallet.cli.format import TemplateError, format_rows
    from pallet.cli.format import render as render_template

    table = not fmt or fmt == "table"
    try:
        if not verbose:
            return format_rows(fmt or None, summary_rows(usage), DF_TABLE)
        images = image_rows(usage, table)
        containers = container_rows(engine, usage, table)
        volumes = volume_rows(usage)
        if not table:
            data = {
                "Images": images,
                "Containers": containers,
                "Volumes": volumes,
                "BuildCache": cache_rows(usage, False),
            }
            source = "{{json .}}" if fmt == "json" else fmt
            return render_template(source, data) + "\n"
        return "".join([
            "Images space usage:\n\n", format_rows(None, images, DF_IMAGES_TABLE),
            "\nContainers space usage:\n\n", format_rows(None, containers, DF_CONTAINERS_TABLE),
            "\nLocal Volumes space usage:\n\n", format_rows(None, volumes, DF_VOLUMES_TABLE),
            f"\nBuild cache usage: {_size(usage.build_cache.size)}\n\n",
            format_rows(None, cache_rows(usage, True), DF_CACHE_TABLE),
        ])  # fmt: skip
    except TemplateError as e:
        raise PalletError(f"template parsing error: {e}") from None
