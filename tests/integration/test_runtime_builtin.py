"""The built-in runtime, and crun/runc through oci_cli, running real busybox containers.

The busybox rootfs is built here (a session fixture), not in a conftest.py: a conftest in this folder
would shadow tests/conftest.py for the modules that `from conftest import ...`.

Each container is run by a tiny test monitor: a forked child that calls create(), start() and waitpid()
(it becomes the subreaper, as pallet's monitor does) and reports back over a pipe. Every test checks that
nothing is left behind: no mounts in the host's namespace, no cgroup directories, no processes.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import selectors
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
from cgroup_cleanup import private_seccomp_cache_then_remove

from pallet.runtime import builtin, cgroups, oci_cli, spec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts, cgroups)"),
]

RUNTIMES = ("builtin", "crun", "runc")
TOKEN = secrets.token_hex(4)
_SEQ = itertools.count()
CGROUP_PARENT = f"pallet-test-{TOKEN}"


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem (from Debian's busybox-static), built once per session.

    Layout: bin sbin usr/bin usr/sbin etc tmp(1777) proc sys dev root, busybox's applets as symlinks,
    /etc/passwd with root and nobody (65534), /etc/group. Tests must treat it as read-only.
    """
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("busybox-static is not installed")
    if os.geteuid() != 0:
        pytest.skip("building the busybox rootfs needs root (chroot)")
    root = tmp_path_factory.mktemp("busybox-rootfs")
    root.chmod(0o755)  # mktemp makes it 0700: the container's / must be searchable by non-root users
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(busybox, root / "bin" / "busybox")
    subprocess.run(["chroot", str(root), "/bin/busybox", "--install", "-s"], check=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")
    return root


def _hybrid_v2_controllers() -> list[str]:
    """Controllers held by a v2 mount that sits beside v1 hierarchies (crun refuses that layout)."""
    hs = cgroups.hierarchies()
    if cgroups.is_unified(hs) or not any(h.version == 1 for h in hs):
        return []
    for h in hs:
        if h.version == 2:
            try:
                return Path(h.mountpoint, "cgroup.controllers").read_text().split()
            except OSError:
                return []
    return []


def _skip_reason(kind: str) -> str | None:
    if kind == "builtin":
        return None
    if shutil.which(kind) is None:
        return f"{kind} is not installed (apt-get install {kind})"
    if kind == "crun" and _hybrid_v2_controllers():
        ctrls = ",".join(_hybrid_v2_controllers())
        return (
            f"crun refuses hybrid cgroups (the v2 mount holds {ctrls}); mount it as v1 first: "
            f"mkdir -p /sys/fs/cgroup/{ctrls} && mount -t cgroup -o {ctrls} cgroup /sys/fs/cgroup/{ctrls}"
        )
    return None


@dataclass
class Result:
    status: int | None  # raw wait status of the container's init
    stdout: bytes
    stderr: bytes
    error: str | None = None  # create() failed with this
    pid: int = 0
    create_ms: float = 0.0
    total_ms: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        assert self.status is not None, f"no exit status: error={self.error!r} stderr={self.stderr!r}"
        return os.waitstatus_to_exitcode(self.status)


class Harness:
    """Writes bundles and runs containers through one runtime, via a forked test monitor."""

    def __init__(self, kind: str, rootfs: Path, tmp: Path) -> None:
        self.kind = kind
        self.rootfs = rootfs
        self.tmp = tmp
        self.state_root = tmp / "runtime-state"
        self.ids: list[str] = []

    def runtime(self) -> Any:
        return builtin if self.kind == "builtin" else oci_cli.OciRuntime(self.kind, self.state_root)

    def bundle(self, args: list[str], **kwargs: Any) -> tuple[Path, str]:
        cid = f"t{TOKEN}-{next(_SEQ)}"
        self.ids.append(cid)
        bundle = self.tmp / cid
        bundle.mkdir()
        kwargs.setdefault("hostname", "ctr1")
        kwargs.setdefault("cgroups_path", f"{CGROUP_PARENT}/{cid}")
        cfg = spec.default_spec(args=args, env=[], rootfs=str(self.rootfs), **kwargs)
        (bundle / "config.json").write_text(json.dumps(cfg))
        return bundle, cid

    def run(
        self,
        args: list[str],
        *,
        stdin: bytes | None = None,
        on_started: Callable[[int, str], None] | None = None,
        config: Callable[[dict[str, Any]], None] | None = None,
        timeout: float = 30,
        **kwargs: Any,
    ) -> Result:
        bundle, cid = self.bundle(args, **kwargs)
        if config is not None:
            cfg = json.loads((bundle / "config.json").read_text())
            config(cfg)
            (bundle / "config.json").write_text(json.dumps(cfg))
        return self.run_bundle(bundle, cid, stdin=stdin, on_started=on_started, timeout=timeout)

    def run_bundle(
        self,
        bundle: Path,
        cid: str,
        *,
        stdin: bytes | None = None,
        on_started: Callable[[int, str], None] | None = None,
        timeout: float = 30,
    ) -> Result:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = os.pipe()
        in_r = in_w = None
        if stdin is not None:
            in_r, in_w = os.pipe()
        mon = os.fork()
        if mon == 0:
            for fd in (out_r, err_r, res_r, in_w):
                if fd is not None:
                    os.close(fd)
            _monitor(self.runtime(), bundle, cid, in_r, out_w, err_w, res_w)
        for fd in (out_w, err_w, res_w, in_r):
            if fd is not None:
                os.close(fd)
        if in_w is not None:
            assert stdin is not None
            os.write(in_w, stdin)
            os.close(in_w)
        bufs: dict[int, bytearray] = {out_r: bytearray(), err_r: bytearray(), res_r: bytearray()}
        sel = selectors.DefaultSelector()
        for fd in bufs:
            sel.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        started = False
        try:
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"container {cid} did not finish in {timeout}s")
                for key, _ in sel.select(left):
                    fd = int(key.fd)
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        sel.unregister(fd)
                        continue
                    bufs[fd] += chunk
                    if fd == res_r and not started and b"\n" in bufs[res_r]:
                        started = True
                        line = bytes(bufs[res_r]).split(b"\n", 1)[0]
                        event = json.loads(line)
                        if "started" in event and on_started is not None:
                            on_started(event["started"], cid)
        finally:
            sel.close()
            for fd in bufs:
                os.close(fd)
            os.waitpid(mon, 0)
        events = [json.loads(line) for line in bytes(bufs[res_r]).splitlines() if line.strip()]
        final: dict[str, Any] = events[-1] if events else {"error": "test monitor died"}
        return Result(
            status=final.get("status"),
            stdout=bytes(bufs[out_r]),
            stderr=bytes(bufs[err_r]),
            error=final.get("error"),
            pid=final.get("pid", 0),
            create_ms=final.get("create_ms", 0.0),
            total_ms=final.get("total_ms", 0.0),
            warnings=final.get("warnings", []),
        )

    def kill(self, pid: int, cid: str, sig: int) -> None:
        if self.kind == "builtin":
            builtin.kill(pid, sig)
        else:
            oci_cli.OciRuntime(self.kind, self.state_root).kill(cid, sig)


