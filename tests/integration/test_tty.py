"""Terminals: `run -it`, `run -t`, detach keys, `attach`, `exec -it`, each driven through a real
pseudo-terminal (pexpect) running the real CLI."""

from __future__ import annotations

import json
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
