"""docker's security defaults and their flags, on every runtime: capabilities, seccomp,
no_new_privs, masked and read-only paths, --privileged, devices, namespace modes, sysctls."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cgroup_cleanup import inspect

from conftest import Pallet, needs_root

pytestmark = [needs_root(), pytest.mark.integration]

DOCKER_CAPS = "00000000a80425fb"
SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "oci-runtime"


def sh(p: Pallet, script: str, *flags: str) -> subprocess.CompletedProcess[bytes]:
    return p("run", "--rm", *flags, "busybox", "sh", "-c", script, check=False)


def status(p: Pallet, *flags: str) -> dict[str, str]:
    """The container's /proc/self/status as a dict."""
    proc = sh(p, "cat /proc/self/status", *flags)
    assert proc.returncode == 0, proc.stderr
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in proc.stdout.decode().splitlines())}


def host_bounding_set() -> str:
    with open("/proc/self/status") as f:
        return next(line.split()[1] for line in f if line.startswith("CapBnd:"))


def test_defaults(runtime_busybox: Pallet) -> None:
    st = status(runtime_busybox)
    assert (st["CapEff"], st["CapBnd"]) == (DOCKER_CAPS, DOCKER_CAPS)
    assert (st["Seccomp"], st["NoNewPrivs"]) == ("2", "0")
    # /proc/kcore (absent on some kernels) and /proc/keys are masked; /proc/sys is read-only; /sys too.
    proc = sh(
        runtime_busybox,
        "head -c 16 /proc/kcore 2>/dev/null | wc -c; wc -c < /proc/keys; "
        "echo x > /proc/sys/kernel/domainname; echo sysctl=$?; touch /sys/x; echo sys=$?",
    )
    kcore, keys, sysctl, sysfs = proc.stdout.decode().split()
    assert kcore == "0" and keys == "0"
    assert sysctl != "sysctl=0" and sysfs != "sys=0"


def test_no_new_privileges(runtime_busybox: Pallet) -> None:
    assert status(runtime_busybox, "--security-opt", "no-new-privileges")["NoNewPrivs"] == "1"
    assert status(runtime_busybox, "--security-opt", "no-new-privileges=false")["NoNewPrivs"] == "0"


def test_cap_drop_and_add(runtime_busybox: Pallet) -> None:
    st = status(runtime_busybox, "--cap-drop", "ALL")
    assert st["CapEff"] == st["CapPrm"] == st["CapBnd"] == "0000000000000000"
    st = status(runtime_busybox, "--cap-drop", "chown", "--cap-drop", "CAP_KILL")
    assert int(st["CapEff"], 16) == int(DOCKER_CAPS, 16) & ~(1 << 0) & ~(1 << 5)
    proc = sh(runtime_busybox, "grep CapEff /proc/self/status; mkdir /m; mount -t tmpfs t /m && echo ok",
              "--cap-add", "SYS_ADMIN")  # fmt: skip
    assert proc.stdout.decode().split() == ["CapEff:", f"{int(DOCKER_CAPS, 16) | 1 << 21:016x}", "ok"]
    assert sh(runtime_busybox, "mkdir /m; mount -t tmpfs t /m").returncode != 0


def test_privileged(runtime_busybox: Pallet) -> None:
    proc = sh(
        runtime_busybox,
        "grep -E '^(CapEff|Seccomp):' /proc/self/status; mkdir /m; mount -t tmpfs t /m && echo mounted; "
        "grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; head -c 1 /proc/keys | wc -c; "
        "ls /dev | wc -l",
        "--privileged",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().split()
    # Everything the host has (no CAP_SYS_RESOURCE here: clamped, not refused), no seccomp.
    assert lines[:6] == ["CapEff:", host_bounding_set(), "Seccomp:", "0", "mounted", "rw"]
    assert lines[6] == "1"  # /proc/keys not masked
    assert int(lines[7]) > 15  # the host's devices


def test_seccomp_unconfined_and_profile(runtime_busybox: Pallet, tmp_path: Path) -> None:
    assert status(runtime_busybox, "--security-opt", "seccomp=unconfined")["Seccomp"] == "0"
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile, indent=2))
    proc = runtime_busybox("create", "--name", "prof", "--security-opt", f"seccomp={path}", "busybox",
                           "sh", "-c", "grep Seccomp: /proc/self/status; mkdir /x")  # fmt: skip
    path.unlink()  # read at create and stored, as docker does: the file is no longer needed
    assert proc.returncode == 0
    opts = inspect(runtime_busybox, "prof")["HostConfig"]["SecurityOpt"]
    assert [json.loads(o.split("=", 1)[1]) for o in opts] == [profile]
    proc = runtime_busybox("start", "-a", "prof", check=False)
    assert proc.returncode == 1
    assert b"Seccomp:\t2" in proc.stdout and b"Operation not permitted" in proc.stderr


def test_device(runtime_busybox: Pallet) -> None:
    proc = sh(runtime_busybox, "stat -c '%t:%T %F' /dev/mynull; echo hi > /dev/mynull && echo wrote",
              "--device", "/dev/null:/dev/mynull:rw")  # fmt: skip
    assert proc.stdout.decode().splitlines() == ["1:3 character special file", "wrote"]
    if not os.path.exists("/dev/loop0"):
        return
    # The device cgroup allows /dev/loop0 (not in docker's defaults) for reading only.
    script = "(: < /dev/xloop) && echo read; (: > /dev/xloop) || echo no-write"
    proc = sh(runtime_busybox, script, "--device", "/dev/loop0:/dev/xloop:r")
    assert proc.stdout.decode().split() == ["read", "no-write"]
    proc = sh(runtime_busybox, "mknod /dev/l b 7 0 && (: < /dev/l)")
    assert proc.returncode != 0 and b"Operation not permitted" in proc.stderr


