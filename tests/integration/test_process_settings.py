"""Process settings of `run`/`create` as docker's: user, env, entrypoint, --init, --read-only with
--tmpfs, ulimits (clamped to the host), /etc/hosts entries, /dev/shm size, and the Config/HostConfig
fields other parts of pallet act on (restart, logging, healthcheck, stop signal and timeout)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from cgroup_cleanup import inspect

from conftest import Pallet, needs_root

pytestmark = [needs_root(), pytest.mark.integration]


def sh(p: Pallet, script: str, *flags: str) -> subprocess.CompletedProcess[bytes]:
    return p("run", "--rm", *flags, "busybox", "sh", "-c", script, check=False, timeout=60)


def test_users(runtime_busybox: Pallet) -> None:
    assert sh(runtime_busybox, "id -u; id -g", "-u", "nobody").stdout.decode().split() == ["65534", "65534"]
    # A uid:gid the image's /etc/passwd doesn't know is fine.
    proc = sh(runtime_busybox, "id -u; id -g; id -G", "-u", "1234:1234", "--group-add", "wheel")
    assert proc.stdout.decode().split() == ["1234", "1234", "1234", "10"]


def test_env_workdir_entrypoint_hostname(busybox: Pallet, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\nSHARED=file\n")
    flags = "-e SHARED=flag -e PATH=/bin:/usr/bin -w /w/d -h box --domainname example.org --entrypoint sh"
    script = "echo $FROM_FILE $SHARED $PATH $(pwd) $(hostname) $(cat /proc/sys/kernel/domainname)"
    proc = busybox("run", "--rm", "--env-file", str(env_file), *flags.split(), "busybox", "-c", script)
    assert proc.stdout.decode().split() == ["1", "flag", "/bin:/usr/bin", "/w/d", "box", "example.org"]
    # --entrypoint is one word, as docker takes it; "" resets it.
    assert busybox.out("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b") == "a b\n"
    assert busybox.out("run", "--rm", "--entrypoint", "", "busybox", "echo", "c") == "c\n"


def test_init_reaps_zombies(runtime_busybox: Pallet) -> None:
    script = "(sleep 0.1 &); sleep 1; cat /proc/1/cmdline | tr '\\0' ' '; echo; ps -o stat | grep -c Z"
    lines = sh(runtime_busybox, script, "--init").stdout.decode().splitlines()
    assert lines[0].startswith("/sbin/docker-init -- sh -c")
    assert lines[1] == "0"


def test_init_forwards_signals(runtime_busybox: Pallet) -> None:
    runtime_busybox("run", "-d", "--name", "sleeper", "--init", "busybox", "sleep", "100")
    pid = inspect(runtime_busybox, "sleeper")["State"]["Pid"]
    # pid 1 without a handler ignores SIGTERM; docker-init passes it to sleep, which dies of it.
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    state = inspect(runtime_busybox, "sleeper")["State"]
    while state["Running"] and time.monotonic() < deadline:
        time.sleep(0.05)
        state = inspect(runtime_busybox, "sleeper")["State"]
    assert (state["Running"], state["ExitCode"]) == (False, 143)
    runtime_busybox("rm", "sleeper")


def test_read_only_with_tmpfs(runtime_busybox: Pallet) -> None:
    script = "touch /x 2>/dev/null || echo ro; touch /tmp/x && echo tmp-rw; grep ' /tmp ' /proc/mounts"
    proc = sh(runtime_busybox, script, "--read-only", "--tmpfs", "/tmp:size=1m,exec")
    lines = proc.stdout.decode().splitlines()
    assert lines[:2] == ["ro", "tmp-rw"]
    fields = lines[2].split()
    assert fields[2] == "tmpfs" and {"rw", "nosuid", "nodev", "size=1024k"} <= set(fields[3].split(","))
    assert "noexec" not in fields[3].split(",")  # the user's "exec" wins over docker's default


def test_ulimits(runtime_busybox: Pallet) -> None:
    proc = sh(runtime_busybox, "ulimit -n; ulimit -Hn; ulimit -s", "--ulimit", "nofile=1024:2048",
              "--ulimit", "stack=1048576")  # fmt: skip
    assert proc.stdout.decode().split() == ["1024", "2048", "1024"]
    assert proc.stderr == b""


def test_ulimit_over_host_hard_limit_is_clamped(runtime_busybox: Pallet) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on open files here")
    proc = sh(runtime_busybox, "ulimit -n; ulimit -Hn", "--ulimit", f"nofile={hard + 10}:{hard + 100}")
    assert proc.returncode == 0
    assert proc.stdout.decode().split() == [str(hard), str(hard)]
    assert proc.stderr.decode() == (
        f"WARNING: ulimit nofile={hard + 10}:{hard + 100} exceeds the host's hard limit ({hard}); "
        f"clamped to {hard}:{hard}\n"
    )


def test_hosts_and_shm(runtime_busybox: Pallet) -> None:
    # --add-host lines, then (docker's order) the container's own address on its network: last
    proc = sh(runtime_busybox, "tail -n 3 /etc/hosts | head -n 2; df -k /dev/shm | tail -n 1",
              "--add-host", "db:10.1.2.3", "--add-host", "v6=[2001:db8::1]", "--shm-size", "2m")  # fmt: skip
    lines = proc.stdout.decode().splitlines()
    assert lines[:2] == ["10.1.2.3\tdb", "2001:db8::1\tv6"]
    assert lines[2].split()[1] == "2048"


def test_config_reaches_the_record(busybox: Pallet) -> None:
    flags = (
        "--stop-signal SIGUSR1 --stop-timeout 7 --restart on-failure:3 --log-driver json-file "
        "--log-opt max-size=1m --health-cmd true --health-interval 1m30s --health-retries 2 "
        "--health-start-period 500ms -l a=b --label c --init --tmpfs /run --ulimit nofile=10:20 "
        "--add-host h:1.2.3.4 --oom-score-adj -5"
    )
    busybox("create", "--name", "cfg", *flags.split(), "busybox")
    doc = inspect(busybox, "cfg")
    cfg, hc = doc["Config"], doc["HostConfig"]
    assert (cfg["StopSignal"], cfg["StopTimeout"], cfg["Labels"]) == ("SIGUSR1", 7, {"a": "b", "c": ""})
    # Durations in nanoseconds; zero fields left out, as docker's JSON does.
    assert cfg["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 90_000_000_000,
        "StartPeriod": 500_000_000,
        "Retries": 2,
    }
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert (hc["Init"], hc["Tmpfs"], hc["OomScoreAdj"]) == (True, {"/run": ""}, -5)
    assert hc["ExtraHosts"] == ["h:1.2.3.4"]
    assert hc["Ulimits"] == [{"Name": "nofile", "Hard": 20, "Soft": 10}]
    busybox("create", "--name", "plain", "busybox")
    doc = inspect(busybox, "plain")
    assert "Healthcheck" not in doc["Config"] and "StopSignal" not in doc["Config"]
    assert doc["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert doc["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}


def _image_with_healthcheck(p: Pallet, tmp_path: Path) -> str:
    """busybox's rootfs imported with a HEALTHCHECK, as an image built with one would carry it."""
    p("save", "-o", str(tmp_path / "bb.tar"), "busybox")
    with tarfile.open(tmp_path / "bb.tar") as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = tf.extractfile(manifest[0]["Layers"][0])
        assert layer is not None
        (tmp_path / "rootfs.tar").write_bytes(layer.read())
    p("import", "-c", "HEALTHCHECK --interval=5s --retries=4 CMD exit 0", "-c", 'CMD ["sh"]',
      str(tmp_path / "rootfs.tar"), "hc:1")  # fmt: skip
    return "hc:1"