def _monitor(
    rt: Any, bundle: Path, cid: str, in_r: int | None, out_w: int, err_w: int, res_w: int
) -> NoReturn:
    """The test monitor (a forked child): create, start, wait, delete, report one JSON line."""
    report: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        created = None
        try:
            created = rt.create(bundle, cid, stdin=in_r, stdout=out_w, stderr=err_w)
        except RuntimeError as e:
            report["error"] = str(e)
        finally:
            for fd in (in_r, out_w, err_w):
                if fd is not None:
                    os.close(fd)
        if created is not None:
            t1 = time.perf_counter()
            report.update(pid=created.pid, warnings=getattr(created, "warnings", []))
            rt.start(created)
            os.write(res_w, json.dumps({"started": created.pid}).encode() + b"\n")
            _, status = os.waitpid(created.pid, 0)
            t2 = time.perf_counter()
            report.update(status=status, create_ms=(t1 - t0) * 1e3, total_ms=(t2 - t0) * 1e3)
    except BaseException as e:  # noqa: BLE001 - report everything, the test decides
        report["error"] = f"monitor: {type(e).__name__}: {e}"
    finally:
        try:
            rt.delete(bundle, cid)
        except Exception as e:  # noqa: BLE001
            report.setdefault("error", f"delete: {e}")
        os.write(res_w, json.dumps(report).encode() + b"\n")
        os._exit(0)


