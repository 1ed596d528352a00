"""Network verbs: create, list, inspect, remove, prune, connect and disconnect (docker network ...).

The bridge driver (network/bridge.py) owns networks and endpoints; this module ties them to
containers: a running container is wired live through its namespace (NetworkSettings.SandboxKey), a
stopped one only has its NetworkingConfig changed, and both keep their record's NetworkSettings in
step. Endpoints of containers that died without cleaning up are swept first, so they never make a
network look in use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pallet.engine import container_network as cn
from pallet.engine.core import Engine
from pallet.engine.network_release import sweep_stale
from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.network.store import PREDEFINED, NetworkRecord
from pallet.state import containers as records
from pallet.state.containers import ContainerRecord


def create(
    engine: Engine,
    name: str,
    *,
    driver: str = "bridge",
    subnet: str | None = None,
    gateway: str | None = None,
    ip_range: str | None = None,
    internal: bool = False,
    attachable: bool = False,
    ipv6: bool = False,
    labels: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
) -> NetworkRecord:
    drv = cn.driver(engine)
    drv.ensure_predefined()
    return drv.create(
        name,
        driver=driver or "bridge",
        subnet=subnet,
        gateway=gateway,
        ip_range=ip_range,
        internal=internal,
        attachable=attachable,
        enable_ipv6=ipv6,
        labels=labels,
        options=options,
    )


def _in_use(engine: Engine) -> set[str]:
    return {r[0] for r in engine.conn.execute("SELECT DISTINCT network_id FROM network_endpoints")}


def list_networks(engine: Engine, filters: dict[str, list[str]]) -> list[NetworkRecord]:
    """`network ls`: docker's filters driver, id, name, label, type (custom|builtin), dangling."""
    from pallet.engine.filters import FilterError, match_bool, match_label

    drv = cn.driver(engine)
    drv.ensure_predefined()
    for kind in filters.get("type", []):
        if kind not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{kind}'")
    dangling: bool | None = None
    if "dangling" in filters:
        try:
            dangling = match_bool(filters["dangling"][-1], "dangling")
        except FilterError as e:
            raise InvalidArgument(str(e)) from None
        sweep_stale(engine, drv)
    used = _in_use(engine) if dangling is not None else set()
    out = []
    for rec in drv.networks():
        builtin = rec.name in PREDEFINED
        if "driver" in filters and rec.driver not in filters["driver"]:
            continue
        if "name" in filters and not any(v in rec.name for v in filters["name"]):
            continue
        if "id" in filters and not any(v in rec.id for v in filters["id"]):
            continue
        if "label" in filters and not all(match_label(rec.labels, e) for e in filters["label"]):
            continue
        if "type" in filters and ("builtin" if builtin else "custom") not in filters["type"]:
            continue
        if dangling is not None and (not builtin and rec.id not in used) != dangling:
            continue
        out.append(rec)
    return sorted(out, key=lambda r: r.name)


def inspect(engine: Engine, ref: str) -> dict[str, Any]:
    drv = cn.driver(engine)
    drv.ensure_predefined()
    sweep_stale(engine, drv)
    return drv.inspect(ref)


def remove(engine: Engine, ref: str) -> None:
    """`network rm`: refused while a running container is attached (stale endpoints are swept)."""
    drv = cn.driver(engine)
    sweep_stale(engine, drv)
    drv.remove(ref)


def prune(engine: Engine, filters: dict[str, list[str]] | None = None) -> list[str]:
    """Every user-defined network no running container is attached to; returns their names."""
    from pallet.engine.filters import match_label

    filters = filters or {}
    if not engine.conn.execute("SELECT 1 FROM networks LIMIT 1").fetchone():
        return []  # never had a network: nothing to load
    drv = cn.driver(engine)
    sweep_stale(engine, drv)
    used = _in_use(engine)
    removed = []
    for rec in drv.networks():
        if rec.name in PREDEFINED or rec.id in used:
            continue
        if "label" in filters and not all(match_label(rec.labels, e) for e in filters["label"]):
            continue
        try:
            drv.remove(rec.id)
        except PalletError:
            continue  # attached meanwhile
        removed.append(rec.name)
    return removed


# ---- containers -----------------------------------------------------------------------------------


