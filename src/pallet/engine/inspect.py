"""`inspect` JSON for containers, in the shape of the Engine API's ContainerInspectResponse."""

from __future__ import annotations

from typing import Any

from pallet.engine.containers import lookup
from pallet.engine.core import Engine


def container(engine: Engine, ref: str) -> dict[str, Any]:
    from pallet.engine.lifecycle import refresh

    rec = refresh(engine, lookup(engine, ref))
    cfg = rec.config["Config"]
    hc = rec.config["HostConfig"]
    cdir = engine.paths.container_dir(rec.id)
    entry = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    chains = engine.images.get(rec.image_id).chain_ids if rec.image_id else []
    lower = ":".join(str(engine.images.layer_dir(c)) for c in reversed(chains))
    return {
        "Id": rec.id,
        "Created": rec.created,
        "Path": entry[0] if entry else "",
        "Args": entry[1:],
        "State": rec.state,
        "Image": rec.image_id,
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
        "ExecIDs": None,
        "HostConfig": hc,
        "GraphDriver": {
            "Data": {
                "LowerDir": lower,
                "MergedDir": str(cdir / "rootfs"),
                "UpperDir": str(cdir / "upper"),
                "WorkDir": str(cdir / "work"),
            },
            "Name": "overlay2",
        },
        "Mounts": [],
        "Config": cfg,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "HairpinMode": False,
            "Ports": {},
            "SandboxKey": "",
            "Networks": {},
        },
    }
