"""The image a stage is building: its config, history and layers, updated instruction by instruction.

Everything follows BuildKit's dockerfile2llb (we chose BuildKit's forms over the classic
builder's): the config starts as the base image's (or, for `scratch`, an empty one with
WorkingDir "/" and the default PATH), PATH is added when the base lacks it, and each
instruction appends the history entry BuildKit writes:

- RUN:  `RUN /bin/sh -c echo hi # buildkit` (with `|N K=V …` before the command when ARGs are in
  scope), COPY/ADD: `COPY --chown=1:1 src /dest # buildkit`; these, and WORKDIR (other than "/"),
  make a layer, even an empty one;
- metadata: `ENV a=1`, `LABEL k=v`, `CMD ["/bin/sh" "-c" "x"]`, `ENTRYPOINT [...]`, `USER u`,
  `EXPOSE [80/tcp]`, `VOLUME [/data]`, `STOPSIGNAL SIGTERM`, `SHELL [/bin/bash -c]`,
  `HEALTHCHECK {Test:[CMD-SHELL x] Interval:5s …}`, `ARG a=1`, `MAINTAINER x`: empty_layer;
  ONBUILD records its trigger and no history, as BuildKit does.

Every new entry carries the comment "buildkit.dockerfile.v0". A layer's history time is when
the layer was made (kept in the build cache); metadata entries take the time of the first new
layer, or of the layer before them (BuildKit's exporter rule), and the image's `created` is the
last entry's time. So a fully cached rebuild yields the same config, and the same image ID.
"""

from __future__ import annotations

import copy
import posixpath
from dataclasses import dataclass, field
from typing import Any

from pallet.build.gocompat import go_quote_list