def _container(engine: Engine, ref: str) -> ContainerRecord:
    from pallet.engine.containers import lookup
    from pallet.engine.lifecycle import refresh

    return refresh(engine, lookup(engine, ref))


def _check_mode(rec: ContainerRecord) -> None:
    mode = str(rec.config["HostConfig"].get("NetworkMode") or "")
    if mode == "host":
        raise InvalidArgument(
            "container cannot be disconnected from host network or connected to host network"
        )
    if not cn.uses_bridge(mode):
        raise InvalidArgument(
            "container sharing network namespace with another container or host cannot be connected to any "
            "other network"
        )


def connect(
    engine: Engine,
    net_ref: str,
    container_ref: str,
    *,
    ip: str | None = None,
    aliases: list[str] | None = None,
) -> None:
    """`network connect`: a running container gets an interface at once, a stopped one at its next start."""
    from pallet.engine.lifecycle import container_lock

    drv = cn.driver(engine)
    drv.ensure_predefined()
    net = cn.bridge_network(drv, net_ref)
    rec = _container(engine, container_ref)
    with container_lock(engine, rec.id):
        rec = _container(engine, rec.id)
        _check_mode(rec)
        given: dict[str, Any] = {"Aliases": aliases or None}
        if ip:
            given["IPAMConfig"] = {"IPv4Address": ip}
        cfg = cn.endpoint_config(net, given)
        endpoints = dict((rec.config.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
        if net.name in endpoints and (not rec.state.get("Running") or _attached(engine, net, rec)):
            raise Conflict(f"endpoint with name {rec.name} already exists in network {net.name}")
        settings = dict(rec.config.get("NetworkSettings") or {})
        networks = dict(settings.get("Networks") or {})
        if rec.state.get("Running"):
            sandbox = settings.get("SandboxKey") or ""
            if not sandbox or not Path(sandbox).exists():
                raise PalletError(f"container {rec.name} has no network namespace to connect")
            ep = drv.connect(
                net.id,
                rec.id,
                name=rec.name,
                netns_path=Path(sandbox),
                aliases=cfg.get("Aliases") or (),
                ipv4=ip,
                dns=rec.config["HostConfig"].get("Dns") or (),
            )
            networks[net.name] = cn.running_endpoint(rec, net, ep, cfg)
        else:
            networks[net.name] = cn.idle_endpoint(cfg)
        endpoints[net.name] = cfg
        settings["Networks"] = networks
        records.update(
            engine.conn,
            rec.id,
            top={"NetworkingConfig": {"EndpointsConfig": endpoints}, "NetworkSettings": settings},
        )


def _attached(engine: Engine, net: NetworkRecord, rec: ContainerRecord) -> bool:
    row = engine.conn.execute(
        "SELECT 1 FROM network_endpoints WHERE network_id = ? AND container_id = ?", (net.id, rec.id)
    ).fetchone()
    return row is not None


def disconnect(engine: Engine, net_ref: str, container_ref: str, *, force: bool = False) -> None:
    """`network disconnect`; with -f also when the container is gone (its endpoint is removed)."""
    from pallet.engine.lifecycle import container_lock

    drv = cn.driver(engine)
    net = drv.get(net_ref)
    try:
        rec = _container(engine, container_ref)
    except NotFound:
        if not force:
            raise
        for ep in drv.endpoints(net.id):
            if ep.name == container_ref.lstrip("/") or ep.container_id.startswith(container_ref):
                drv.disconnect(net.id, ep.container_id)
        return
    with container_lock(engine, rec.id):
        rec = _container(engine, rec.id)
        if net.name in PREDEFINED and net.name != "bridge":
            _check_mode(rec)
        endpoints = dict((rec.config.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
        live = rec.state.get("Running") and _attached(engine, net, rec)
        if net.name not in endpoints and not live:
            raise InvalidArgument(f"container {rec.id} is not connected to network {net.name}")
        if live:
            drv.disconnect(net.id, rec.id)
        endpoints.pop(net.name, None)
        settings = dict(rec.config.get("NetworkSettings") or {})
        settings["Networks"] = {k: v for k, v in (settings.get("Networks") or {}).items() if k != net.name}
        records.update(
            engine.conn,
            rec.id,
            top={"NetworkingConfig": {"EndpointsConfig": endpoints}, "NetworkSettings": settings},
        )
