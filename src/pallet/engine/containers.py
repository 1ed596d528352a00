"""Container verbs that shape records: create, list, inspect, remove. Starting and waiting
live in lifecycle.py."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from typing import Any

from pallet.engine.core import Engine
from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.state import containers as records
from pallet.state.containers import ContainerRecord, initial_state

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


def create(engine: Engine, body: dict[str, Any], name: str | None = None) -> str:
    """Docker's POST /containers/create: body is ContainerConfig with HostConfig inside."""
    host_config: dict[str, Any] = dict(body.get("HostConfig") or {})
    runtime = host_config.get("Runtime") or os.environ.get("PALLET_DEFAULT_RUNTIME") or DEFAULT_RUNTIME
    if runtime not in RUNTIMES:
        raise InvalidArgument(f"unknown or invalid runtime name: {runtime}")
    if runtime != "pallet" and shutil.which(runtime) is None:
        raise InvalidArgument(f"runtime {runtime!r} is not installed (no {runtime} in PATH)")
    host_config["Runtime"] = runtime
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
    config = _merge_config(body, engine.images.config(image.id).get("config") or {})
    if not config.get("Cmd") and not config.get("Entrypoint"):
        raise InvalidArgument("no command specified")
    cid = secrets.token_hex(32)
    config["Hostname"] = config.get("Hostname") or cid[:12]
    config["Image"] = image_name
    rec = ContainerRecord(
        cid,
        "",
        image.id,
        image_name,
        now_rfc3339(),
        {"Config": config, "HostConfig": host_config},
        initial_state(),
    )
    cdir = engine.paths.container_dir(cid)
    cdir.mkdir(parents=True)
    try:
        _insert_named(engine, rec, name)
    except BaseException:
        shutil.rmtree(cdir, ignore_errors=True)
        raise
    return cid


def _insert_named(engine: Engine, rec: ContainerRecord, name: str | None) -> None:
    import sqlite3

    from pallet.engine.names import random_name

    for _ in range(20):
        rec.name = (
            name.lstrip("/")
            if name
            else random_name({r[0] for r in engine.conn.execute("SELECT name FROM containers")})
        )
        try:
            records.insert(engine.conn, rec)
            return
        except sqlite3.IntegrityError:
            if name:
                other = records.find(engine.conn, rec.name)
                owner = other[0].id if other else "?"
                raise Conflict(
                    f'Conflict. The container name "/{rec.name}" is already in use by container '
                    f'"{owner}". You have to remove (or rename) that container to be able to '
                    "reuse that name."
                ) from None
    raise PalletError("could not pick a free container name")


def _merge_config(body: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """The container's Config: the request's values over the image's, as dockerd merges them."""
    env = list(image.get("Env") or [])
    for item in body.get("Env") or []:
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key]
        env.append(item)
    entrypoint = body.get("Entrypoint")
    cmd = body.get("Cmd")
    if entrypoint is not None:
        # A new entrypoint drops the image's Cmd, unless a command is given too.
        entrypoint = entrypoint or None
        cmd = cmd or None
    else:
        entrypoint = image.get("Entrypoint")
        cmd = cmd or image.get("Cmd")
    labels = dict(image.get("Labels") or {})
    labels.update(body.get("Labels") or {})
    return {
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
        "Cmd": cmd,
        "Image": body.get("Image"),
        "Volumes": body.get("Volumes") or image.get("Volumes"),
        "WorkingDir": body.get("WorkingDir") or image.get("WorkingDir") or "",
        "Entrypoint": entrypoint,
        "OnBuild": image.get("OnBuild"),
        "Labels": labels,
        "StopSignal": body.get("StopSignal") or image.get("StopSignal"),
    }


def list_containers(engine: Engine, *, all_containers: bool) -> list[ContainerRecord]:
    from pallet.engine.lifecycle import refresh

    out = []
    for rec in records.all_records(engine.conn):
        rec = refresh(engine, rec)
        if all_containers or rec.state.get("Running"):
            out.append(rec)
    return out
