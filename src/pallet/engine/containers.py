"""Container verbs that shape records: create, list, inspect, remove. Starting and waiting
live in lifecycle.py."""

from __future__ import annotations

import os
import re
import time

from pallet.engine.core import Engine
from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.state import containers as records
from pallet.state.containers import ContainerRecord, initial_state

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

_REALTIME_SIGNAL = re.compile(r"RTMIN(\+([1-9]|1[0-5]))?|RTMAX(-([1-9]|1[0-4]))?")
_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
DEFAULT_RUNTIME = "pallet"
RUNTIMES = ("pallet", "crun", "runc")


def now_rfc3339() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def lookup(engine: Engine, ref: str) -> ContainerRecord:
    found = records.find(engine.conn, ref)
    if not found:
        raise NotFound(f"No such container: {ref}")
    if len(found) > 1:
        raise PalletError(f"multiple IDs found with provided prefix: {ref}")
    return found[0]


def create(
    engine: Engine, body: dict[str, Any], name: str | None = None, warnings: list[str] | None = None
) -> str:
    """Docker's POST /containers/create: body is ContainerConfig with HostConfig inside. dockerd's
    warnings about the request (the response's Warnings) are appended to `warnings`."""
    from pallet.engine import hostconfig

    given: dict[str, Any] = dict(body.get("HostConfig") or {})
    runtime = given.get("Runtime") or os.environ.get("PALLET_DEFAULT_RUNTIME") or DEFAULT_RUNTIME
    if runtime not in RUNTIMES:
        raise InvalidArgument(f"unknown or invalid runtime name: {runtime}")
    if runtime != "pallet" and _which(runtime) is None:
        raise InvalidArgument(f"runtime {runtime!r} is not installed (no {runtime} in PATH)")
    given["Runtime"] = runtime
    if name is not None and not _NAME.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    image_name = body.get("Image") or ""
    if not image_name:
        raise InvalidArgument("no image specified")
    from pallet.oci import reference as refs

    try:
        image = engine.images.resolve(image_name)
    except NotFound:
        shown = image_name
        try:
            if not refs.is_image_id_prefix(image_name):
                shown = refs.parse_normalized(image_name).familiar()
        except refs.ReferenceError:
            pass
        raise NotFound(f"No such image: {shown}") from None
    config = merge_config(body, engine.images.config(image.id).get("config") or {})
    if not config.get("Cmd") and not config.get("Entrypoint"):
        raise InvalidArgument("No command specified")
    host_config, found = hostconfig.complete(given, body, lambda ref: lookup(engine, ref))
    from pallet.engine import container_network

    # Everything is checked before anything is made: a refused request leaves no volume behind.
    extra = container_network.plan(engine, host_config, body.get("NetworkingConfig"))
    plan = None
    if config.get("Volumes") or any(host_config.get(k) for k in ("Binds", "Mounts", "VolumesFrom")):
        from pallet.engine import container_mounts

        entries, plan = container_mounts.plan(engine, config, host_config, lambda ref: lookup(engine, ref))
        extra["MountPlan"] = entries
        extra["Mounts"] = container_mounts.mount_points(engine.paths, entries)
    if warnings is not None:
        warnings += found
    cid = os.urandom(32).hex()  # what secrets.token_hex does, without importing hashlib
    if not config.get("Hostname"):
        # Sharing the host's network or UTS namespace means sharing its hostname too.
        shares_host = host_config.get("NetworkMode") == "host" or host_config.get("UTSMode") == "host"
        config["Hostname"] = os.uname().nodename if shares_host else cid[:12]
    config["Image"] = image_name
    rec = ContainerRecord(
        cid,
        "",
        image.id,
        image_name,
        now_rfc3339(),
        {"Config": config, "HostConfig": host_config, **extra},
        initial_state(),
    )
    cdir = engine.paths.container_dir(cid)
    cdir.mkdir(parents=True)
    made: list[str] = []
    try:
        if plan is not None:
            from pallet.engine import container_mounts

            made = container_mounts.create_volumes(engine, plan)
        _insert_named(engine, rec, name)
    except BaseException:
        import shutil

        shutil.rmtree(cdir, ignore_errors=True)
        if made:
            from pallet.engine import container_mounts

            container_mounts.remove_volumes(engine.paths, engine.conn, made)
        raise
    return cid


