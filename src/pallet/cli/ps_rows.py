"""The fields of one `ps` row, as docker's ContainerContext names and shows them (also used by the
container section of `system df -v`)."""

from __future__ import annotations

import time
from dataclasses import InitVar, dataclass
from typing import Any

from pallet.cli.units import human_duration, human_size, parse_time
from pallet.oci import reference as refs


@dataclass
class PsRow:
    """Fields in the order `{{json .}}` prints them (docker marshals them as a sorted map)."""

    Command: str
    CreatedAt: str
    ID: str
    Image: str
    Labels: str
    LocalVolumes: str
    Mounts: str
    Names: str
    Networks: str
    Ports: str
    RunningFor: str
    Size: str
    State: str
    Status: str
    labels: InitVar[dict[str, str]]  # for .Label: not a field, so `{{json .}}` leaves it out

    def __post_init__(self, labels: dict[str, str]) -> None:
        self._label_map = labels

    def Label(self, name: str) -> str:  # noqa: N802 - docker's template method name
        return self._label_map.get(name, "")


def status_text(state: dict[str, Any], now: float | None = None) -> str:
    """'Up 3 seconds', 'Exited (0) 2 minutes ago', 'Created', as docker's State.String()."""
    now = time.time() if now is None else now

    def since(stamp: str) -> str:
        return human_duration(now - parse_time(stamp))

    if state.get("Running"):
        if state.get("Paused"):
            return f"Up {since(state['StartedAt'])} (Paused)"
        if state.get("Restarting"):
            return f"Restarting ({state.get('ExitCode', 0)}) {since(state['FinishedAt'])} ago"
        health = (state.get("Health") or {}).get("Status")
        if health:
            shown = "health: starting" if health == "starting" else health
            return f"Up {since(state['StartedAt'])} ({shown})"
        return f"Up {since(state['StartedAt'])}"
    if state.get("Status") == "removing":
        return "Removal In Progress"
    if state.get("Dead") or state.get("Status") == "dead":
        return "Dead"
    if str(state.get("StartedAt", "")).startswith("0001"):
        return "Created"
    finished = str(state.get("FinishedAt", ""))
    if not finished or finished.startswith("0001"):
        return ""
    return f"Exited ({state.get('ExitCode', 0)}) {since(finished)} ago"


def go_quote(s: str) -> str:
    """Go's strconv.Quote: printable characters kept, the rest escaped."""
    escapes = {
        '"': '\\"',
        "\\": "\\\\",
        "\a": "\\a",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
    }
    out = []
    for ch in s:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def ellipsis(s: str, width: int) -> str:
    """docker's formatter.Ellipsis for ASCII and narrow text: cut to width-1 and add '…'."""
    if width <= 0:
        return ""
    return s if len(s) <= width else s[: width - 1] + "…"


def command_text(cfg: dict[str, Any]) -> str:
    """Path and Args as the daemon joins them for the list: arguments with spaces in single quotes."""
    argv = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    if not argv:
        return ""
    return " ".join([argv[0]] + [f"'{a}'" if " " in a else a for a in argv[1:]])


def image_text(image: str, image_id: str | None, trunc: bool) -> str:
    """The CLI's Image column: a short ID for an ID, a familiar reference (digest dropped) otherwise."""
    if not image:
        return "<no image>"
    if not trunc:
        return image
    if image_id and _short(image) == _short(image_id) and refs.is_image_id_prefix(image):
        return _short(image)
    try:
        ref = refs.parse(image)  # no default tag: `busybox` stays `busybox`, as docker shows it
    except refs.ReferenceError:
        return image
    return ref.familiar_name + (f":{ref.tag}" if ref.tag else "")


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def ports_text(port_map: dict[str, Any]) -> str:
    """docker's DisplayablePorts: consecutive ports grouped, host mappings after."""
    ports: list[tuple[int, str, int, str]] = []  # (private, ip, public, proto)
    for spec, bindings in port_map.items():
        number, _, proto = spec.partition("/")
        if not number.isdigit():
            continue
        if not bindings:
            ports.append((int(number), "", 0, proto or "tcp"))
        for b in bindings or []:
            public = b.get("HostPort") or "0"
            ports.append(
                (int(number), b.get("HostIp") or "", int(public) if public.isdigit() else 0, proto or "tcp")
            )
    ports.sort()
    groups: dict[str, list[int]] = {}
    result: list[str] = []
    mappings: list[str] = []
    for private, ip, public, proto in ports:
        key = proto
        if ip:
            if public != private:
                mappings.append(f"{_host_port(ip, str(public))}->{private}/{proto}")
                continue
            key = f"{ip}/{proto}"
        group = groups.get(key)
        if group is None:
            groups[key] = [private, private]
        elif private == group[1] + 1:
            group[1] = private
        else:
            result.append(_form_group(key, *group))
            groups[key] = [private, private]
    result += [_form_group(key, *g) for key, g in groups.items()]
    return ", ".join(result + mappings)


def _host_port(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _form_group(key: str, first: int, last: int) -> str:
    ip, _, proto = key.rpartition("/")
    group = str(first) if first == last else f"{first}-{last}"
    if ip:
        group = f"{_host_port(ip, group)}->{group}"
    return f"{group}/{proto}"


def ps_row(listed: Any, *, trunc: bool, port_map: dict[str, Any], networks: list[str]) -> PsRow:
    """`listed` is an engine.container_list.Listed."""
    rec = listed.record
    cfg = rec.config["Config"]
    labels = cfg.get("Labels") or {}
    mounts = rec.config.get("Mounts") or []
    created = parse_time(rec.created)
    command = command_text(cfg)
    size = "0B"
    if listed.sizes is not None:
        size = human_size(listed.sizes.rw)
        if listed.sizes.root_fs > 0:
            size += f" (virtual {human_size(listed.sizes.root_fs)})"
    mount_names = [str(m.get("Name") or m.get("Source") or "") for m in mounts]
    return PsRow(
        Command=go_quote(ellipsis(command, 20) if trunc else command),
        CreatedAt=time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
        ID=rec.short_id if trunc else rec.id,
        Image=image_text(listed.image, rec.image_id, trunc),
        Labels=",".join(sorted(f"{k}={v}" for k, v in labels.items())),
        LocalVolumes=str(sum(1 for m in mounts if m.get("Driver") == "local")),
        Mounts=",".join(ellipsis(n, 15) if trunc else n for n in mount_names),
        Names=rec.name,
        Networks=",".join(sorted(networks)),
        Ports=ports_text(port_map),
        RunningFor=human_duration(time.time() - created) + " ago",
        Size=size,
        State=str(rec.state.get("Status", "")),
        Status=status_text(rec.state),
        labels=labels,
    )