def test_healthcheck_merges_with_the_image(busybox: Pallet, tmp_path: Path) -> None:
    image = _image_with_healthcheck(busybox, tmp_path)
    busybox("create", "--name", "inherit", image)
    busybox("create", "--name", "partial", "--health-timeout", "3s", image)
    busybox("create", "--name", "off", "--no-healthcheck", image)
    inherited = inspect(busybox, "inherit")["Config"]["Healthcheck"]
    assert inherited["Test"] == ["CMD-SHELL", "exit 0"] and inherited["Interval"] == 5_000_000_000
    partial = inspect(busybox, "partial")["Config"]["Healthcheck"]
    assert partial["Test"] == ["CMD-SHELL", "exit 0"]
    assert (partial["Interval"], partial["Timeout"], partial["Retries"]) == (5_000_000_000, 3_000_000_000, 4)
    assert inspect(busybox, "off")["Config"]["Healthcheck"]["Test"] == ["NONE"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--restart", "always", "--rm"], "conflicting options: cannot specify both --restart and --rm"),
        (["--restart", "sometimes"], "invalid restart policy: unknown policy 'sometimes'"),
        (["--restart", "always:3"], "maximum retry count can only be used with 'on-failure'"),
        (["--restart", "on-failure:x"], "maximum retry count must be an integer"),
        (["--health-interval", "5"], 'time: missing unit in duration "5"'),
        (["--health-retries=-1"], "--health-retries cannot be negative"),
        (["--no-healthcheck", "--health-cmd", "true"], "--no-healthcheck conflicts with --health-* options"),
        (["--stop-signal", "SIGNOPE"], "Invalid signal: SIGNOPE"),
        (["--add-host", "nohost"], 'bad format for add-host: "nohost"'),
        (["--add-host", "h:999.1.1.1"], 'invalid IP address in add-host: "999.1.1.1"'),
        (["--tmpfs", "relative"], "mount path must be absolute"),
        (["--ulimit", "nofiles=1"], "invalid ulimit type: nofiles"),
        (["--ulimit", "nofile=20:10"], "ulimit soft limit must be less than or equal to hard limit: 20 > 10"),
        (["--log-driver", "syslog"], "logger: no log driver named 'syslog' is registered"),
        (["--log-opt", "bogus=1"], "unknown log opt 'bogus' for json-file log driver"),
        (["--log-driver", "none", "--log-opt", "max-size=1m"], "invalid logging opts for driver none"),
        (["-e", "=x"], "invalid environment variable: =x"),
        (["--env-file", "/no/such/file"], "open /no/such/file: No such file or directory"),
        (["--oom-score-adj", "5000"], "Invalid value 5000, range for oom score adj is [-1000, 1000]"),
        (["--rm", "-u", "nosuchuser"], "unable to find user nosuchuser"),
    ],
)
def test_bad_process_input(busybox: Pallet, flags: list[str], message: str) -> None:
    proc = busybox("run", *flags, "busybox", "true", check=False)
    assert proc.returncode == 125
    err = proc.stderr.decode()
    assert message in err and len(err.splitlines()) == 1, err
    assert busybox.out("ps", "-aq") == ""