def _insert_named(engine: Engine, rec: ContainerRecord, name: str | None) -> None:
    from pallet.engine.names import random_name
    from pallet.state.db import IntegrityError

    for _ in range(20):
        rec.name = (
            name.lstrip("/")
            if name
            else random_name({r[0] for r in engine.conn.execute("SELECT name FROM containers")})
        )
        try:
            records.insert(engine.conn, rec)
            return
        except IntegrityError:
            if name:
                other = records.find(engine.conn, rec.name)
                owner = other[0].id if other else "?"
                raise Conflict(
                    f'Conflict. The container name "/{rec.name}" is already in use by container '
                    f'"{owner}". You have to remove (or rename) that container to be able to '
                    "reuse that name."
                ) from None
    raise PalletError("could not pick a free container name")


def merge_config(body: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """The container's Config: the request's values over the image's, as dockerd's merge() and
    mergeAndVerifyConfig do."""
    env = list(body.get("Env") or [])
    keys = {e.split("=", 1)[0] for e in env}
    # The request's variables first, then the image's it doesn't set (docker's order).
    env += [e for e in image.get("Env") or [] if e.split("=", 1)[0] not in keys]
    entrypoint = body.get("Entrypoint")
    cmd = body.get("Cmd")
    if not entrypoint:
        # Only without an entrypoint of its own does the request inherit the image's command.
        cmd = cmd or image.get("Cmd")
        if entrypoint is None:
            entrypoint = image.get("Entrypoint")
    if entrypoint == [""]:
        entrypoint = None  # `--entrypoint ""`: reset to none
    labels = dict(image.get("Labels") or {})
    labels.update(body.get("Labels") or {})
    config: dict[str, Any] = {
        "Hostname": body.get("Hostname") or "",
        "Domainname": body.get("Domainname") or "",
        "User": body.get("User") or image.get("User") or "",
        "AttachStdin": bool(body.get("AttachStdin")),
        "AttachStdout": bool(body.get("AttachStdout")),
        "AttachStderr": bool(body.get("AttachStderr")),
        "ExposedPorts": {**(image.get("ExposedPorts") or {}), **(body.get("ExposedPorts") or {})} or None,
        "Tty": bool(body.get("Tty")),
        "OpenStdin": bool(body.get("OpenStdin")),
        "StdinOnce": bool(body.get("StdinOnce")),
        "Env": env,
        "Cmd": cmd or None,
        "Image": body.get("Image"),
        "Volumes": {**(image.get("Volumes") or {}), **(body.get("Volumes") or {})} or None,
        "WorkingDir": body.get("WorkingDir") or image.get("WorkingDir") or "",
        "Entrypoint": entrypoint or None,
        "OnBuild": image.get("OnBuild"),
        "Labels": labels,
    }
    health = _merge_healthcheck(body.get("Healthcheck"), image.get("Healthcheck"))
    if health is not None:
        config["Healthcheck"] = health
    stop_signal = body.get("StopSignal") or image.get("StopSignal")
    if stop_signal:
        config["StopSignal"] = _checked_signal(str(stop_signal))
    if body.get("StopTimeout") is not None:
        config["StopTimeout"] = int(body["StopTimeout"])
    return config


def _merge_healthcheck(given: dict[str, Any] | None, image: dict[str, Any] | None) -> dict[str, Any] | None:
    """dockerd's merge: no request healthcheck takes the image's; an empty Test or a zero duration
    inherits the image's value. Durations must be 0 or at least 1 ms. Empty fields are left out, as
    docker's JSON omits them."""
    if given is None:
        return dict(image) if image else None
    image = image or {}
    merged: dict[str, Any] = {}
    for key in ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
        value = given.get(key) or image.get(key)
        if value:
            merged[key] = value
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        if 0 < int(merged.get(key, 0)) < 1_000_000:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    if int(merged.get("Retries", 0)) < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")
    return merged


def _checked_signal(name: str) -> str:
    """docker's signal.ParseSignal: a number or a name, with or without SIG."""
    import signal

    key = name.upper().removeprefix("SIG")
    if name.isdigit():
        if 0 < int(name) < signal.NSIG:
            return name
    elif isinstance(getattr(signal, "SIG" + key, None), signal.Signals) or _REALTIME_SIGNAL.fullmatch(key):
        return name
    raise InvalidArgument(f"Invalid signal: {name}")


def list_containers(engine: Engine, *, all_containers: bool) -> list[ContainerRecord]:
    from pallet.engine.lifecycle import refresh

    out = []
    for rec in records.all_records(engine.conn):
        rec = refresh(engine, rec)
        if all_containers or rec.state.get("Running"):
            out.append(rec)
    return out


def _which(program: str) -> str | None:
    """shutil.which, without importing shutil (it imports bz2 and lzma: ~4 ms on `run`)."""
    for d in (os.environ.get("PATH") or os.defpath).split(os.pathsep):
        path = os.path.join(d or ".", program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None
