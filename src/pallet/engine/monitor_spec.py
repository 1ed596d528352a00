"""What a container's monitor needs to know, prepared by the engine before each `start`: the
bundle written over a mounted rootfs, and a JSON-able spec (the monitor is a separate, lean
interpreter: see runtime/monitor.py)."""

from __future__ import annotations

import sys

from pallet.engine.core import Engine
from pallet.errors import InvalidArgument
from pallet.state.containers import ContainerRecord

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any


def prepare(engine: Engine, rec: ContainerRecord) -> dict[str, Any]:
    """Mount the rootfs, write the OCI bundle; return the monitor's spec. Nothing stays mounted
    if this fails."""
    from pallet.engine.bundle import write_bundle
    from pallet.engine.container_rootfs import mount_rootfs, unmount_container
    from pallet.engine.lifecycle import cgroups_path
    from pallet.runtime import health, jsonlog

    cfg = rec.config["Config"]
    hc = rec.config["HostConfig"]
    try:
        log = jsonlog.options(
            hc.get("LogConfig"),
            info={
                "ID": rec.id,
                "Name": rec.name,
                "ImageID": rec.image_id or "",
                "ImageName": rec.image_ref,
                "Labels": cfg.get("Labels") or {},
                "Env": cfg.get("Env") or [],
            },
        )
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
    cdir = engine.paths.container_dir(rec.id)
    target = mount_rootfs(engine, rec)
    try:
        write_bundle(engine, rec, target)
    except BaseException:
        unmount_container(engine, rec.id)
        raise
    run_dir = engine.paths.container_run(rec.id)
    run_dir.mkdir(parents=True, exist_ok=True)
    runtime = hc.get("Runtime") or "pallet"
    size = hc.get("ConsoleSize") or []
    return {
        "container_id": rec.id,
        "bundle": str(cdir),
        "runtime": "builtin" if runtime == "pallet" else runtime,
        "runtime_root": str(engine.paths.runroot / "runtimes" / runtime),
        "db_path": str(engine.paths.db),
        # root and runroot: the exit path gives back the network and volumes (container_release.py)
        "state_root": str(engine.paths.root),
        "state_runroot": str(engine.paths.runroot),
        "log_path": str(cdir / f"{rec.id}-json.log"),
        "log": log.to_json() if log is not None else None,
        "rootfs": str(target),
        "shm_dir": str(cdir / "shm") if hc.get("IpcMode") == "shareable" else None,
        "cgroups_path": cgroups_path(engine, rec),
        "auto_remove": bool(hc.get("AutoRemove")),
        "open_stdin": bool(cfg.get("OpenStdin")),
        "stdin_once": bool(cfg.get("StdinOnce")),
        "tty": bool(cfg.get("Tty")),
        "console_size": [int(size[0]), int(size[1])] if len(size) == 2 and all(size) else None,
        "container_dir": str(cdir),
        "run_dir": str(run_dir),
        "healthcheck": cfg.get("Healthcheck")
        if health.config(cfg.get("Healthcheck"), cfg.get("Shell"))
        else None,
        "shell": cfg.get("Shell") or None,
        "health_user": cfg.get("User") or "",
        "health_cwd": cfg.get("WorkingDir") or "",
        # Third-party packages for code the monitor may load late (the lean interpreter has no site).
        "sys_path": [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))],
    }