def _mountpoints() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _cgroup_dirs(cid: str) -> list[str]:
    """Directories a runtime may have made for cid: runc and the built-in runtime take a relative
    cgroupsPath relative to their own cgroup, crun relative to the hierarchy's root."""
    found = []
    for h in cgroups.hierarchies():
        for base in (h.own_path, "/"):
            p = os.path.normpath(f"{h.mountpoint}/{base}/{CGROUP_PARENT}/{cid}")
            if os.path.isdir(p):
                found.append(p)
    return found


@pytest.fixture(scope="module", autouse=True)
def _private_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield from private_seccomp_cache_then_remove(tmp_path_factory, CGROUP_PARENT)


@pytest.fixture(params=RUNTIMES)
def rt(request: pytest.FixtureRequest, busybox_rootfs: Path, tmp_path: Path) -> Iterator[Harness]:
    reason = _skip_reason(request.param)
    if reason:
        pytest.skip(reason)
    before = _mountpoints()
    h = Harness(request.param, busybox_rootfs, tmp_path)
    yield h
    leaked = sorted(m for m in _mountpoints() - before if m.startswith((str(tmp_path), str(busybox_rootfs))))
    assert not leaked, f"mounts leaked into the host's namespace: {leaked}"
    for cid in h.ids:
        assert not _cgroup_dirs(cid), f"cgroup dirs left for {cid}: {_cgroup_dirs(cid)}"


def _assert_gone(pid: int) -> None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return
    # The pid may have been reused by now, but never by a process in our container.
    assert "busybox" not in stat and "(sh)" not in stat, f"container process {pid} still alive: {stat}"


def test_exit_code(rt: Harness) -> None:
    r = rt.run(["sh", "-c", "exit 3"])
    assert r.exit_code == 3, r
    _assert_gone(r.pid)


def test_stdout_and_stderr_are_captured(rt: Harness) -> None:
    r = rt.run(["sh", "-c", "echo out; echo err >&2"])
    assert r.exit_code == 0
    assert r.stdout == b"out\n"
    assert b"err\n" in r.stderr


def test_stdin_is_passed(rt: Harness) -> None:
    r = rt.run(["cat"], stdin=b"hello from stdin\n")
    assert r.exit_code == 0
    assert r.stdout == b"hello from stdin\n"


def test_default_capabilities_and_seccomp(rt: Harness) -> None:
    r = rt.run(["cat", "/proc/self/status"])
    assert r.exit_code == 0, r.stderr
    status = dict(line.split(":\t", 1) for line in r.stdout.decode().splitlines() if ":\t" in line)
    assert status["CapEff"].strip() == "00000000a80425fb"
    assert status["CapPrm"].strip() == "00000000a80425fb"
    assert status["CapBnd"].strip() == "00000000a80425fb"
    assert status["CapInh"].strip() == "0000000000000000"
    assert status["Seccomp"].strip() == "2"
    assert status["NoNewPrivs"].strip() == "0"


