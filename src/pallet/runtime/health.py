"""Healthchecks (Config.Healthcheck) as docker's daemon runs them, for the container monitor.

The monitor keeps the schedule and a copy of State.Health; each probe runs in a forked helper (so
that neither the exec machinery nor the database ever loads into the long-lived monitor) which
skips a paused container, execs the test command inside the container with
`pallet.runtime.exec.exec_in_container`, collects up to 4096 bytes of output, enforces the
timeout, folds the result into State.Health, records it, and answers the monitor over a pipe
with the new State.Health.

docker's rules: the first probe comes one interval after the start (StartInterval, default 5 s,
while still starting within StartPeriod); exit 0 is healthy and resets FailingStreak; any other
result adds to the streak (not while "starting" within StartPeriod) and `Retries` failures in a
row make it unhealthy; the last 5 results are kept in Health.Log; a timeout is ExitCode -1 with
"Health check exceeded timeout (30s)". When the container stops or is paused the status becomes
"unhealthy"; a (re)start makes it "starting" again.
"""

from __future__ import annotations

import json
import os
import signal
import time

TYPE_CHECKING = False  # typing costs ~2 ms at import (the monitor loads this module)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NoReturn

MAX_OUTPUT = 4096
MAX_LOG_ENTRIES = 5
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3


class HealthConfig:
    __slots__ = ("args", "interval", "timeout", "start_period", "start_interval", "retries")

    def __init__(self, args: list[str], hc: Mapping[str, Any]) -> None:
        self.args = args
        self.interval = _seconds(hc.get("Interval"), DEFAULT_INTERVAL)
        self.timeout = _seconds(hc.get("Timeout"), DEFAULT_TIMEOUT)
        self.start_period = _seconds(hc.get("StartPeriod"), DEFAULT_START_PERIOD)
        self.start_interval = _seconds(hc.get("StartInterval"), DEFAULT_START_INTERVAL)
        self.retries = int(hc.get("Retries") or 0) or DEFAULT_RETRIES


def _seconds(ns: Any, default: float) -> float:
    return int(ns) / 1e9 if ns else default


