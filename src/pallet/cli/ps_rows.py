"""The fields of one `ps` row, as docker's formatter names and shows them."""

from __future__ import annotations

import time
from typing import Any

from pallet.cli.units import human_duration, parse_time
from pallet.oci import reference as refs
from pallet.state.containers import ContainerRecord


def status_text(state: dict[str, Any]) -> str:
    """'Up 3 seconds', 'Exited (0) 2 minutes ago', 'Created', as docker's State.String()."""
    now = time.time()
    status = state.get("Status", "created")
    if state.get("Running"):
        up = human_duration(now - parse_time(state["StartedAt"]))
        if state.get("Paused"):
            return f"Up {up} (Paused)"
        health = (state.get("Health") or {}).get("Status")
        return f"Up {up}" + (f" ({health})" if health else "")
    if status == "created":
        return "Created"
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    finished = state.get("FinishedAt", "")
    if finished.startswith("0001"):
        return f"Exited ({state.get('ExitCode', 0)})"
    return f"Exited ({state.get('ExitCode', 0)}) {human_duration(now - parse_time(finished))} ago"


def _command(cfg: dict[str, Any], no_trunc: bool) -> str:
    cmd = " ".join(list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or []))
    if not no_trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    return f'"{cmd}"'


def _image(rec: ContainerRecord) -> str:
    name = rec.image_ref
    try:
        if not refs.is_image_id_prefix(name):
            ref = refs.parse_normalized(name)
            name = ref.familiar_name + (f":{ref.tag}" if ref.tag and ref.tag != "latest" else "")
    except refs.ReferenceError:
        pass
    return name


def ps_row(rec: ContainerRecord, no_trunc: bool) -> dict[str, Any]:
    cfg = rec.config["Config"]
    labels = cfg.get("Labels") or {}
    created = parse_time(rec.created)
    return {
        "ID": rec.id if no_trunc else rec.short_id,
        "Image": _image(rec),
        "Command": _command(cfg, no_trunc),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
        "RunningFor": human_duration(time.time() - created) + " ago",
        "Ports": "",
        "State": rec.state.get("Status", ""),
        "Status": status_text(rec.state),
        "Size": "0B",
        "Names": rec.name,
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Mounts": "",
        "Networks": rec.config["HostConfig"].get("NetworkMode", ""),
    }