def test_seccomp_blocks_what_docker_blocks(rt: Harness) -> None:
    # unshare needs CAP_SYS_ADMIN in Docker's profile; busybox's unshare applet calls unshare(2).
    r = rt.run(["sh", "-c", "unshare -u true; echo rc=$?"])
    assert r.stdout.strip() == b"rc=1", (r.stdout, r.stderr)
    assert b"Operation not permitted" in r.stderr


def test_non_root_user_has_no_effective_caps(rt: Harness) -> None:
    r = rt.run(
        ["sh", "-c", "id -u; id -g; grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status"], user=(65534, 65534, [])
    )
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.decode().split()
    assert lines[:2] == ["65534", "65534"]
    assert "0000000000000000" in lines[lines.index("CapEff:") + 1]
    assert lines[lines.index("CapBnd:") + 1] == "00000000a80425fb"


def test_masked_paths(rt: Harness) -> None:
    # /proc/kcore and friends read as /dev/null (or don't exist on this kernel); /proc/acpi is empty.
    script = (
        "cat /proc/kcore | wc -c; wc -c </proc/timer_list; ls -A /proc/acpi | wc -l; stat -c %t:%T /proc/keys"
    )
    r = rt.run(["sh", "-c", script])
    assert r.exit_code == 0, r.stderr
    kcore, timer_list, acpi, keys = r.stdout.decode().split()
    assert kcore == "0"
    assert timer_list == "0"
    assert acpi == "0"
    assert keys == "1:3"  # /dev/null bound over it


def test_sys_and_proc_sys_are_read_only(rt: Harness) -> None:
    r = rt.run(["sh", "-c", "mkdir /sys/pallet-x; echo $?; echo x > /proc/sys/kernel/domainname; echo $?"])
    codes = r.stdout.decode().split()
    assert codes == ["1", "1"], (r.stdout, r.stderr)
    assert b"Read-only file system" in r.stderr


def test_hostname(rt: Harness) -> None:
    r = rt.run(["hostname"])
    assert r.stdout == b"ctr1\n"


def test_shell_is_pid_1(rt: Harness) -> None:
    r = rt.run(["sh", "-c", "ps -o pid,args; true"])
    assert r.exit_code == 0, r.stderr
    rows = [line.split(None, 1) for line in r.stdout.decode().splitlines()[1:]]
    assert ["1", "sh -c ps -o pid,args; true"] in rows


def test_cgroup_limits_are_applied(rt: Harness) -> None:
    resources = {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}, "cpu": {"shares": 512}}
    script = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
        "/sys/fs/cgroup/cpu/cpu.shares; cat /proc/self/cgroup"
    )
    if cgroups.is_unified(cgroups.hierarchies()):
        script = "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.weight"
    r = rt.run(["sh", "-c", script], resources=resources)
    assert r.exit_code == 0, r.stderr
    values = r.stdout.decode().split()
    assert values[:2] == [str(64 << 20), "50"]
    if not cgroups.is_unified(cgroups.hierarchies()):
        assert values[2] == "512"
        # Its own cgroup namespace: the container sees itself at the root of every hierarchy.
        assert all(line.endswith(":/") for line in values[3:]), values[3:]


def test_readonly_rootfs(rt: Harness) -> None:
    r = rt.run(["sh", "-c", "touch /pallet-x; echo $?; touch /tmp/x; echo $?"], readonly_rootfs=True)
    assert r.stdout.decode().split() == ["1", "1"], r.stderr


def test_missing_command(rt: Harness) -> None:
    r = rt.run(["no-such-command"])
    if rt.kind == "builtin":
        assert r.exit_code == 127
        assert b'exec: "no-such-command": executable file not found in $PATH' in r.stderr
    else:  # crun and runc look the command up at create, and fail it
        assert r.error is not None and "no-such-command" in r.error and "not found" in r.error