__all__ = [
    "DEFAULT_PATH", "HISTORY_COMMENT", "ImageState", "Layer", "add_env", "go_duration", "run_created_by",
    "with_shell",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HISTORY_COMMENT = "buildkit.dockerfile.v0"
DEFAULT_SHELL = ["/bin/sh", "-c"]


@dataclass(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    size: int


@dataclass
class ImageState:
    """One stage's image in the making. `fs_key` is the cache key of its filesystem."""

    config: dict[str, Any]
    layers: list[Layer]
    fs_key: str
    cmd_set: bool = False  # a CMD in this stage: a later ENTRYPOINT keeps it
    onbuild_triggers: list[str] = field(default_factory=list)  # inherited, run at the stage start

    @classmethod
    def from_image(cls, config: dict[str, Any], layers: list[Layer], fs_key: str) -> ImageState:
        cfg = copy.deepcopy(config)
        cfg.pop("created", None)  # recomputed from the history when the image is written
        runtime = cfg.setdefault("config", {}) or {}
        cfg["config"] = runtime
        triggers = list(runtime.pop("OnBuild", None) or [])
        state = cls(cfg, list(layers), fs_key, onbuild_triggers=triggers)
        state.ensure_path()
        return state

    @classmethod
    def scratch(cls, architecture: str, os_name: str, variant: str, fs_key: str) -> ImageState:
        cfg: dict[str, Any] = {"architecture": architecture, "os": os_name,
                               "config": {"Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"},
                               "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
        if variant:
            cfg["variant"] = variant
        return cls(cfg, [], fs_key)

    def child(self) -> ImageState:
        """A copy for a stage built FROM this one (the base is left untouched)."""
        state = ImageState(copy.deepcopy(self.config), list(self.layers), self.fs_key)
        state.onbuild_triggers = list(state.runtime.pop("OnBuild", None) or [])
        return state

    @property
    def runtime(self) -> dict[str, Any]:
        runtime: dict[str, Any] = self.config["config"]
        return runtime

    @property
    def chain(self) -> list[str]:
        return [layer.chain_id for layer in self.layers]

    def env_list(self) -> list[str]:
        return list(self.runtime.get("Env") or [])

    def env_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env_list():
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def ensure_path(self) -> None:
        if "PATH" not in self.env_map():
            self.runtime["Env"] = [*self.env_list(), f"PATH={DEFAULT_PATH}"]

    @property
    def workdir(self) -> str:
        return str(self.runtime.get("WorkingDir") or "/")

    @property
    def user(self) -> str:
        return str(self.runtime.get("User") or "")

    @property
    def shell(self) -> list[str]:
        return list(self.runtime.get("Shell") or DEFAULT_SHELL)

    # ---- history --------------------------------------------------------------------------

    def add_history(self, created_by: str, *, layer: Layer | None = None, created: str | None = None) -> None:
        entry: dict[str, Any] = {"created_by": created_by, "comment": HISTORY_COMMENT}
        if layer is None:
            entry["empty_layer"] = True
        else:
            entry["created"] = created
            self.layers.append(layer)
            rootfs = self.config.setdefault("rootfs", {"type": "layers"})
            rootfs.setdefault("diff_ids", []).append(layer.diff_id)
        self.config.setdefault("history", []).append(entry)

    # ---- metadata instructions (dispatch*.go) ---------------------------------------------

    def set_env(self, pairs: list[tuple[str, str]]) -> None:
        env = self.env_list()
        for key, value in pairs:
            env = add_env(env, key, value)
        self.runtime["Env"] = env
        self.add_history("ENV" + "".join(f" {k}={v}" for k, v in pairs))

    def set_labels(self, pairs: list[tuple[str, str]]) -> None:
        labels = dict(self.runtime.get("Labels") or {})
        for key, value in pairs:
            labels[key] = value
        self.runtime["Labels"] = labels
        self.add_history("LABEL" + "".join(f" {k}={v}" for k, v in pairs))

    def set_cmd(self, args: list[str]) -> None:
        self.runtime["Cmd"] = args
        self.runtime["ArgsEscaped"] = True
        self.cmd_set = True
        self.add_history(f"CMD {go_quote_list(args)}")

    def set_entrypoint(self, args: list[str]) -> None:
        self.runtime["Entrypoint"] = args
        if not self.cmd_set:
            self.runtime.pop("Cmd", None)
        self.add_history(f"ENTRYPOINT {go_quote_list(args)}")

    def set_user(self, user: str) -> None:
        self.runtime["User"] = user
        self.add_history(f"USER {user}")

    def set_workdir(self, path: str) -> str:
        """Record WORKDIR; returns the absolute directory (relative paths join the current one)."""
        wd = path if path.startswith("/") else posixpath.join("/", self.workdir, path)
        wd = posixpath.normpath(wd)
        if wd.startswith("//"):
            wd = wd[1:]
        self.runtime["WorkingDir"] = wd
        return wd

    def set_exposed(self, ports: list[str]) -> None:
        exposed = dict(self.runtime.get("ExposedPorts") or {})
        for port in ports:
            exposed[port] = {}
        self.runtime["ExposedPorts"] = exposed
        self.add_history(f"EXPOSE [{' '.join(ports)}]")

    def set_volumes(self, paths: list[str]) -> None:
        volumes = dict(self.runtime.get("Volumes") or {})
        for p in paths:
            volumes[p] = {}
        self.runtime["Volumes"] = volumes
        self.add_history(f"VOLUME [{' '.join(paths)}]")

    def set_stopsignal(self, signal: str) -> None:
        self.runtime["StopSignal"] = signal
        self.add_history(f"STOPSIGNAL {signal}")

    def set_shell(self, shell: list[str]) -> None:
        self.runtime["Shell"] = list(shell)
        self.add_history(f"SHELL [{' '.join(shell)}]")

    def set_healthcheck(self, test: list[str], interval: int, timeout: int, start_period: int,
                        start_interval: int, retries: int) -> None:
        health: dict[str, Any] = {"Test": test}
        for key, value in (("Interval", interval), ("Timeout", timeout), ("StartPeriod", start_period),
                           ("StartInterval", start_interval), ("Retries", retries)):
            if value:
                health[key] = value
        self.runtime["Healthcheck"] = health
        shown = (f"{{Test:[{' '.join(test)}] Interval:{go_duration(interval)} Timeout:{go_duration(timeout)}"
                 f" StartPeriod:{go_duration(start_period)} StartInterval:{go_duration(start_interval)}"
                 f" Retries:{retries}}}")
        self.add_history(f"HEALTHCHECK {shown}")

    def add_onbuild(self, expression: str) -> None:
        self.runtime["OnBuild"] = [*(self.runtime.get("OnBuild") or []), expression]

    def set_maintainer(self, maintainer: str) -> None:
        self.config["author"] = maintainer
        self.add_history(f"MAINTAINER {maintainer}")

    def add_arg_history(self, definitions: list[tuple[str, str | None]]) -> None:
        self.add_history("ARG " + " ".join(k if v is None else f"{k}={v}" for k, v in definitions))

    # ---- the result -----------------------------------------------------------------------

    def finished(self, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """The config to write: --label values added, empty fields dropped, history times filled."""
        cfg = copy.deepcopy(self.config)
        runtime = cfg.get("config") or {}
        if labels:
            runtime["Labels"] = {**(runtime.get("Labels") or {}), **labels}
        cfg["config"] = {k: v for k, v in runtime.items() if v not in (None, "", [], {}, False)}
        history = cfg.get("history") or []
        _fill_history_times(history)
        created = next((h["created"] for h in reversed(history) if h.get("created")), None)
        if created:
            cfg["created"] = created
        cfg.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        return cfg


def _fill_history_times(history: list[dict[str, Any]]) -> None:
    """normalizeLayersAndHistory: entries without a time take the first new layer's time, or the
    time of the entry before them."""
    created: str | None = None
    missing = False
    for entry in history:
        if entry.get("created"):
            created = entry["created"]
            if missing:
                break
        else:
            missing = True
    missing = False
    for entry in history:
        if entry.get("created"):
            if missing:
                created = entry["created"]
        else:
            missing = True
            if created:
                entry["created"] = created


def add_env(env: list[str], key: str, value: str) -> list[str]:
    """Replace KEY=… in place, or append it (BuildKit's addEnv)."""
    out = list(env)
    for i, item in enumerate(out):
        if item.partition("=")[0] == key:
            out[i] = f"{key}={value}"
            return out
    out.append(f"{key}={value}")
    return out


def with_shell(state: ImageState, args: list[str]) -> list[str]:
    """Shell form: the stage's SHELL (default /bin/sh -c) and the command as one string."""
    return [*state.shell, " ".join(args)]


def run_created_by(args: list[str], build_args: list[tuple[str, str]]) -> str:
    """runCommandString: `|2 A=1 B=2 /bin/sh -c cmd` when ARGs are in scope, then ` # buildkit`."""
    pairs: dict[str, str] = {}
    for key, value in build_args:
        pairs[key] = value
    prefix = [f"|{len(pairs)}", *(f"{k}={v}" for k, v in pairs.items())] if pairs else []
    return "RUN " + " ".join([*prefix, *args]) + " # buildkit"


def go_duration(ns: int) -> str:
    """time.Duration.String(): 0s, 1.5s, 300ms, 1m30s, 2h0m0s."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return sign + _fraction(ns, size) + unit
    out = ""
    if ns >= 3600 * 10**9:
        out += f"{ns // (3600 * 10**9)}h"
        ns %= 3600 * 10**9
        out += f"{ns // (60 * 10**9)}m"
        ns %= 60 * 10**9
    elif ns >= 60 * 10**9:
        out += f"{ns // (60 * 10**9)}m"
        ns %= 60 * 10**9
    return sign + out + _fraction(ns, 10**9) + "s"


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{rest:0{digits}d}".rstrip("0")
