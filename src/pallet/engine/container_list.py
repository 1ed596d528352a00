"""The container list with docker's filters (GET /containers/json, `ps`): status, name, id, label,
ancestor, exited, health, before, since, volume, network, publish, expose, isolation, is-task.
Front ends format what this returns; the API server and `ps` share it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pallet.engine.core import Engine
from pallet.errors import InvalidArgument
from pallet.state.containers import ContainerRecord

FILTERS = frozenset(
    {
        "ancestor",
        "before",
        "exited",
        "expose",
        "health",
        "id",
        "isolation",
        "is-task",
        "label",
        "name",
        "network",
        "publish",
        "since",
        "status",
        "volume",
    }
)
STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HEALTH = ("starting", "healthy", "unhealthy", "none")


class InvalidFilter(InvalidArgument):
    """A filter the daemon refuses: a 400 for the API, exit 1 for the CLI (docker's daemon errors)."""

    exit_code = 1


@dataclass
class Listed:
    """One container as the list shows it."""

    record: ContainerRecord
    image: str  # the reference it was created from, or its image ID once that name moved on
    sizes: Any = None  # engine.inspect.Sizes when asked for


def list_containers(
    engine: Engine,
    *,
    all_containers: bool = False,
    limit: int = -1,
    filters: dict[str, list[str]] | None = None,
    size: bool = False,
) -> list[Listed]:
    """Newest first. Filters are parsed already (pallet.engine.filters.parse_filters shape)."""
    from pallet.engine import inspect as inspection
    from pallet.engine.lifecycle import refresh
    from pallet.state import containers as records

    filters = filters or {}
    bad = set(filters) - FILTERS
    if bad:
        raise InvalidFilter(f"invalid filter '{sorted(bad)[0]}'")
    match = _matcher(engine, filters)
    if "status" in filters:
        all_containers = True  # docker: asking for a state lists stopped containers too
    recs = [refresh(engine, r) for r in records.all_records(engine.conn)]
    bounds = _bounds(engine, recs, filters)
    out: list[Listed] = []
    for i, rec in enumerate(recs):
        if bounds.since is not None and i >= bounds.since:
            break  # everything from the `since` container on is older than it
        if bounds.before is not None and i <= bounds.before:
            continue
        if not rec.state.get("Running") and not all_containers and limit <= 0:
            continue
        if not match(rec):
            continue
        out.append(Listed(rec, _image_name(engine, rec)))
        if 0 < limit <= len(out):
            break
    if size:
        for item in out:
            item.sizes = inspection.sizes(engine, item.record)
    return out


@dataclass
class _Bounds:
    before: int | None = None  # list index of the `before` container (newest first)
    since: int | None = None


def _bounds(engine: Engine, recs: list[ContainerRecord], filters: dict[str, list[str]]) -> _Bounds:
    from pallet.engine.containers import lookup

    bounds = _Bounds()
    ids = [r.id for r in recs]
    for key in ("before", "since"):
        for value in filters.get(key, []):
            index = ids.index(lookup(engine, value).id)
            setattr(bounds, key, index)
    return bounds


def _image_name(engine: Engine, rec: ContainerRecord) -> str:
    """docker keeps the name the container was created with unless it now names another image."""
    if rec.image_id and rec.image_ref != rec.image_id:
        try:
            if engine.images.lookup_id(rec.image_ref) == rec.image_id:
                return rec.image_ref
        except Exception:  # a reference that no longer parses: fall back to the ID
            pass
        return rec.image_id
    return rec.image_ref


def _matcher(engine: Engine, filters: dict[str, list[str]]) -> Callable[[ContainerRecord], bool]:
    checks: list[Callable[[ContainerRecord], bool]] = []
    for value in filters.get("status", []):
        if value not in STATES:
            raise InvalidFilter(f"invalid filter 'status={value}'")
    if "status" in filters:
        checks.append(lambda r: r.state.get("Status") in filters["status"])
    codes = []
    for value in filters.get("exited", []):
        try:
            codes.append(int(value))
        except ValueError:
            raise InvalidFilter(f'strconv.Atoi: parsing "{value}": invalid syntax') from None
    if codes:
        checks.append(
            lambda r: (
                not r.state.get("Running")
                and not str(r.state.get("StartedAt", "")).startswith("0001")
                and r.state.get("ExitCode") in codes
            )
        )
    for value in filters.get("health", []):
        if value not in HEALTH:
            raise InvalidFilter(f"Unrecognised filter value for health: {value}")
    if "health" in filters:
        checks.append(lambda r: _health(r) in filters["health"])
    if "name" in filters:
        checks.append(
            lambda r: _regex_any(filters["name"], "/" + r.name) or _regex_any(filters["name"], r.name)
        )
    if "id" in filters:
        checks.append(lambda r: _regex_any(filters["id"], r.id))
    if "label" in filters:
        checks.append(
            lambda r: all(
                _label_match(r.config["Config"].get("Labels") or {}, expr) for expr in filters["label"]
            )
        )
    if "ancestor" in filters:
        images = _ancestors(engine, filters["ancestor"])
        checks.append(lambda r: r.image_id in images)
    if "volume" in filters:
        checks.append(lambda r: _mounts_any(r, filters["volume"]))
    if "network" in filters:
        checks.append(lambda r: _networks_any(r, filters["network"]))
    for key in ("publish", "expose"):
        if key in filters:
            wanted = [_port_range(v) for v in filters[key]]
            checks.append(lambda r, k=key, w=wanted: _ports_any(r, k, w))  # type: ignore[misc]
    if "isolation" in filters:
        checks.append(
            lambda r: (r.config["HostConfig"].get("Isolation") or "default") in filters["isolation"]
        )
    if "is-task" in filters:
        checks.append(lambda r: filters["is-task"][-1].lower() not in ("true", "1"))  # no swarm tasks here
    return lambda rec: all(check(rec) for check in checks)


def _regex_any(patterns: list[str], text: str) -> bool:
    """docker's Args.Match: an exact value, or any value as an unanchored regular expression."""
    for pattern in patterns:
        if pattern == text:
            return True
        try:
            if re.search(pattern, text):
                return True
        except re.error:
            continue
    return False


def _label_match(labels: dict[str, str], expr: str) -> bool:
    """`key`, `key=value` or `key!=value` (true when the label is absent or differs)."""
    key, sep, want = expr.partition("=")
    negate = bool(sep) and key.endswith("!")
    if negate:
        key = key[:-1]
    if key not in labels:
        return negate
    return not sep or (labels[key] == want) != negate


def _health(rec: ContainerRecord) -> str:
    health = rec.state.get("Health") or {}
    return str(health.get("Status") or "none")


def _ancestors(engine: Engine, values: list[str]) -> set[str]:
    """The images named (by reference, name:tag or ID prefix) and those built on them (by parent
    link, as docker's image children); names that match no image are skipped, as docker does."""
    from pallet.errors import PalletError

    found: set[str] = set()
    for value in values:
        try:
            found.add(engine.images.resolve(value).id)
        except (PalletError, ValueError):
            continue
    frontier = list(found)
    while frontier:
        for child in engine.images.children(frontier.pop()):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def _mounts_any(rec: ContainerRecord, values: list[str]) -> bool:
    for m in rec.config.get("Mounts") or []:
        if m.get("Destination") in values or (m.get("Name") or m.get("Source")) in values:
            return True
    return False


def _networks_any(rec: ContainerRecord, values: list[str]) -> bool:
    from pallet.engine import inspect_shape

    settings = inspect_shape.network_settings(
        rec.config["HostConfig"].get("NetworkMode") or "none", rec.config.get("NetworkSettings") or {}, {}
    )
    for name, endpoint in settings["Networks"].items():
        if name in values or any(v and endpoint.get("NetworkID", "").startswith(v) for v in values):
            return True
    return False


def _port_range(value: str) -> tuple[int, int, str]:
    port, _, proto = value.partition("/")
    lo, _, hi = port.partition("-")
    try:
        start = int(lo)
        end = int(hi) if hi else start
    except ValueError:
        raise InvalidFilter(f"invalid port range: {value}") from None
    return start, end, (proto or "tcp").lower()


def _ports_any(rec: ContainerRecord, key: str, wanted: list[tuple[int, int, str]]) -> bool:
    from pallet.engine.inspect import port_map

    if key == "expose":
        ports = list(rec.config["Config"].get("ExposedPorts") or {})
    else:
        ports = [p for p, bindings in port_map(rec).items() if bindings]
    for spec in ports:
        number, _, proto = spec.partition("/")
        if not number.isdigit():
            continue
        if any(lo <= int(number) <= hi and proto == want for lo, hi, want in wanted):
            return True
    return False
