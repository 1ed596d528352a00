"""The first real `run`: namespaces, pivot_root into an overlay, docker's mounts, the image's
process settings, exit codes; create/start/ps/rm."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import PALLET, Pallet, mounts_under, needs_root

pytestmark = [needs_root(), pytest.mark.integration]


def sh(p: Pallet, script: str, *flags: str) -> subprocess.CompletedProcess[bytes]:
    return p("run", "--rm", *flags, "busybox", "sh", "-c", script, check=False)


def test_exit_codes(busybox: Pallet) -> None:
    assert sh(busybox, "exit 3").returncode == 3
    assert sh(busybox, "true").returncode == 0
    assert busybox("run", "--rm", "busybox", "nosuchcmd", check=False).returncode == 127
    assert sh(busybox, "echo x > /x; chmod 644 /x; /x").returncode == 126


def test_killed_by_signal_is_128_plus_n(busybox: Pallet) -> None:
    proc = subprocess.Popen(
        [*PALLET, "run", "--name", "victim", "busybox", "sleep", "30"],
        env=busybox.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    pid = 0
    while time.monotonic() < deadline and not pid:
        found = json.loads(busybox("inspect", "victim", check=False).stdout or b"[]")
        pid = found[0]["State"]["Pid"] if found else 0
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == 137
    state = json.loads(busybox.out("inspect", "victim"))[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137
    busybox("rm", "victim")


def test_stdout_stderr_and_namespaces(busybox: Pallet) -> None:
    p = sh(
        busybox,
        "echo out; echo err >&2; echo pid=$$; hostname; ls /proc/1/ns >/dev/null; "
        "cat /proc/net/dev | grep -c :",
    )
    assert p.returncode == 0
    lines = p.stdout.decode().split()
    assert lines[0] == "out" and lines[1] == "pid=1"
    assert len(lines[2]) == 12  # hostname = short container id
    assert lines[3] == "2"  # its own network namespace on the default bridge: lo and eth0
    assert p.stderr == b"err\n"
    host_ns = {n: os.readlink(f"/proc/self/ns/{n}") for n in ("mnt", "uts", "ipc", "net", "pid")}
    p = sh(busybox, "for n in mnt uts ipc net pid; do readlink /proc/self/ns/$n; done")
    assert not set(p.stdout.decode().split()) & set(host_ns.values())


def test_docker_mounts(busybox: Pallet) -> None:
    p = sh(busybox, "cat /proc/mounts")
    mounts = {line.split()[1]: line.split() for line in p.stdout.decode().splitlines()}
    assert mounts["/"][2] == "overlay"
    assert mounts["/proc"][2] == "proc"
    assert mounts["/sys"][2] == "sysfs" and mounts["/sys"][3].startswith("ro")
    assert mounts["/dev"][2] == "tmpfs"
    assert mounts["/dev/pts"][2] == "devpts"
    assert mounts["/dev/shm"][2] == "tmpfs"
    assert mounts["/dev/mqueue"][2] == "mqueue"
    assert sh(busybox, "touch /sys/x").returncode != 0
    devs = sh(busybox, "ls /dev").stdout.decode().split()
    for d in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "fd"):
        assert d in devs
    p = sh(busybox, "grep -E 'CapEff|Seccomp:' /proc/self/status")
    assert b"00000000a80425fb" in p.stdout and b"Seccomp:\t2" in p.stdout


def test_process_settings(busybox: Pallet) -> None:
    p = busybox(
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/made/here",
        "-h",
        "box",
        "--entrypoint",
        "/bin/sh",
        "busybox",
        "-c",
        "echo $FOO $(pwd) $(hostname) $HOME $(id -u)",
    )
    assert p.stdout.decode().split() == ["bar", "/made/here", "box", "/root", "0"]
    assert sh(busybox, "id -u; id -g", "-u", "nobody").stdout.decode().split() == ["65534", "65534"]
    assert sh(busybox, "id -u; id -g", "-u", "1234:1234").stdout.decode().split() == ["1234", "1234"]


def test_image_config_is_honoured(busybox: Pallet, tmp_path: Path) -> None:
    # An image whose Env, WorkingDir, User, Entrypoint and Cmd all differ from the defaults.
    tar = tmp_path / "root.tar"
    busybox("save", "-o", str(tmp_path / "bb.tar"), "busybox")
    with tarfile.open(tar, "w") as tf:
        info = tarfile.TarInfo("srv/app")
        info.type = tarfile.DIRTYPE
        info.mode = 0o777
        tf.addfile(info)
    busybox(
        "import",
        "-c",
        "ENV GREETING=hello",
        "-c",
        "WORKDIR /srv/app",
        "-c",
        "USER nobody",
        "-c",
        'ENTRYPOINT ["/bin/echo"]',
        "-c",
        'CMD ["default"]',
        str(tar),
        "cfg:1",
    )
    # Stack it on busybox by running busybox's binary through a bind? Simpler: commit-less check via
    # the image's own layer list: run the image's config on busybox's rootfs is not possible, so check
    # through a busybox image carrying the same config.
    busybox(
        "import",
        "-c",
        "ENV GREETING=hello",
        "-c",
        "WORKDIR /srv/app",
        "-c",
        "USER nobody",
        "-c",
        'ENTRYPOINT ["/bin/sh", "-c"]',
        "-c",
        'CMD ["echo $GREETING $(pwd) $(id -u)"]',
        str(_busybox_rootfs(busybox, tmp_path)),
        "cfg:2",
    )
    assert busybox.out("run", "--rm", "cfg:2").split() == ["hello", "/srv/app", "65534"]
    assert busybox.out("run", "--rm", "cfg:2", "echo override").split() == ["override"]


def _busybox_rootfs(p: Pallet, tmp_path: Path) -> Path:
    """The busybox image's rootfs as a plain tarball (its one layer, from `save`)."""
    archive = tmp_path / "bb.tar"
    out = tmp_path / "bb-rootfs.tar"
    with tarfile.open(archive) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = tf.extractfile(manifest[0]["Layers"][0])
        assert layer is not None
        out.write_bytes(layer.read())
    return out


