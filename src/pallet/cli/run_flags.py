"""The flags of `run` and `create`, and how they become an Engine API ContainerCreate body
(Config with HostConfig inside), as docker's CLI builds it. Value parsing is in run_opts.py."""

from __future__ import annotations

from pallet.cli import run_net_opts
from pallet.cli import run_opts as o
from pallet.cli.args import REMAINDER, Namespace, Parser
from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

_LISTS = (
    "--env-file", "--group-add", "--label-file", "--tmpfs", "--ulimit", "--add-host", "--log-opt",
    "--cap-add", "--cap-drop", "--security-opt", "--device", "--device-cgroup-rule", "--sysctl",
    "--annotation",
)  # fmt: skip
_STRINGS = (
    "--name", "--workdir", "--entrypoint", "--domainname", "--user", "--shm-size", "--stop-signal",
    "--stop-timeout", "--restart", "--log-driver", "--health-cmd", "--health-interval", "--health-timeout",
    "--health-retries", "--health-start-period", "--health-start-interval", "--memory", "--memory-swap",
    "--memory-reservation", "--memory-swappiness", "--cpus", "--cpu-shares", "--cpu-quota", "--cpu-period",
    "--cpuset-cpus", "--cpuset-mems", "--pids-limit", "--oom-score-adj", "--cgroupns", "--ipc", "--pid",
    "--uts", "--userns", "--runtime",
)  # fmt: skip
_SHORT = {"--workdir": "-w", "--user": "-u", "--memory": "-m", "--cpu-shares": "-c"}
_BOOLS = ("--interactive", "--tty", "--rm", "--read-only", "--init", "--privileged", "--oom-kill-disable")
_BOOL_SHORT = {"--interactive": "-i", "--tty": "-t"}


def create_parser(prog: str, usage: str) -> Parser:
    p = Parser(prog, usage)
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("-h", "--hostname")
    for flag in _LISTS:
        p.add_argument(flag, action="append", default=[])
    for flag in _STRINGS:
        p.add_argument(*([_SHORT[flag]] if flag in _SHORT else []), flag)
    for flag in _BOOLS:
        p.add_argument(*([_BOOL_SHORT[flag]] if flag in _BOOL_SHORT else []), flag, action="store_true")
    run_net_opts.add_flags(p)
    p.add_argument("--no-healthcheck", action="store_true")
    p.add_argument("--pull", choices=("always", "missing", "never"), default="missing")
    if prog.split()[-1] == "run":
        # docker's `run` has it, `create` doesn't; the attach client reads it.
        p.add_argument("--detach-keys")
    p.add_argument("image", nargs="?")
    p.add_argument("command", nargs=REMAINDER)
    return p


def _healthcheck(ns: Namespace) -> dict[str, Any] | None:
    """Config.Healthcheck as docker's CLI fills it: durations in nanoseconds, only when asked."""
    interval = o.duration_flag("--health-interval", ns.health_interval)
    timeout = o.duration_flag("--health-timeout", ns.health_timeout)
    start_period = o.duration_flag("--health-start-period", ns.health_start_period)
    start_interval = o.duration_flag("--health-start-interval", ns.health_start_interval)
    retries = o.int_flag("--health-retries", ns.health_retries)
    have = bool(ns.health_cmd) or any((interval, timeout, start_period, start_interval, retries))
    if ns.no_healthcheck:
        if have:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not have:
        return None
    for name, value in (
        ("interval", interval),
        ("timeout", timeout),
        ("retries", retries),
        ("start-period", start_period),
        ("start-interval", start_interval),
    ):
        if value < 0:
            raise InvalidArgument(f"--health-{name} cannot be negative")
    return {
        "Test": ["CMD-SHELL", ns.health_cmd] if ns.health_cmd else None,
        "Interval": interval,
        "Timeout": timeout,
        "StartPeriod": start_period,
        "StartInterval": start_interval,
        "Retries": retries,
    }


