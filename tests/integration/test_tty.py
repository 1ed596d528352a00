"""Terminals: `run -it`, `run -t`, detach keys, `attach`, `exec -it`, each driven through a real
pseudo-terminal (pexpect) running the real CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from conftest import PALLET, Pallet, needs_root

pexpect = pytest.importorskip("pexpect")

pytestmark = [needs_root(), pytest.mark.integration]

PROMPT = "# "


@contextmanager
def terminal(p: Pallet, *args: str, rows: int = 24, cols: int = 80) -> Iterator[pexpect.spawn]:
    """The CLI under a pty of the given size; killed at the end whatever happened."""
    child = pexpect.spawn(PALLET[0], [*PALLET[1:], *args], env=p.env, dimensions=(rows, cols), timeout=20)
    try:
        yield child
    finally:
        child.close(force=True)


def ended(child: pexpect.spawn) -> int:
    """Wait for the CLI to exit; its exit code."""
    child.expect(pexpect.EOF)
    child.close()
    assert child.signalstatus is None
    return int(child.exitstatus)


def state(p: Pallet, name: str) -> dict[str, object]:
    found = json.loads(p.out("inspect", name))
    return dict(found[0]["State"])


def wait_running(p: Pallet, name: str) -> None:
    deadline = time.monotonic() + 10
    while not state(p, name).get("Running"):
        assert time.monotonic() < deadline, f"{name} is not running"
        time.sleep(0.05)


def test_run_it_prompt_size_resize_and_exit_code(busybox: Pallet) -> None:
    with terminal(busybox, "run", "-it", "--rm", "busybox", "sh", rows=33, cols=101) as t:
        t.expect(PROMPT)
        t.sendline("stty size")
        t.expect("33 101")
        t.setwinsize(41, 132)
        t.sendline("stty size")
        t.expect("41 132")
        t.sendline("exit 7")
        assert ended(t) == 7


def test_run_t_terminal_is_the_containers_own_pty(runtime_busybox: Pallet) -> None:
    """As runc and crun create it (and docker shows it): the pty lives in the container's own devpts,
    so the process's terminal is /dev/pts/0, /dev/console is that same pty, and it belongs to the
    container's user."""
    script = 'tty; stat -c "%t %T %u" /dev/console /dev/pts/0; ps -o pid,tty'
    out = runtime_busybox.out("run", "--rm", "-t", "-u", "1000", "busybox", "sh", "-c", script)
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0] == "/dev/pts/0", out
    major, minor, uid = lines[1].split()
    assert lines[2] == lines[1] and uid == "1000", out
    assert lines[3].split() == ["PID", "TT"]
    assert lines[4].split() == ["1", f"{int(major, 16)},{int(minor, 16)}"]  # busybox ps: "136,0"


def test_run_t_tty_as_root(runtime_busybox: Pallet) -> None:
    out = runtime_busybox.out("run", "--rm", "-t", "busybox", "sh", "-c", "tty; stat -c %u /dev/pts/0")
    assert out.split() == ["/dev/pts/0", "0"]


def test_run_t_without_i_is_output_only(busybox: Pallet) -> None:
    with terminal(busybox, "run", "-t", "--rm", "busybox", "sh", "-c", "[ -t 0 ] && stty size; exit 3",
                  rows=20, cols=70) as t:  # fmt: skip
        t.expect("20 70")
        assert ended(t) == 3


def test_detach_keys_then_attach(busybox: Pallet) -> None:
    with terminal(busybox, "run", "-it", "--name", "tty1", "busybox", "sh") as t:
        t.expect(PROMPT)
        t.sendline("echo before detach")
        t.expect("before detach")
        t.sendcontrol("p")
        t.sendcontrol("q")
        assert ended(t) == 0
    wait_running(busybox, "tty1")
    assert "tty1" in busybox.out("ps", "--format", "{{.Names}}")
    with terminal(busybox, "attach", "tty1") as t:
        t.sendline("echo reattached $((6*7))")
        t.expect("reattached 42")
        t.sendline("exit 3")
        assert ended(t) == 3
    assert state(busybox, "tty1")["ExitCode"] == 3