def test_host_namespaces(runtime_busybox: Pallet) -> None:
    kinds = ("pid", "ipc", "uts", "net", "cgroup")
    script = "hostname; " + "; ".join(f"readlink /proc/self/ns/{k}" for k in kinds)
    flags = ("--pid", "host", "--ipc", "host", "--uts", "host", "--network", "host", "--cgroupns", "host")
    lines = sh(runtime_busybox, script, *flags).stdout.decode().split()
    assert lines == [os.uname().nodename, *(os.readlink(f"/proc/self/ns/{k}") for k in kinds)]
    lines = sh(runtime_busybox, script).stdout.decode().split()
    # dockerd's default cgroup namespace: private on a cgroup v2 host, the host's on v1 (and hybrid).
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    private = [k for k in kinds if k != "cgroup" or v2]
    assert not set(lines[1:]) & {os.readlink(f"/proc/self/ns/{k}") for k in private}
    assert (lines[5] == os.readlink("/proc/self/ns/cgroup")) == (not v2)
    lines = sh(runtime_busybox, script, "--cgroupns", "private").stdout.decode().split()
    assert lines[5] != os.readlink("/proc/self/ns/cgroup")


def test_ipc_none_and_sysctls(runtime_busybox: Pallet) -> None:
    assert sh(runtime_busybox, "grep -c ' /dev/shm ' /proc/mounts", "--ipc", "none").stdout == b"0\n"
    proc = sh(runtime_busybox, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni",
              "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmni=1234")  # fmt: skip
    assert proc.stdout.decode().split() == ["1", "1234"]


def test_ipc_shareable_and_container(runtime_busybox: Pallet) -> None:
    """--ipc container:NAME joins a shareable donor's IPC namespace and /dev/shm; a private donor is
    refused as docker refuses it; the donor's /dev/shm mount goes with it."""
    p = runtime_busybox
    p("run", "-d", "--name", "donor", "--ipc", "shareable", "busybox", "sleep", "100")
    p("run", "-d", "--name", "private", "busybox", "sleep", "100")
    donor_ns = p.out("exec", "donor", "readlink", "/proc/self/ns/ipc").strip()
    p("exec", "donor", "sh", "-c", "echo shared > /dev/shm/note")
    lines = sh(p, "readlink /proc/self/ns/ipc; cat /dev/shm/note", "--ipc", "container:donor").stdout.decode()
    assert lines.split() == [donor_ns, "shared"]
    proc = sh(p, "true", "--ipc", "container:private")
    assert proc.returncode == 125 and b"non-shareable IPC" in proc.stderr
    shm = p.root / "containers" / inspect(p, "donor")["Id"] / "shm"
    assert any(line.split()[4] == str(shm) for line in Path("/proc/self/mountinfo").read_text().splitlines())
    p("stop", "-t", "0", "donor")
    assert str(shm) not in Path("/proc/self/mountinfo").read_text()  # gone with the run
    proc = sh(p, "true", "--ipc", "container:donor")
    assert proc.returncode == 125 and b"is not running" in proc.stderr
    p("rm", "-f", "donor", "private")
    proc = sh(p, "true", "--ipc", "container:nosuch")
    assert proc.returncode == 125 and b"No such container: nosuch" in proc.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--cap-add", "NOPE"], 'unknown capability: "CAP_NOPE"'),
        (["--security-opt", "bogus=1"], 'invalid --security-opt 2: "bogus=1"'),
        (["--security-opt", "seccomp=/no/such.json"], "opening seccomp profile (/no/such.json) failed"),
        (["--device", "/dev/no-such-device"], "error gathering device information"),
        (["--device", "/etc/hostname"], "not a device node"),
        (["--sysctl", "vm.swappiness=1"], "sysctl 'vm.swappiness=1' is not allowed"),
        (["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"], "not allowed in the host's network"),
        (["--ipc", "bogus"], "--ipc: invalid IPC mode"),
        (["--cgroupns", "bogus"], "--cgroupns: invalid CGROUP mode"),
        (["--uts", "host", "-h", "name"], "conflicting options: hostname and the UTS mode"),
    ],
)
def test_bad_security_input(busybox: Pallet, flags: list[str], message: str) -> None:
    proc = busybox("run", "--rm", *flags, "busybox", "true", check=False)
    assert proc.returncode == 125
    assert message in proc.stderr.decode() and len(proc.stderr.decode().splitlines()) == 1
    assert busybox.out("ps", "-aq") == ""


def test_bundle_of_everything_validates(busybox: Pallet) -> None:
    """config.json with the security, resource and process flags is a valid OCI spec."""
    if not SCHEMAS.is_dir():
        pytest.skip(f"OCI runtime-spec schemas not found at {SCHEMAS}")
    from test_runtime_spec import _errors

    flags = (
        "--privileged --device /dev/null:/dev/n1 --ulimit nofile=100:200 --tmpfs /run:size=1m,exec --init "
        "--memory 64m --cpus 0.5 --pids-limit 20 --sysctl net.ipv4.ip_forward=1 --shm-size 2m "
        "--oom-score-adj 100 --add-host db:10.0.0.1"
    )
    busybox("run", "--name", "all", *flags.split(), "busybox", "true")
    cid = inspect(busybox, "all")["Id"]
    doc = json.loads((busybox.root / "containers" / cid / "config.json").read_text())
    assert _errors(doc) == []
    assert doc["process"]["args"][:2] == ["/sbin/docker-init", "--"]
    assert {"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100} in doc["process"]["rlimits"]
    assert doc["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert doc["linux"]["maskedPaths"] == [] and "seccomp" not in doc["linux"]
