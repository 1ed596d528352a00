"""The container monitor: it outlives the CLI, serves attach clients, logs TTY output, reports
OOM kills and healthchecks, stays small, and the engine keeps State honest when it is killed (or
the host "reboots"), with `rm -f` still cleaning up everything."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from monitor_helpers import (
    alive,
    cgroup_dirs,
    cid_of,
    inspect,
    kill9,
    monitor_pid,
    mounted,
    state,
    wait_for,
)

from conftest import PALLET, Pallet, mounts_under, needs_root
from pallet.runtime import oom, stream

pytestmark = [needs_root(), pytest.mark.integration]


def test_oom_count_parsing() -> None:
    v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
    v2 = "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n"
    assert oom.parse_count(v1) == 2 and oom.parse_count(v2) == 1
    assert oom.parse_count("oom_kill_disable 0\nunder_oom 0\n") == 0  # kernels before 4.13


def test_container_outlives_the_cli(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    proc = subprocess.Popen(
        [*PALLET, "run", "--name", "bg", "busybox", "sh", "-c", "echo started; sleep 30"],
        env=p.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    proc.kill()  # the CLI dies; the container and its monitor go on
    proc.wait(timeout=10)
    st = state(p, "bg")
    assert st["Running"] and alive(st["Pid"]) and alive(monitor_pid(p, cid_of(p, "bg")))
    assert p.out("logs", "bg") == "started\n"


def test_killed_monitor_is_reported_and_rm_cleans_up(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    cid = p.out("run", "-d", "--name", "orphan", "busybox", "sleep", "60").strip()
    pid = state(p, "orphan")["Pid"]
    assert mounted(cid) and cgroup_dirs(cid)
    kill9(monitor_pid(p, cid))
    st = wait_for(lambda: (s := state(p, "orphan"))["Error"] and s, message="the monitor's death reported")
    assert st["Running"] and st["Status"] == "running" and st["Error"] == "container monitor died"
    assert p.out("rm", "-f", "orphan") == "orphan\n"
    wait_for(lambda: not alive(pid), message="the container's process gone")
    assert not mounted(cid), "the rootfs is still mounted"
    assert not cgroup_dirs(cid), "cgroup dirs are left"
    assert not (p.root / "containers" / cid).exists() and not (p.root / "run" / "containers" / cid).exists()
    assert p.out("ps", "-aq") == ""


def test_everything_killed_like_a_reboot(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    cid = p.out("run", "-d", "--name", "survivor", "busybox", "sleep", "60").strip()
    pid = state(p, "survivor")["Pid"]
    kill9(monitor_pid(p, cid))
    kill9(pid)
    wait_for(lambda: not alive(pid), message="the container's process gone")
    # a reboot takes every mount under the run dir along (the network namespace pins are mounts)
    for mp in mounts_under(p.root / "run")[::-1]:
        subprocess.run(["umount", "-l", mp], check=True)
    shutil.rmtree(p.root / "run")
    assert p.out("ps", "-a", "--format", "{{.Names}} {{.State}}") == "survivor exited\n"
    st = state(p, "survivor")
    assert not st["Running"] and st["Error"] == "container monitor died"
    assert p.out("start", "survivor") == "survivor\n"
    st = state(p, "survivor")
    assert st["Running"] and st["Error"] == "" and alive(st["Pid"])
    p("stop", "-t", "0", "survivor")
    assert not state(p, "survivor")["Running"]


def _client(p: Pallet, cid: str, opts: dict[str, object]) -> object:
    from pallet.runtime import unixsock

    sock = unixsock.connect(str(p.root / "run" / "containers" / cid), "attach.sock")
    sock.sendall(stream.pack_json(stream.OPEN, opts))
    return sock


def test_attach_socket_serves_several_clients(busybox: Pallet) -> None:
    import socket

    p = busybox
    cid = p.out(
        "run", "-d", "-i", "--name", "echo", "busybox", "sh", "-c", "while read l; do echo got $l; done"
    ).strip()
    a = _client(p, cid, {"Stdin": True, "Stdout": True, "Stderr": True})
    b = _client(p, cid, {"Stdin": False, "Stdout": True, "Stderr": True})
    assert isinstance(a, socket.socket) and isinstance(b, socket.socket)
    a.settimeout(10)
    b.settimeout(10)
    a.sendall(stream.pack(stream.STDIN, b"one\n"))
    assert stream.recv_frame(a) == (stream.STDOUT, b"got one\n")
    assert stream.recv_frame(b) == (stream.STDOUT, b"got one\n")
    b.close()  # a client going away is a detach: the container goes on
    a.sendall(stream.pack(stream.STDIN, b"two\n"))
    assert stream.recv_frame(a) == (stream.STDOUT, b"got two\n")
    p("kill", "echo")
    kind, payload = stream.recv_frame(a) or (None, b"")
    assert kind == stream.EXIT and json.loads(payload)["ExitCode"] == 137
    a.close()
    assert p.out("logs", "echo") == "got one\ngot two\n"
    r = p("attach", "echo", check=False)
    assert r.returncode == 1 and b"You cannot attach to a stopped container, start it first" in r.stderr


def test_tty_output_goes_to_log_and_clients(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    cid = p.out("run", "-d", "-t", "--name", "tty", "busybox", "sh", "-c", "tty; sleep 1; echo bye").strip()
    c = _client(p, cid, {"Stdin": False, "Stdout": True, "Stderr": True, "Height": 20, "Width": 70})
    import socket

    assert isinstance(c, socket.socket)
    c.settimeout(10)
    got = b""
    while (frame := stream.recv_frame(c)) is not None:
        kind, payload = frame
        if kind == stream.EXIT:
            break
        assert kind == stream.STDOUT
        got += payload
    assert b"bye\r\n" in got
    wait_for(lambda: not state(p, "tty")["Running"], message="exit")
    out = p.out("logs", "tty")
    assert out.endswith("bye\r\n") and "/dev/" in out  # a terminal: CRLF, and `tty` names a device


def test_oom_kill_is_recorded(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    r = p("run", "--name", "hog", "--memory", "16m", "--memory-swap", "16m", "busybox", "sh", "-c",
          "x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done", check=False)  # fmt: skip
    if r.returncode == 125 and b"unknown flag: --memory" in r.stderr:
        pytest.skip("`run --memory` is not there yet")
    assert r.returncode == 137
    st = state(p, "hog")
    assert st["OOMKilled"] is True and st["ExitCode"] == 137


def test_healthcheck_states(busybox: Pallet) -> None:
    p = busybox
    r = p("run", "-d", "--name", "doc", "--health-cmd", "test -e /tmp/ok && echo fine", "--health-interval",
          "200ms", "--health-retries", "2", "busybox", "sh", "-c", "sleep 1.2; touch /tmp/ok; sleep 60",
          check=False)  # fmt: skip
    if r.returncode == 125 and b"unknown flag" in r.stderr:
        pytest.skip("the --health-* flags are not there yet")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: (state(p, "doc").get("Health") or {}).get("Status") == "unhealthy", message="unhealthy")
    health = wait_for(
        lambda: (h := state(p, "doc")["Health"])["Status"] == "healthy" and h, message="healthy"
    )
    assert health["FailingStreak"] == 0 and 1 <= len(health["Log"]) <= 5
    last = health["Log"][-1]
    assert last["ExitCode"] == 0 and last["Output"] == "fine\n" and last["Start"] <= last["End"]
    assert "(healthy)" in p.out("ps", "--format", "{{.Status}}")
    p("pause", "doc")
    assert state(p, "doc")["Health"]["Status"] == "unhealthy"  # docker: not probed while paused
    p("unpause", "doc")
    p("stop", "-t", "0", "doc")
    assert state(p, "doc")["Health"]["Status"] == "unhealthy"


def test_healthcheck_timeout(busybox: Pallet) -> None:
    p = busybox
    health = ["--health-cmd", "sleep 5", "--health-interval", "100ms", "--health-timeout", "300ms"]
    r = p(
        "run", "-d", "--name", "slow", *health, "--health-retries", "1", "busybox", "sleep", "60", check=False
    )
    if r.returncode == 125 and b"unknown flag" in r.stderr:
        pytest.skip("the --health-* flags are not there yet")
    health = wait_for(lambda: (h := state(p, "slow").get("Health") or {}).get("Log") and h, message="a probe")
    assert health["Status"] == "unhealthy"
    assert health["Log"][0] == {
        **health["Log"][0],
        "ExitCode": -1,
        "Output": "Health check exceeded timeout (300ms)",
    }


def test_idle_monitor_is_small(busybox: Pallet) -> None:
    p = busybox
    cid = p.out("run", "-d", "--name", "idle", "busybox", "sleep", "60").strip()
    pid = monitor_pid(p, cid)
    time.sleep(0.3)
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(status.split("VmRSS:")[1].split()[0])
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "pallet-monitor"
    # Target 12 MB (about 11 measured); the bound catches a heavy import sneaking in.
    assert rss_kb <= 13 * 1024, f"idle monitor RSS {rss_kb} kB"


def test_monitor_ignores_terminal_signals(busybox: Pallet) -> None:
    p = busybox
    cid = p.out("run", "-d", "--name", "calm", "busybox", "sleep", "60").strip()
    pid = monitor_pid(p, cid)
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
        os.kill(pid, sig)
    time.sleep(0.2)
    assert alive(pid) and state(p, "calm")["Running"]
    assert inspect(p, "calm")["State"]["Error"] == ""
