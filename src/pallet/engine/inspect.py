"""`inspect` JSON for containers, in the shape of the Engine API's ContainerInspectResponse, and
the numbers other views share with it: sizes (`-s`) and published ports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pallet.engine import inspect_shape as shape
from pallet.engine.containers import lookup
from pallet.engine.core import Engine
from pallet.errors import NotFound
from pallet.images.store import ImageRecord
from pallet.state.containers import ContainerRecord


@dataclass(frozen=True)
class Sizes:
    rw: int  # the container's own layer (SizeRw)
    root_fs: int  # image layers plus its own layer (SizeRootFs)


def sizes(engine: Engine, rec: ContainerRecord) -> Sizes:
    from pallet.engine.rwlayer import upper_size

    rw = upper_size(engine.paths.container_dir(rec.id) / "upper")
    image = _image(engine, rec)
    return Sizes(rw, rw + (image.size if image else 0))


def _image(engine: Engine, rec: ContainerRecord) -> ImageRecord | None:
    """The container's image; None when it was removed under a stopped container (rmi -f)."""
    if not rec.image_id:
        return None
    try:
        return engine.images.get(rec.image_id)
    except NotFound:
        return None


def port_map(rec: ContainerRecord) -> dict[str, Any]:
    """NetworkSettings.Ports: what the network engine recorded for a running container (published
    bindings and exposed ports); a stopped container publishes nothing, as docker shows it."""
    if not rec.state.get("Running"):
        return {}
    recorded = (rec.config.get("NetworkSettings") or {}).get("Ports")
    if recorded is not None:
        return dict(recorded)
    return {port: None for port in rec.config["Config"].get("ExposedPorts") or {}}


def container(engine: Engine, ref: str, *, size: bool = False) -> dict[str, Any]:
    from pallet.engine.lifecycle import refresh

    rec = refresh(engine, lookup(engine, ref))
    return describe(engine, rec, size=size)


def describe(engine: Engine, rec: ContainerRecord, *, size: bool = False) -> dict[str, Any]:
    cfg = rec.config["Config"]
    hc = rec.config["HostConfig"]
    cdir = engine.paths.container_dir(rec.id)
    entry = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    chains = _chain_ids(engine, rec)
    lower = ":".join(str(engine.images.layer_dir(c)) for c in reversed(chains))
    out: dict[str, Any] = {
        "Id": rec.id,
        "Created": rec.created,
        "Path": entry[0] if entry else "",
        "Args": entry[1:],
        "State": shape.state(rec.state),
        "Image": rec.image_id or "",
        "ResolvConfPath": str(cdir / "resolv.conf"),
        "HostnamePath": str(cdir / "hostname"),
        "HostsPath": str(cdir / "hosts"),
        "LogPath": str(cdir / f"{rec.id}-json.log"),
        "Name": "/" + rec.name,
        "RestartCount": rec.config.get("RestartCount", 0),
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": rec.config.get("ExecIDs") or None,
        "HostConfig": shape.host_config(hc),
        "GraphDriver": {
            "Data": {
                "LowerDir": lower,
                "MergedDir": str(cdir / "rootfs"),
                "UpperDir": str(cdir / "upper"),
                "WorkDir": str(cdir / "work"),
            },
            "Name": "overlay2",
        },
    }
    if size:
        measured = sizes(engine, rec)
        out["SizeRw"] = measured.rw
        out["SizeRootFs"] = measured.root_fs
    out["Mounts"] = list(rec.config.get("Mounts") or [])
    out["Config"] = shape.config(cfg)
    out["NetworkSettings"] = shape.network_settings(
        hc.get("NetworkMode") or "none", rec.config.get("NetworkSettings") or {}, port_map(rec)
    )
    return out


def _chain_ids(engine: Engine, rec: ContainerRecord) -> list[str]:
    image = _image(engine, rec)
    return image.chain_ids if image else []