def test_create_start_ps_rm(busybox: Pallet) -> None:
    cid = busybox.out("create", "--name", "web", "busybox", "sh", "-c", "echo started; exit 5").strip()
    assert len(cid) == 64
    rows = busybox.out("ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}").splitlines()
    assert rows == [f"{cid[:12]} web Created"]
    assert busybox.out("ps", "-q") == ""
    p = busybox("start", "-a", "web", check=False)
    assert p.returncode == 5 and p.stdout == b"started\n"
    assert busybox.out("ps", "-a", "--format", "{{.Status}}").startswith("Exited (5)")
    p = busybox("create", "--name", "web", "busybox", check=False)
    assert p.returncode == 125 and b"already in use" in p.stderr
    busybox("run", "-d", "--name", "bg", "busybox", "sleep", "60")
    assert busybox.out("ps", "-q").split() == [busybox.out("inspect", "-f", "{{.Id}}", "bg").strip()[:12]]
    p = busybox("rm", "bg", check=False)
    assert p.returncode == 1 and b"container is running" in p.stderr
    busybox("rm", "-f", "bg", "web")
    assert busybox.out("ps", "-aq") == ""
    assert [m for m in mounts_under(busybox.root) if "/containers/" in m] == []


def test_rm_flag_removes_container(busybox: Pallet) -> None:
    assert busybox.out("run", "--rm", "--name", "gone", "busybox", "echo", "hi") == "hi\n"
    assert busybox.out("ps", "-aq") == ""
    assert list((busybox.root / "containers").iterdir()) == []


def test_bad_input(busybox: Pallet) -> None:
    p = busybox("run", "--rm", "nosuchimage", check=False)
    assert p.returncode == 125 and b"No such image" in p.stderr
    p = busybox("run", "--rm", "--runtime", "nosuchruntime", "busybox", check=False)
    assert p.returncode == 125 and b"runtime" in p.stderr
    p = busybox("run", "--rm", "-u", "nosuchuser", "busybox", "true", check=False)
    assert p.returncode == 125 and b"unable to find user nosuchuser" in p.stderr
    assert busybox.out("ps", "-aq") == ""
    p = busybox("run", "--bogus", "busybox", check=False)
    assert p.returncode == 125 and b"unknown flag: --bogus" in p.stderr


def test_many_layers_stay_under_mount_limit(busybox: Pallet, tmp_path: Path) -> None:
    """An image of 120 layers still mounts (short layer names keep the options small)."""
    base = _busybox_rootfs_from_archive(busybox, tmp_path)
    archive = _many_layer_archive(base, tmp_path, 119)
    busybox("load", "-i", str(archive))
    p = busybox("run", "--rm", "many:1", "sh", "-c", "cat /f0 /f118")
    assert p.stdout == b"0\n118\n"


def _busybox_rootfs_from_archive(p: Pallet, tmp_path: Path) -> bytes:
    p("save", "-o", str(tmp_path / "bb.tar"), "busybox")
    return _busybox_rootfs(p, tmp_path).read_bytes()


def _many_layer_archive(base: bytes, tmp_path: Path, extra: int) -> Path:
    import hashlib

    layers = [base]
    for i in range(extra):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            data = f"{i}\n".encode()
            info = tarfile.TarInfo(f"f{i}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        layers.append(buf.getvalue())
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    out = tmp_path / "many.tar"
    with tarfile.open(out, "w") as tf:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        names = []
        for d, layer in zip(diff_ids, layers, strict=True):
            names.append(f"{d[7:]}/layer.tar")
            add(names[-1], layer)
        add(config_name, config)
        add(
            "manifest.json",
            json.dumps([{"Config": config_name, "RepoTags": ["many:1"], "Layers": names}]).encode(),
        )
    return out


def test_copy_fallback_without_overlay(busybox: Pallet) -> None:
    env = {**busybox.env, "PALLET_NO_OVERLAY": "1"}
    p = subprocess.run(
        [
            *PALLET,
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo hi > /new; cat /new; grep ' / ' /proc/mounts | cut -d' ' -f3",
        ],
        env=env,
        capture_output=True,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().split()
    assert lines[0] == "hi" and lines[1] != "overlay"
