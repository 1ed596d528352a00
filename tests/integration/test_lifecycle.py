"""Lifecycle verbs through the real CLI: exit codes, stop (signal, timeout, SIGKILL), kill, wait,
pause/unpause, restart, rename, update, rm, container prune; behaviour tests run on every
installed runtime (built-in, runc, crun)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from monitor_helpers import cgroup_dirs, cid_of, state, wait_for

from conftest import Pallet, needs_root

pytestmark = [needs_root(), pytest.mark.integration]

TRAP_EXIT_7 = "trap 'exit 7' TERM; while :; do sleep 0.1; done"
IGNORE_TERM = "trap '' TERM; while :; do sleep 0.1; done"


def bg(p: Pallet, name: str, script: str, *flags: str) -> str:
    cid = p.out("run", "-d", "--name", name, *flags, "busybox", "sh", "-c", script).strip()
    wait_for(lambda: state(p, name)["Running"], message=f"{name} running")
    return cid


def test_exit_code(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    assert p("run", "--rm", "busybox", "sh", "-c", "exit 3", check=False).returncode == 3


def test_kill_is_137(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    bg(p, "kk", "sleep 60")
    assert p.out("kill", "kk") == "kk\n"
    st = state(p, "kk")
    assert (st["Status"], st["ExitCode"], st["Running"]) == ("exited", 137, False)


def test_stop_after_timeout_is_137(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    bg(p, "stubborn", IGNORE_TERM)
    started = time.monotonic()
    assert p.out("stop", "-t", "1", "stubborn") == "stubborn\n"
    assert time.monotonic() - started >= 0.9  # it waited for the timeout before SIGKILL
    assert state(p, "stubborn")["ExitCode"] == 137


def test_stop_of_trapping_process_gives_its_code(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    bg(p, "polite", TRAP_EXIT_7)
    assert p.out("stop", "polite") == "polite\n"
    assert state(p, "polite")["ExitCode"] == 7


def test_wait_prints_exit_codes(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    bg(p, "w1", "sleep 0.3; exit 5")
    bg(p, "w2", "sleep 0.2; exit 9")
    assert p.out("wait", "w1", "w2") == "5\n9\n"


def test_pause_freezes_and_unpause_resumes(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    bg(p, "counter", "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.02; done")
    cid = cid_of(p, "counter")
    counter = p.root / "containers" / cid / "upper" / "tmp" / "n"

    def count() -> int:
        text = counter.read_text().strip() if counter.exists() else ""
        return int(text) if text.isdigit() else 0

    wait_for(lambda: count() > 0, message="the counter to start")
    assert p.out("pause", "counter") == "counter\n"
    st = state(p, "counter")
    assert (st["Status"], st["Paused"], st["Running"]) == ("paused", True, True)
    frozen = count()
    time.sleep(0.3)
    assert count() == frozen
    assert p.out("unpause", "counter") == "counter\n"
    wait_for(lambda: count() > frozen + 2, message="the counter to move again")
    assert state(p, "counter")["Status"] == "running"


def test_pause_and_unpause_errors(busybox: Pallet) -> None:
    p = busybox
    cid = p.out("create", "--name", "idle", "busybox", "true").strip()
    r = p("pause", "idle", check=False)
    assert r.returncode == 1 and r.stderr.decode() == f"Error: container {cid} is not running\n"
    bg(p, "live", "sleep 60")
    live = cid_of(p, "live")
    r = p("unpause", "live", check=False)
    assert r.returncode == 1 and f"Container {live} is not paused" in r.stderr.decode()
    p("pause", "live")
    r = p("pause", "live", check=False)
    assert r.returncode == 1 and "is already paused" in r.stderr.decode()
    r = p("rm", "live", check=False)
    assert r.returncode == 1 and "container is paused and must be unpaused first" in r.stderr.decode()
    assert p.out("rm", "-f", "live") == "live\n"  # a paused container is thawed and killed


def test_stop_of_stopped_container_and_errors(busybox: Pallet) -> None:
    p = busybox
    p("create", "--name", "never", "busybox", "true")
    assert p.out("stop", "never") == "never\n"
    r = p("stop", "nosuch", "never", check=False)
    assert r.returncode == 1
    assert r.stdout == b"never\n" and r.stderr == b"Error: No such container: nosuch\n"
    r = p("kill", "never", check=False)
    assert r.returncode == 1 and b"cannot kill container: never: container " in r.stderr
    assert b"is not running" in r.stderr
    r = p("kill", "-s", "NOPE", "never", check=False)
    assert r.returncode == 125 and b"Invalid signal: NOPE" in r.stderr


def test_kill_with_signal_names_and_numbers(busybox: Pallet) -> None:
    p = busybox
    bg(p, "sig", "trap 'echo got1 >> /tmp/log' USR1; trap 'echo got2 >> /tmp/log' USR2; trap 'exit 3' HUP; "
       "while :; do sleep 0.05; done")  # fmt: skip
    cid = cid_of(p, "sig")
    log = p.root / "containers" / cid / "upper" / "tmp" / "log"
    assert p.out("kill", "-s", "USR1", "sig") == "sig\n"
    wait_for(lambda: log.exists() and "got1" in log.read_text(), message="SIGUSR1 handled")
    p("kill", "--signal", "SIGUSR2", "sig")
    wait_for(lambda: "got2" in log.read_text(), message="SIGUSR2 handled")
    assert state(p, "sig")["Running"]
    p("kill", "-s", "1", "sig")
    wait_for(lambda: not state(p, "sig")["Running"], message="the container to exit on SIGHUP")
    assert state(p, "sig")["ExitCode"] == 3


def test_stop_signal_and_timeout_from_config(busybox: Pallet) -> None:
    p = busybox
    # StopSignal from the container's config (as an image's STOPSIGNAL would set it).
    bg(p, "usr", "trap 'exit 4' USR1; while :; do sleep 0.05; done", "--stop-signal", "USR1")
    p("stop", "usr")
    assert state(p, "usr")["ExitCode"] == 4
    bg(p, "quick", IGNORE_TERM, "--stop-timeout", "1")
    started = time.monotonic()
    p("stop", "quick")
    assert time.monotonic() - started < 8  # 1 s from the config, not docker's default 10 s
    assert state(p, "quick")["ExitCode"] == 137
    bg(p, "flag", "trap 'exit 6' USR2; while :; do sleep 0.05; done")
    p("stop", "-s", "SIGUSR2", "flag")
    assert state(p, "flag")["ExitCode"] == 6


def test_start_restart_and_several_containers(busybox: Pallet) -> None:
    p = busybox
    p("create", "--name", "ca", "busybox", "sleep", "60")
    p("create", "--name", "cb", "busybox", "sleep", "60")
    assert p.out("start", "ca", "cb") == "ca\ncb\n"
    assert state(p, "ca")["Running"] and state(p, "cb")["Running"]
    assert p.out("start", "ca") == "ca\n"  # already running: not an error
    first = state(p, "ca")["StartedAt"]
    assert p.out("restart", "-t", "0", "ca") == "ca\n"
    st = state(p, "ca")
    assert st["Running"] and st["StartedAt"] != first
    r = p("start", "nosuch", "cb", check=False)
    assert r.returncode == 1 and r.stdout == b"cb\n"
    assert r.stderr == b"Error: No such container: nosuch\nError: failed to start containers: nosuch\n"
    assert p.out("stop", "-t", "0", "ca", "cb") == "ca\ncb\n"  # stopped in parallel


def test_start_attach_returns_exit_code(busybox: Pallet) -> None:
    p = busybox
    p("create", "--name", "once", "busybox", "sh", "-c", "echo hi; echo oops >&2; exit 2")
    r = p("start", "-a", "once", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (2, b"hi\n", b"oops\n")


def test_rename(busybox: Pallet) -> None:
    p = busybox
    cid = p.out("create", "--name", "old", "busybox", "true").strip()
    p("create", "--name", "taken", "busybox", "true")
    assert p.out("rename", "old", "new") == ""
    assert cid_of(p, "new") == cid
    r = p("rename", "new", "taken", check=False)
    assert r.returncode == 1 and b'The container name "/taken" is already in use' in r.stderr
    r = p("rename", "new", "new", check=False)
    assert r.returncode == 1 and b"Renaming a container with the same name as its current name" in r.stderr
    r = p("rename", "new", "bad name!", check=False)
    assert r.returncode == 1 and b"Invalid container name (bad name!)" in r.stderr


def test_update_writes_live_cgroup_and_host_config(busybox: Pallet) -> None:
    p = busybox
    cid = bg(p, "upd", "sleep 60")
    out = p.out(
        "update", "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5", "--cpu-shares", "512",
        "--pids-limit", "50", "--cpuset-cpus", "0", "--restart", "on-failure:3", "upd",
    )  # fmt: skip
    assert out == "upd\n"
    cg = Path("/sys/fs/cgroup")
    if (cg / "memory" / "pallet" / cid).is_dir():  # cgroup v1
        assert (cg / "memory/pallet" / cid / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
        assert (cg / "cpu/pallet" / cid / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (cg / "cpu/pallet" / cid / "cpu.shares").read_text().strip() == "512"
        assert (cg / "pids/pallet" / cid / "pids.max").read_text().strip() == "50"
    else:
        assert (cg / "pallet" / cid / "memory.max").read_text().strip() == str(64 << 20)
        assert (cg / "pallet" / cid / "cpu.max").read_text().strip() == "50000 100000"
    from monitor_helpers import inspect

    hc = inspect(p, "upd")["HostConfig"]
    assert (hc["Memory"], hc["MemorySwap"], hc["NanoCpus"], hc["CpuShares"]) == (
        64 << 20,
        128 << 20,
        5 * 10**8,
        512,
    )
    assert hc["PidsLimit"] == 50 and hc["CpusetCpus"] == "0"
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    r = p("update", "--memory", "1k", "upd", check=False)
    assert r.returncode == 1 and b"Minimum memory limit allowed is 6MB" in r.stderr
    r = p("update", "--memory", "256m", "upd", check=False)
    assert r.returncode == 1 and b"update the memoryswap at the same time" in r.stderr
    r = p("update", "upd", check=False)
    assert r.returncode == 1 and b"you must provide one or more flags" in r.stderr


def test_rm_and_container_prune(busybox: Pallet) -> None:
    p = busybox
    p("run", "--name", "done1", "busybox", "sh", "-c", "echo data > /f")
    a = cid_of(p, "done1")
    b = p.out("create", "--name", "made", "busybox", "true").strip()
    bg(p, "alive", "sleep 60")
    r = p("rm", "alive", check=False)
    assert r.returncode == 1 and b"container is running: stop the container before removing" in r.stderr
    out = p.out("container", "prune", "-f").splitlines()
    assert out[0] == "Deleted Containers:"
    assert sorted(out[1:3]) == sorted([a, b]) and out[3] == ""
    assert out[4].startswith("Total reclaimed space: ") and out[4] != "Total reclaimed space: 0B"
    assert p.out("ps", "-aq").split() == [cid_of(p, "alive")[:12]]
    assert p.out("container", "prune", "-f") == "Total reclaimed space: 0B\n"
    cid = cid_of(p, "alive")
    assert p.out("rm", "-f", "-v", "alive") == "alive\n"
    assert not cgroup_dirs(cid) and not (p.root / "containers" / cid).exists()