def _resources(ns: Namespace) -> dict[str, Any]:
    swappiness = o.int_flag("--memory-swappiness", ns.memory_swappiness, -1)
    if swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidArgument(f"invalid value: {swappiness}. Valid memory swappiness range is 0-100")
    return {
        "Memory": o.mem_bytes("-m, --memory", ns.memory),
        "MemorySwap": o.mem_swap_bytes("--memory-swap", ns.memory_swap),
        "MemoryReservation": o.mem_bytes("--memory-reservation", ns.memory_reservation),
        "MemorySwappiness": swappiness,
        "NanoCpus": o.nano_cpus("--cpus", ns.cpus),
        "CpuShares": o.int_flag("-c, --cpu-shares", ns.cpu_shares),
        "CpuQuota": o.int_flag("--cpu-quota", ns.cpu_quota),
        "CpuPeriod": o.int_flag("--cpu-period", ns.cpu_period),
        "CpusetCpus": ns.cpuset_cpus or "",
        "CpusetMems": ns.cpuset_mems or "",
        "PidsLimit": o.int_flag("--pids-limit", ns.pids_limit),
        "OomKillDisable": ns.oom_kill_disable,
        "Ulimits": o.ulimits(ns.ulimit),
        "Devices": [o.parse_device(d) for d in ns.device],
        "DeviceCgroupRules": ns.device_cgroup_rule or None,
    }


def _host_config(ns: Namespace) -> dict[str, Any]:
    security_opts, unconfined_paths = o.security_opts(ns.security_opt)
    log_driver = ns.log_driver or ""
    hc: dict[str, Any] = {
        "AutoRemove": ns.rm,
        "ReadonlyRootfs": ns.read_only,
        "GroupAdd": ns.group_add or None,
        "Runtime": ns.runtime or "",
        "LogConfig": {"Type": log_driver, "Config": o.log_opts(log_driver, ns.log_opt)},
        "RestartPolicy": o.restart_policy(ns.restart),
        "Privileged": ns.privileged,
        "CapAdd": ns.cap_add or None,
        "CapDrop": ns.cap_drop or None,
        "SecurityOpt": security_opts or None,
        "ExtraHosts": [o.extra_host(h) for h in ns.add_host] or None,
        "Tmpfs": o.tmpfs(ns.tmpfs) or None,
        "Sysctls": o.sysctls(ns.sysctl) or None,
        "ShmSize": o.mem_bytes("--shm-size", ns.shm_size),
        "IpcMode": ns.ipc or "",
        "PidMode": ns.pid or "",
        "UTSMode": ns.uts or "",
        "UsernsMode": ns.userns or "",
        "CgroupnsMode": ns.cgroupns or "",
        "OomScoreAdj": o.int_flag("--oom-score-adj", ns.oom_score_adj),
        "Annotations": o.kv_map(ns.annotation) or None,
        **_resources(ns),
    }
    if unconfined_paths is not None:
        hc["MaskedPaths"] = hc["ReadonlyPaths"] = unconfined_paths
    if ns.init:
        hc["Init"] = True
    if ns.rm and hc["RestartPolicy"]["Name"] not in ("", "no"):
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
    return hc


def create_body(ns: Namespace) -> dict[str, Any]:
    """Flags -> the Engine API's ContainerCreate body, as docker's CLI builds it."""
    env = [e for f in ns.env_file for e in o.kv_file(f, lookup_env=True)] + [o.env_flag(e) for e in ns.env]
    label_lines = [e for f in ns.label_file for e in o.kv_file(f, lookup_env=False)]
    labels = o.kv_map(label_lines + [o.label_flag(v) for v in ns.label])
    body: dict[str, Any] = {
        "Image": ns.image,
        "Env": env,
        "Cmd": ns.command or None,
        "Hostname": ns.hostname or "",
        "Domainname": ns.domainname or "",
        "User": ns.user or "",
        "WorkingDir": ns.workdir or "",
        "Labels": labels,
        "Tty": ns.tty,
        "OpenStdin": ns.interactive,
        "StdinOnce": ns.interactive,
        "AttachStdin": ns.interactive,
        "AttachStdout": True,
        "AttachStderr": True,
        "StopSignal": ns.stop_signal or "",
        "HostConfig": _host_config(ns),
    }
    if ns.entrypoint is not None:
        # docker passes --entrypoint as one word; `--entrypoint ""` resets the image's.
        body["Entrypoint"] = [ns.entrypoint]
    if ns.stop_timeout is not None:
        body["StopTimeout"] = o.int_flag("--stop-timeout", ns.stop_timeout)
    health = _healthcheck(ns)
    if health is not None:
        body["Healthcheck"] = health
    run_net_opts.apply(ns, body)
    return body