def test_custom_detach_keys(busybox: Pallet) -> None:
    with terminal(busybox, "run", "-it", "--detach-keys", "ctrl-a,x", "--name", "tty2", "busybox", "sh") as t:
        t.expect(PROMPT)
        t.sendcontrol("p")  # the default keys mean nothing now
        t.sendcontrol("q")
        t.sendline("echo still here")
        t.expect("still here")
        t.sendcontrol("a")
        t.send("x")
        assert ended(t) == 0
    wait_running(busybox, "tty2")
    busybox("rm", "-f", "tty2")


def test_exec_it(busybox: Pallet) -> None:
    busybox("run", "-d", "--name", "ctr", "busybox", "sleep", "1000")
    with terminal(busybox, "exec", "-it", "ctr", "sh", rows=30, cols=90) as t:
        t.expect(PROMPT)
        t.sendline("tty; stty size; echo $TERM")
        t.expect(r"/dev/pts/\d+")
        t.expect("30 90")
        t.expect("xterm")
        t.setwinsize(50, 150)
        t.sendline("stty size")
        t.expect("50 150")
        t.sendline("exit 4")
        assert ended(t) == 4


def test_exec_it_detach_leaves_the_process(busybox: Pallet) -> None:
    busybox("run", "-d", "--name", "ctr", "busybox", "sleep", "1000")
    with terminal(busybox, "exec", "-it", "ctr", "sh", "-c", "echo started; exec sleep 654") as t:
        t.expect("started")
        t.sendcontrol("p")
        t.sendcontrol("q")
        assert ended(t) == 0
    assert "sleep 654" in busybox.out("exec", "ctr", "ps")


def test_start_ai_attaches_a_tty(busybox: Pallet) -> None:
    busybox("create", "-it", "--name", "tty3", "busybox", "sh")
    with terminal(busybox, "start", "-ai", "tty3", rows=25, cols=99) as t:
        t.expect(PROMPT)
        t.sendline("stty size")
        t.expect("25 99")
        t.sendline("exit 5")
        assert ended(t) == 5


def test_attach_forwards_signals_without_a_tty(busybox: Pallet) -> None:
    busybox("run", "-d", "--name", "sigs", "busybox", "sh", "-c",
            'trap "echo got TERM; exit 9" TERM; while :; do echo tick; sleep 0.1; done')  # fmt: skip
    attach = subprocess.Popen(
        [*PALLET, "attach", "--no-stdin", "sigs"], env=busybox.env, stdout=subprocess.PIPE
    )
    try:
        assert attach.stdout is not None
        assert attach.stdout.readline() == b"tick\n"  # attached
        attach.send_signal(signal.SIGTERM)
        assert attach.wait(timeout=20) == 9
        assert b"got TERM" in attach.stdout.read()
    finally:
        attach.kill()
        attach.wait()


def test_refusals(busybox: Pallet) -> None:
    busybox("create", "--name", "idle", "busybox", "sh")
    got = busybox("attach", "idle", check=False)
    assert got.returncode == 1
    assert got.stderr == b"Error: You cannot attach to a stopped container, start it first\n"
    # -it without a terminal on stdin: refused before anything is created.
    got = busybox("run", "-it", "--name", "never", "busybox", "sh", check=False)
    assert got.returncode == 1 and got.stderr == b"Error: the input device is not a TTY\n"
    got = busybox("run", "-it", "--detach-keys", "ctrl-", "--name", "never", "busybox", "sh", check=False)
    assert got.returncode != 0 and b"Invalid detach keys (ctrl-) provided" in got.stderr
    assert "never" not in busybox.out("ps", "-a", "--format", "{{.Names}}")


def test_detach_key_sequences() -> None:
    from pallet.cli.detach_keys import DetachKeyFilter, parse
    from pallet.errors import InvalidArgument

    assert parse(None) == parse("") == b"\x10\x11"
    assert parse("ctrl-a,x") == b"\x01x"
    assert parse("ctrl-@,ctrl-[,ctrl-_,DEL") == b"\x00\x1b\x1f\x7f"
    for bad in ("ctrl-", "ctrl-A", "ab", "ctrl-p,,"):
        with pytest.raises(InvalidArgument):
            parse(bad)
    f = DetachKeyFilter(b"\x10\x11")
    assert f.feed(b"a\x10") == (b"a", False)  # a partial match is held back...
    assert f.feed(b"b") == (b"\x10b", False)  # ...and let go when it breaks
    assert f.feed(b"\x10\x10") == (b"\x10", False)
    assert f.feed(b"\x11rest") == (b"", True)
