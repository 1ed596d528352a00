"""Restart policies: docker's decisions and back-off (unit), and the monitor applying them to real
containers: on-failure with a retry limit, always/unless-stopped until a user stop, --rm never."""

from __future__ import annotations

import time

import pytest
from monitor_helpers import inspect, state, wait_for

from conftest import Pallet, needs_root
from pallet.runtime import restart

integration = pytest.mark.integration


def test_policy_decisions() -> None:
    def decide(name: str, code: int, count: int = 0, manual: bool = False, cancel: bool = False) -> bool:
        policy = {"Name": name, "MaximumRetryCount": 2 if name == "on-failure" else 0}
        return restart.should_restart(
            policy, code, restart_count=count, manually_stopped=manual, cancelled=cancel, auto_remove=False
        )

    assert not decide("no", 1)
    assert decide("always", 0) and decide("always", 1, manual=True)
    assert not decide("always", 0, cancel=True)  # a user stop cancels every policy
    assert decide("unless-stopped", 0) and not decide("unless-stopped", 0, manual=True)
    assert decide("on-failure", 1, count=1) and not decide("on-failure", 1, count=2)
    assert not decide("on-failure", 0)
    assert not restart.should_restart(
        {"Name": "always"}, 1, restart_count=0, manually_stopped=False, cancelled=False, auto_remove=True
    )
    unlimited = {"Name": "on-failure", "MaximumRetryCount": 0}
    assert restart.should_restart(
        unlimited, 1, restart_count=99, manually_stopped=False, cancelled=False, auto_remove=False
    )


def test_backoff_doubles_and_resets() -> None:
    b = restart.Backoff()
    assert [b.next(0.5) for _ in range(4)] == [0.1, 0.2, 0.4, 0.8]
    for _ in range(20):
        b.next(0.5)
    assert b.next(0.5) == restart.MAX_DELAY
    assert b.next(10.0) == 0.1  # it ran long enough: start over


def test_parse_and_validate() -> None:
    assert restart.parse("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert restart.parse("unless-stopped") == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    for bad, msg in [
        ("always:2", "maximum retry count can only be used with 'on-failure'"),
        ("on-failure:-1", "maximum retry count cannot be negative"),
        ("sometimes", "unknown policy 'sometimes'"),
        (":3", "no policy provided before colon"),
        ("on-failure:x", "maximum retry count must be an integer"),
    ]:
        with pytest.raises(ValueError, match=msg):
            restart.parse(bad)


def _create_with_policy(p: Pallet, name: str, policy: str, script: str, *flags: str) -> None:
    """`create` then `update --restart`, which works whether or not `run --restart` exists yet."""
    p("create", "--name", name, *flags, "busybox", "sh", "-c", script)
    p("update", "--restart", policy, name)


@integration
@needs_root()
def test_on_failure_restarts_twice_then_stops(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    _create_with_policy(p, "flaky", "on-failure:2", "echo run; exit 3")
    p("start", "flaky")
    wait_for(
        lambda: inspect(p, "flaky")["RestartCount"] == 2 and not state(p, "flaky")["Running"], timeout=20
    )
    time.sleep(0.5)  # no third restart comes
    doc = inspect(p, "flaky")
    assert doc["RestartCount"] == 2
    assert (doc["State"]["Status"], doc["State"]["ExitCode"], doc["State"]["Restarting"]) == (
        "exited",
        3,
        False,
    )
    assert p.out("logs", "flaky") == "run\nrun\nrun\n"


@integration
@needs_root()
def test_restarting_state_and_stop_during_backoff(busybox: Pallet) -> None:
    p = busybox
    _create_with_policy(p, "looper", "always", "exit 1")
    p("start", "looper")
    seen = wait_for(lambda: (st := state(p, "looper"))["Restarting"] and st, message="restarting")
    assert seen["Status"] == "restarting" and seen["Running"] and seen["Pid"] == 0 and seen["ExitCode"] == 1
    wait_for(lambda: inspect(p, "looper")["RestartCount"] >= 3, message="several restarts")
    assert p.out("stop", "looper") == "looper\n"
    st = state(p, "looper")
    assert not st["Running"] and not st["Restarting"] and st["Status"] == "exited"
    count = inspect(p, "looper")["RestartCount"]
    time.sleep(0.8)  # longer than the back-off reached: nothing restarts it
    assert not state(p, "looper")["Running"] and inspect(p, "looper")["RestartCount"] == count
    p("update", "--restart", "no", "looper")
    p("start", "looper")  # a user start resets the count
    wait_for(lambda: not state(p, "looper")["Running"], message="the exit")
    assert inspect(p, "looper")["RestartCount"] == 0
    p("rm", "-f", "looper")


@integration
@needs_root()
def test_always_and_unless_stopped_stay_down_after_a_user_stop(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    for policy in ("always", "unless-stopped"):
        name = f"svc-{policy}"
        _create_with_policy(p, name, policy, "sleep 0.1; exit 0")
        p("start", name)
        wait_for(lambda n=name: inspect(p, n)["RestartCount"] >= 1, message=f"{policy} restarts after exit 0")
        wait_for(lambda n=name: state(p, n)["Status"] == "running", message="running again")
        p("stop", "-t", "0", name)
        time.sleep(0.5)
        assert not state(p, name)["Running"], f"{policy} came back after a stop"


@integration
@needs_root()
def test_kill_cancels_the_policy_and_rm_containers_never_restart(busybox: Pallet) -> None:
    p = busybox
    _create_with_policy(p, "victim", "always", "sleep 60")
    p("start", "victim")
    p("kill", "victim")
    time.sleep(0.5)
    assert not state(p, "victim")["Running"] and state(p, "victim")["ExitCode"] == 137
    p("create", "--rm", "--name", "temp", "busybox", "true")
    r = p("update", "--restart", "always", "temp", check=False)
    assert r.returncode == 1
    assert b"Restart policy cannot be updated because AutoRemove is enabled for the container" in r.stderr
    r = p("run", "--rm", "--restart", "always", "busybox", "true", check=False)
    assert r.returncode == 125 or b"unknown flag" in r.stderr
