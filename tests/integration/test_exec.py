"""`exec`: a process started in a running container joins all of its namespaces and cgroups, takes
its environment, user, working directory and security profile, and exits with docker's codes.
Every behaviour test runs on each OCI runtime (built-in, crun, runc) via `runtime_busybox`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import Pallet, needs_root

pytestmark = [needs_root(), pytest.mark.integration]

DEFAULT_CAPS = "00000000a80425fb"  # docker's 14 default capabilities


def started(p: Pallet, name: str = "ctr", *flags: str) -> str:
    """A detached busybox that stays up; returns its id."""
    return p.out("run", "-d", "--name", name, *flags, "busybox", "sleep", "1000").strip()


def ex(p: Pallet, *args: str, input: bytes | None = None) -> tuple[int, str, str]:
    proc = p("exec", *args, input=input, check=False, timeout=30)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def status_field(p: Pallet, name: str, *flags: str) -> str:
    code, out, err = ex(p, *flags, "ctr", "grep", f"^{name}:", "/proc/self/status")
    assert code == 0, err
    return out.split()[1]


def test_exit_codes(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    started(p)
    assert ex(p, "ctr", "sh", "-c", "exit 5")[0] == 5
    assert ex(p, "ctr", "true")[0] == 0
    code, out, err = ex(p, "ctr", "nosuchcmd")
    assert code == 127
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in err
    assert len(err.strip().splitlines()) == 1
    assert ex(p, "ctr", "/etc/passwd")[0] == 126  # not executable
    assert ex(p, "ctr", "sh", "-c", "kill -9 $$")[0] == 137


def test_joins_the_containers_namespaces_and_cgroups(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    started(p)
    code, out, _ = ex(p, "ctr", "ps")
    assert code == 0
    pids = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "sleep 1000" in pids["1"]  # the container's init is our pid 1
    script = (
        "for n in cgroup ipc mnt net pid uts; do"
        ' [ "$(readlink /proc/self/ns/$n)" = "$(readlink /proc/1/ns/$n)" ] || echo differs: $n; done;'
        " cat /proc/self/cgroup; echo --; cat /proc/1/cgroup"
    )
    code, out, err = ex(p, "ctr", "sh", "-c", script)
    assert code == 0, err
    assert "differs" not in out
    mine, init = out.split("--\n")
    assert mine.strip() == init.strip()


def test_user_workdir_and_environment(runtime_busybox: Pallet, tmp_path: Path) -> None:
    p = runtime_busybox
    started(p, "ctr", "-e", "FROM_RUN=1", "-w", "/etc")
    assert ex(p, "-u", "nobody", "ctr", "id", "-u")[1].strip() == "65534"
    assert ex(p, "-u", "nobody", "ctr", "sh", "-c", "echo $HOME")[1].strip() == "/home"
    assert ex(p, "-u", "1234:5678", "ctr", "id")[1].split()[:2] == ["uid=1234", "gid=5678"]
    assert ex(p, "ctr", "pwd")[1].strip() == "/etc"  # the container's working directory
    assert ex(p, "-w", "/tmp", "ctr", "pwd")[1].strip() == "/tmp"
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\nOVERRIDDEN=file\n")
    code, out, _ = ex(p, "--env-file", str(env_file), "-e", "OVERRIDDEN=flag", "-e", "A=b c", "ctr", "env")
    assert code == 0
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env["FROM_FILE"] == "yes" and env["OVERRIDDEN"] == "flag" and env["A"] == "b c"
    assert env["FROM_RUN"] == "1" and env["PATH"].startswith("/usr/local/sbin")
    code, _, err = ex(p, "-u", "nosuchuser", "ctr", "true")
    assert code == 126 and "unable to find user nosuchuser" in err
    code, _, err = ex(p, "-w", "/no/such/dir", "ctr", "true")
    assert code == 126 and "/no/such/dir" in err


def test_stdin_only_with_interactive(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    started(p)
    assert ex(p, "-i", "ctr", "cat", input=b"through stdin\n")[1] == "through stdin\n"
    assert ex(p, "ctr", "cat", input=b"not passed\n")[1] == ""


def test_detached_exec_keeps_running(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    started(p)
    t0 = time.monotonic()
    code, out, _ = ex(p, "-d", "ctr", "sleep", "321")
    assert code == 0 and out == ""
    assert time.monotonic() - t0 < 10  # it did not wait for the process
    deadline = time.monotonic() + 10
    while "sleep 321" not in ex(p, "ctr", "ps")[1]:
        assert time.monotonic() < deadline, "the detached process is not running in the container"
        time.sleep(0.05)


def test_security_profile(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    started(p)
    assert status_field(p, "CapEff") == DEFAULT_CAPS
    assert status_field(p, "CapBnd") == DEFAULT_CAPS
    assert status_field(p, "Seccomp") == "2"
    assert status_field(p, "CapEff", "-u", "nobody") == "0000000000000000"
    status = Path("/proc/self/status").read_text().splitlines()
    host_bounding = next(line.split()[1] for line in status if line.startswith("CapBnd"))
    assert status_field(p, "CapEff", "--privileged") == host_bounding
    assert status_field(p, "Seccomp", "--privileged") == "0"


def test_not_running_container(busybox: Pallet) -> None:
    cid = busybox.out("create", "--name", "ctr", "busybox", "sleep", "1000").strip()
    code, out, err = ex(busybox, "ctr", "true")
    assert code == 1 and out == ""
    assert err == f"Error: container {cid} is not running\n"
    busybox("run", "--name", "done", "busybox", "true")
    code, _, err = ex(busybox, "done", "true")
    assert code == 1 and "is not running" in err
    code, _, err = ex(busybox, "nosuch", "true")
    assert code == 1 and err == "Error: No such container: nosuch\n"


def test_bad_flags(busybox: Pallet) -> None:
    started(busybox)
    code, _, err = ex(busybox, "ctr")
    assert code != 0 and "requires at least 2 arguments" in err
    code, _, err = ex(busybox, "--detach-keys", "ctrl-", "ctr", "true")
    assert code != 0 and "Invalid detach keys" in err
    # -it needs a terminal to read from (docker: exit 1); the process is not started.
    code, _, err = ex(busybox, "-it", "ctr", "touch", "/started")
    assert code == 1 and err == "Error: the input device is not a TTY\n"
    assert ex(busybox, "ctr", "ls", "/started")[0] != 0