def test_not_executable(rt: Harness) -> None:
    r = rt.run(["/etc/passwd"])
    if rt.kind == "builtin":
        assert r.exit_code == 126
        assert b'exec: "/etc/passwd": permission denied' in r.stderr
    else:
        assert r.error is not None and "ermission denied" in r.error


def test_killed_by_sigkill(rt: Harness) -> None:
    def kill(pid: int, cid: str) -> None:
        rt.kill(pid, cid, signal.SIGKILL)

    r = rt.run(["sleep", "60"], on_started=kill)
    assert r.status is not None and os.WIFSIGNALED(r.status), r
    assert os.WTERMSIG(r.status) == signal.SIGKILL
    _assert_gone(r.pid)


# --- built-in runtime only ---------------------------------------------------------------------------


@pytest.fixture
def bi(busybox_rootfs: Path, tmp_path: Path) -> Iterator[Harness]:
    before = _mountpoints()
    h = Harness("builtin", busybox_rootfs, tmp_path)
    yield h
    assert not [m for m in _mountpoints() - before if m.startswith(str(tmp_path))]
    for cid in h.ids:
        assert not _cgroup_dirs(cid)


def test_rlimits_are_clamped_with_a_warning(bi: Harness) -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on this host to clamp to")

    def huge(cfg: dict[str, Any]) -> None:
        cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard * 4, "hard": hard * 4}]

    r = bi.run(["sh", "-c", "ulimit -n; ulimit -Hn"], config=huge)
    assert r.exit_code == 0, r.stderr
    if os.environ.get("PALLET_TEST_HAS_SYS_RESOURCE"):
        return
    assert r.stdout.decode().split() == [str(hard), str(hard)]
    assert any("RLIMIT_NOFILE" in w for w in r.warnings)


def test_setup_error_is_reported_and_cleaned_up(bi: Harness, tmp_path: Path) -> None:
    mount = {
        "destination": "/data",
        "type": "bind",
        "source": str(tmp_path / "missing"),
        "options": ["rbind"],
    }
    r = bi.run(["true"], extra_mounts=[mount])
    assert r.status is None
    assert r.error is not None and "missing" in r.error and "errno 2" in r.error