def config(healthcheck: Mapping[str, Any] | None, shell: list[str] | None = None) -> HealthConfig | None:
    """Config.Healthcheck -> the probe's settings; None when there is nothing to run."""
    test = list((healthcheck or {}).get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        args = test[1:]
    elif test[0] == "CMD-SHELL":
        args = [*(shell or ["/bin/sh", "-c"]), *test[1:]]
    else:
        return None  # docker ignores an unknown test type (with a warning in its log)
    if not args:
        return None
    assert healthcheck is not None
    return HealthConfig(args, healthcheck)


def starting(previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """State.Health at a (re)start: "starting", streak reset, the log kept."""
    return {"Status": "starting", "FailingStreak": 0, "Log": list((previous or {}).get("Log") or [])}


def stopped(previous: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if previous is None:
        return None
    return {**previous, "Status": "unhealthy"}


def format_duration(seconds: float) -> str:
    """Go's time.Duration String for the values met here (30s, 1.5s, 500ms, 1m0s)."""
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return (f"{h}h" if h else "") + f"{m}m{s:g}s"


def apply_result(
    health: Mapping[str, Any],
    result: dict[str, Any],
    cfg: HealthConfig,
    started_at: float,
    probe_start: float,
) -> dict[str, Any]:
    """docker's handleProbeResult: the new State.Health after one probe (started at the wall-clock
    time `probe_start`, in a run started at `started_at`)."""
    log = [*list(health.get("Log") or []), result][-MAX_LOG_ENTRIES:]
    status = str(health.get("Status") or "starting")
    streak = int(health.get("FailingStreak") or 0)
    if result["ExitCode"] == 0:
        return {"Status": "healthy", "FailingStreak": 0, "Log": log}
    in_grace = status == "starting" and probe_start - started_at < cfg.start_period
    if not in_grace:
        streak += 1
        if streak >= cfg.retries:
            status = "unhealthy"
    return {"Status": status, "FailingStreak": streak, "Log": log}


def next_interval(cfg: HealthConfig, status: str, started_at: float, now: float) -> float:
    if now - started_at >= cfg.start_period or status != "starting":
        return cfg.interval
    return cfg.start_interval


class Probe:
    """One probe in flight: the helper's pid and the pipe its answer comes on."""

    __slots__ = ("pid", "fd", "buf")

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd
        self.buf = b""

    def answer(self) -> dict[str, Any]:
        try:
            got: dict[str, Any] = json.loads(self.buf or b"{}")
        except ValueError:
            got = {}
        return got


def start_probe(
    cfg: HealthConfig, container_pid: int, spec: Mapping[str, Any], health: dict[str, Any], started_at: float
) -> Probe:
    """Fork the helper that runs one probe and records its result."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _probe_main(cfg, container_pid, spec, health, started_at, w)
    os.close(w)
    return Probe(pid, r)


def _probe_main(
    cfg: HealthConfig,
    container_pid: int,
    spec: Mapping[str, Any],
    health: dict[str, Any],
    started_at: float,
    out: int,
) -> NoReturn:
    """In the helper: skip a paused container (docker doesn't probe those), else probe, fold the
    result into State.Health, record it, and tell the monitor {"health": ...} (or {"skipped"})."""
    answer: dict[str, Any] = {}
    try:
        signal.set_wakeup_fd(-1)
        for sig in (
            signal.SIGCHLD,
            signal.SIGUSR2,
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGHUP,
            signal.SIGPIPE,
        ):
            signal.signal(sig, signal.SIG_DFL)
        from pallet.runtime import monitor_records
        from pallet.runtime.jsonlog import rfc3339_nano

        if monitor_records.is_paused(spec):
            answer = {"skipped": True}
        else:
            start_wall, start_ns = time.time(), time.time_ns()
            try:
                got = _run_probe(cfg, container_pid, spec["bundle"], spec.get("health_user") or "",
                                 spec.get("health_cwd") or "")  # fmt: skip
            except Exception as e:  # noqa: BLE001 - a probe that can't run is a failed probe
                got = {"ExitCode": -1, "Output": str(e) or type(e).__name__}
            result = {"Start": rfc3339_nano(start_ns), "End": rfc3339_nano(time.time_ns()), **got}
            new = apply_result(health, result, cfg, started_at, start_wall)
            monitor_records.record_health(spec, new)
            answer = {"health": new}
    except BaseException as e:  # noqa: BLE001 - the monitor must hear back, whatever happened
        answer = {"error": str(e) or type(e).__name__}
    try:
        os.write(out, json.dumps(answer).encode())
    finally:
        os._exit(0)


def _run_probe(cfg: HealthConfig, container_pid: int, bundle: str, user: str, cwd: str) -> dict[str, Any]:
    import select
    from pathlib import Path

    from pallet.runtime.exec import exec_in_container

    r, w = os.pipe2(os.O_CLOEXEC)
    pid = exec_in_container(
        container_pid,
        Path(bundle),
        cfg.args,
        user=user or None,
        cwd=cwd or None,
        stdin=None,
        stdout=w,
        stderr=w,
    )
    os.close(w)
    pidfd = os.pidfd_open(pid)
    output, truncated = b"", False
    deadline = time.monotonic() + cfg.timeout
    exited = False
    open_out = True
    while not exited or open_out:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([pidfd] + ([r] if open_out else []), [], [], left)
        if r in ready:
            chunk = os.read(r, 65536)
            if not chunk:
                open_out = False
            keep = max(0, MAX_OUTPUT - len(output))
            output += chunk[:keep]
            truncated = truncated or len(chunk) > keep
        if pidfd in ready:
            exited = True
            if open_out:
                deadline = min(deadline, time.monotonic() + 1.0)  # leftovers in the pipe only
    text = output.decode(errors="replace") + ("..." if truncated else "")
    if not exited:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        limit = format_duration(cfg.timeout)
        msg = f"Health check exceeded timeout ({limit})" + (f": {text}" if text else "")
        return {"ExitCode": -1, "Output": msg}
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return {"ExitCode": 128 - code if code < 0 else code, "Output": text}


class Schedule:
    """The monitor's side: when to probe, and the probe in flight. The helper records results;
    the monitor keeps a copy of State.Health to hand to the next probe."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        cfg = config(spec["healthcheck"], spec.get("shell"))
        assert cfg is not None
        self.cfg = cfg
        self.spec = spec
        self.health: dict[str, Any] = starting(None)
        self.started_at = 0.0  # wall clock of the run's start
        self.due: float | None = None  # monotonic
        self.probe: Probe | None = None
        self.probe_deadline = 0.0
        self.reaped_probe = False

    def started(self) -> None:
        self.started_at = time.time()
        self.health = starting(self.health)
        self.due = time.monotonic() + next_interval(self.cfg, "starting", self.started_at, self.started_at)

    def next_wake(self) -> float | None:
        if self.probe is not None:
            return self.probe_deadline
        return self.due

    def owns(self, pid: int) -> bool:
        return self.probe is not None and pid == self.probe.pid

    def reaped(self, pid: int) -> None:
        self.reaped_probe = True

    def tick(self, sel: Any, container_pid: int) -> None:
        now = time.monotonic()
        if self.probe is not None:
            if now >= self.probe_deadline:  # the helper itself hangs: give up on it
                self._kill_probe(sel)
                self.due = now + self.cfg.interval
            return
        if self.due is None or now < self.due:
            return
        import selectors

        self.probe = start_probe(self.cfg, container_pid, self.spec, self.health, self.started_at)
        self.reaped_probe = False
        self.probe_deadline = now + self.cfg.timeout + 10.0
        sel.register(self.probe.fd, selectors.EVENT_READ, ("probe", None))

    def on_readable(self, sel: Any) -> None:
        probe = self.probe
        if probe is None:
            return
        chunk = os.read(probe.fd, 65536)
        if chunk:
            probe.buf += chunk
            return
        self._close_probe(sel, probe)
        self.probe = None
        answer = probe.answer()
        if "health" in answer:
            self.health = answer["health"]
        elif "error" in answer:
            import sys

            print(f"health check helper: {answer['error']}", file=sys.stderr)
        status = str(self.health.get("Status") or "starting")
        self.due = time.monotonic() + next_interval(self.cfg, status, self.started_at, time.time())

    def _close_probe(self, sel: Any, probe: Probe) -> None:
        try:
            sel.unregister(probe.fd)
        except (KeyError, ValueError):
            pass
        os.close(probe.fd)
        if not self.reaped_probe:
            try:
                os.waitpid(probe.pid, 0)
            except ChildProcessError:
                pass

    def _kill_probe(self, sel: Any) -> None:
        probe = self.probe
        if probe is None:
            return
        try:
            os.kill(probe.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._close_probe(sel, probe)
        self.probe = None

    def stop(self, sel: Any) -> None:
        """The container exited (or is going): no more probes for this run."""
        self._kill_probe(sel)
        self.due = None