def test_bind_mount_read_only(bi: Harness, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("content\n")
    mount = {"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "ro"]}
    r = bi.run(["sh", "-c", "cat /data/f; touch /data/g; echo $?"], extra_mounts=[mount])
    assert r.stdout.decode().split() == ["content", "1"]
    assert not (data / "g").exists()


def test_symlinked_mount_point_cannot_escape_rootfs(bi: Harness, tmp_path: Path) -> None:
    # A rootfs whose /data is a symlink to the host's /: the mount must land inside the rootfs.
    rootfs = tmp_path / "evil-rootfs"
    shutil.copytree(bi.rootfs, rootfs, symlinks=True)
    if (rootfs / "data").is_dir():  # a mount point an earlier test left in the shared rootfs
        (rootfs / "data").rmdir()
    (rootfs / "data").symlink_to("/../../../../tmp/pallet-escape")
    evil = Harness("builtin", rootfs, tmp_path / "evil")
    (tmp_path / "evil").mkdir()
    mount = {"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}
    r = evil.run(["sh", "-c", "touch /data/marker; echo ok"], extra_mounts=[mount])
    assert r.stdout == b"ok\n", r.stderr
    assert not Path("/tmp/pallet-escape").exists()
    assert (rootfs / "tmp" / "pallet-escape").is_dir()  # created inside, where the link really points
    assert not _cgroup_dirs(evil.ids[0])


def test_console(bi: Harness) -> None:
    # As runc does it: the init opens the pty in the container's own devpts and hands the master back.
    bundle, cid = bi.bundle(["sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; tty"], terminal=True)
    rt_ = builtin
    r, w = os.pipe()
    mon = os.fork()
    if mon == 0:
        os.close(r)
        code = 1
        try:
            c = rt_.create(bundle, cid, terminal=True)
            rt_.start(c)
            os.set_blocking(c.master, True)
            out = b""
            while True:
                try:
                    chunk = os.read(c.master, 4096)
                except OSError:  # EIO once the last slave fd is closed
                    break
                if not chunk:
                    break
                out += chunk
            os.write(w, out)
            _, status = os.waitpid(c.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        finally:
            rt_.delete(bundle, cid)
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    _, status = os.waitpid(mon, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert b"is-a-tty" in out
    assert b"/dev/pts/0" in out


def test_many_containers_in_a_row_leave_nothing(bi: Harness) -> None:
    for _ in range(5):
        r = bi.run(["true"])
        assert r.exit_code == 0, (r.error, r.stderr)
        _assert_gone(r.pid)


# --- timings ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", RUNTIMES)
def test_timing_create_to_exit(kind: str, busybox_rootfs: Path, tmp_path: Path, capsys: Any) -> None:
    """Median time from create() to the exit of `true`, over 20 runs (reported, loosely bounded)."""
    reason = _skip_reason(kind)
    if reason:
        pytest.skip(reason)
    h = Harness(kind, busybox_rootfs, tmp_path)
    times = []
    for _ in range(20):
        r = h.run(["true"])
        assert r.exit_code == 0, (r.error, r.stderr)
        times.append(r.total_ms)
    for cid in h.ids:
        assert not _cgroup_dirs(cid)
    median = statistics.median(times)
    with capsys.disabled():
        print(
            f"\n[timing] {kind}: create->exit of `true`: median {median:.1f} ms "
            f"(min {min(times):.1f}, max {max(times):.1f}, n=20)"
        )
    assert median < 1000


_V2_SCRIPT = """
import json, os, sys
from pallet.runtime import builtin
bundle, cid = sys.argv[1], sys.argv[2]
r, w = os.pipe()
c = builtin.create(bundle, cid, stdin=None, stdout=w, stderr=w)
os.close(w)
builtin.start(c)
out = b""
while chunk := os.read(r, 65536):
    out += chunk
_, status = os.waitpid(c.pid, 0)
builtin.delete(bundle, cid)
print(json.dumps({"status": status, "out": out.decode(errors="replace")}))
"""


def _a_block_device() -> tuple[int, int] | None:
    try:
        first = sorted(os.listdir("/sys/dev/block"))[0]
    except (OSError, IndexError):
        return None
    major, minor = first.split(":")
    return int(major), int(minor)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) from util-linux")
def test_cgroup_v2_layout(bi: Harness, tmp_path: Path) -> None:
    """On a v2-only host: joined through cgroup2, cgroup2 mounted, devices filtered by eBPF.

    Simulated in a private mount namespace whose /sys/fs/cgroup is the cgroup2 hierarchy."""
    import sys

    dev = _a_block_device()
    if dev is None:
        pytest.skip("no block device to test the device filter with")
    script = (
        f"mknod /tmp/blk b {dev[0]} {dev[1]}; head -c 1 /tmp/blk >/dev/null; echo blk=$?; rm /tmp/blk; "
        "echo x > /dev/null; echo null=$?; grep -c cgroup2 /proc/mounts; cat /proc/self/cgroup | grep '^0::'"
    )
    bundle, cid = bi.bundle(["sh", "-c", script])
    helper = tmp_path / "v2.py"
    helper.write_text(_V2_SCRIPT)
    shell = (
        "umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && "
        f'exec "{sys.executable}" "{helper}" "{bundle}" "{cid}"'
    )
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    res = json.loads(proc.stdout.decode().splitlines()[-1])
    assert os.waitstatus_to_exitcode(res["status"]) == 0, res
    lines = res["out"].split("\n")
    assert "blk=1" in lines and "null=0" in lines, res["out"]
    assert "Operation not permitted" in res["out"]
    assert "0::/" in lines  # its own cgroup namespace, rooted at its cgroup
