"""How the built-in runtime's init joins its cgroups: born in its v2 cgroup (clone3 CLONE_INTO_CGROUP) or
moved there by its parent when the kernel refuses, moving itself into its v1 cgroups, all of it before
its cgroup namespace and its exec. Also create() with A's work done in the caller (`in_caller`, as the
monitor's start child does) and with a `meanwhile` step.

The busybox rootfs comes from test_runtime_builtin's session fixture.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from cgroup_cleanup import private_seccomp_cache_then_remove
from test_runtime_builtin import busybox_rootfs  # noqa: F401 - a fixture

from pallet.runtime import builtin, cgroups, linux, spec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts, cgroups)"),
]

PARENT = f"pallet-test-join-{secrets.token_hex(4)}"


@pytest.fixture(scope="module", autouse=True)
def _cleanup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield from private_seccomp_cache_then_remove(tmp_path_factory, PARENT)


def _bundle(
    tmp_path: Path, rootfs: Path, script: str, *, namespaced: bool = True, **kw: Any
) -> tuple[str, str]:
    cid = f"c{secrets.token_hex(4)}"
    cfg = spec.default_spec(
        args=["sh", "-c", script],
        env=[],
        rootfs=str(rootfs),
        hostname="ctr",
        cgroups_path=f"{PARENT}/{cid}",
        **kw,
    )
    if not namespaced:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "cgroup"]
    bundle = tmp_path / cid
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(cfg))
    return str(bundle), cid


def _run(
    bundle: str, cid: str, *, in_caller: bool, no_clone3: bool = False, meanwhile_fails: bool = False
) -> dict[str, Any]:
    """create() and start() in a forked child (the runtime's caller, a subreaper like the monitor);
    returns its report: the init's pid, its cgroups seen from the host before exec, its wait status
    and output, or the error create() raised."""
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(out_r)
        os.close(res_r)
        _caller(
            bundle,
            cid,
            out_w,
            res_w,
            in_caller=in_caller,
            no_clone3=no_clone3,
            meanwhile_fails=meanwhile_fails,
        )
    os.close(out_w)
    os.close(res_w)
    out = b""
    while chunk := os.read(out_r, 65536):
        out += chunk
    res = b""
    while chunk := os.read(res_r, 65536):
        res += chunk
    os.close(out_r)
    os.close(res_r)
    os.waitpid(child, 0)
    report: dict[str, Any] = json.loads(res)
    report["out"] = out.decode(errors="replace")
    return report


def _caller(
    bundle: str, cid: str, out_w: int, res_w: int, *, in_caller: bool, no_clone3: bool, meanwhile_fails: bool
) -> NoReturn:
    report: dict[str, Any] = {"meanwhile": False}
    try:
        linux.set_child_subreaper()
        if no_clone3:

            def refuse(fd: int) -> int:
                raise OSError(errno.ENOSYS, "clone3: not on this kernel")

            linux.clone_into_cgroup = refuse  # type: ignore[assignment]

        def meanwhile() -> None:
            report["meanwhile"] = True
            if meanwhile_fails:
                raise ValueError("meanwhile failed")

        try:
            c = builtin.create(
                bundle, cid, stdin=None, stdout=out_w, stderr=out_w, in_caller=in_caller, meanwhile=meanwhile
            )
        except (RuntimeError, ValueError) as e:
            report["error"] = f"{type(e).__name__}: {e}"
        else:
            report["pid"] = c.pid
            with open(f"/proc/{c.pid}/cgroup") as f:
                report["host_view"] = f.read().splitlines()
            builtin.start(c)
            report["status"] = os.waitpid(c.pid, 0)[1]
    except BaseException as e:  # noqa: BLE001 - the test decides
        report["error"] = f"caller: {type(e).__name__}: {e}"
    finally:
        os.close(out_w)
        try:
            builtin.delete(bundle, cid)
        except OSError as e:
            report.setdefault("error", f"delete: {e}")
        os.write(res_w, json.dumps(report).encode())
        os._exit(0)


def _assert_clean(cid: str) -> None:
    left = [
        p for h in cgroups.hierarchies() if os.path.isdir(p := cgroups.container_dir(h, f"{PARENT}/{cid}"))
    ]
    assert not left, f"cgroup dirs left: {left}"


SCRIPT = "cat /proc/self/cgroup; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"


@pytest.mark.parametrize(
    ("in_caller", "no_clone3", "namespaced"),
    [
        (True, False, True),
        (False, False, True),
        (True, True, True),
        (True, False, False),
        (False, True, False),
    ],
)
def test_the_init_is_in_every_cgroup_before_exec(
    busybox_rootfs: Path,  # noqa: F811
    tmp_path: Path,
    in_caller: bool,
    no_clone3: bool,
    namespaced: bool,
) -> None:
    resources = {"pids": {"limit": 42}}
    bundle, cid = _bundle(tmp_path, busybox_rootfs, SCRIPT, namespaced=namespaced, resources=resources)
    r = _run(bundle, cid, in_caller=in_caller, no_clone3=no_clone3)
    assert "error" not in r, r
    assert os.waitstatus_to_exitcode(r["status"]) == 0, r
    assert r["meanwhile"]
    # Seen from the host while it waited to exec: in the container's cgroup in every hierarchy.
    assert len(r["host_view"]) == len(cgroups.hierarchies()), r["host_view"]
    assert all(line.endswith(f"/{PARENT}/{cid}") for line in r["host_view"]), r["host_view"]
    lines = r["out"].split()
    assert lines[-1] == "42"  # the limit was in place
    if namespaced:
        # Its cgroup namespace was made after the joins: it is at the root of every hierarchy.
        assert all(line.endswith(":/") for line in lines[:-1]), lines
    else:
        assert all(line.endswith(f"/{PARENT}/{cid}") for line in lines[:-1]), lines
    _assert_clean(cid)


@pytest.mark.parametrize("in_caller", [True, False])
def test_a_failing_meanwhile_takes_the_container_down(
    busybox_rootfs: Path,  # noqa: F811
    tmp_path: Path,
    in_caller: bool,
) -> None:
    bundle, cid = _bundle(tmp_path, busybox_rootfs, "echo ran")
    r = _run(bundle, cid, in_caller=in_caller, meanwhile_fails=True)
    assert r.get("error") == "ValueError: meanwhile failed", r
    assert "ran" not in r["out"]
    _assert_clean(cid)


@pytest.mark.parametrize("in_caller", [True, False])
def test_a_cgroup_setup_error_is_reported_and_cleaned_up(
    busybox_rootfs: Path,  # noqa: F811
    tmp_path: Path,
    in_caller: bool,
) -> None:
    if cgroups.is_unified(cgroups.hierarchies()):
        pytest.skip("a v1 cpuset error")
    bundle, cid = _bundle(tmp_path, busybox_rootfs, "echo ran", resources={"cpu": {"cpus": "4000-4001"}})
    r = _run(bundle, cid, in_caller=in_caller)
    assert r.get("error", "").startswith("RuntimeError: cgroups: "), r
    assert "ran" not in r["out"]
    _assert_clean(cid)


def test_clone_into_cgroup_refuses_a_threaded_caller() -> None:
    import threading

    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with pytest.raises(OSError) as exc:
            linux.clone_into_cgroup(-1)
        assert exc.value.errno == errno.EBUSY
    finally:
        stop.set()
        t.join()


@pytest.mark.parametrize("in_caller", [True, False])
def test_a_seccomp_error_is_reported_and_cleaned_up(
    busybox_rootfs: Path,  # noqa: F811
    tmp_path: Path,
    in_caller: bool,
) -> None:
    """The program is compiled once the init runs (it reads it last): an error still stops it."""
    bundle, cid = _bundle(tmp_path, busybox_rootfs, "echo ran")
    cfg = json.loads(Path(bundle, "config.json").read_text())
    cfg["linux"]["seccomp"]["syscalls"].append({"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"})
    Path(bundle, "config.json").write_text(json.dumps(cfg))
    r = _run(bundle, cid, in_caller=in_caller)
    assert r.get("error", "").startswith("RuntimeError: seccomp: "), r
    assert "SCMP_ACT_NOTIFY" in r["error"]
    assert "ran" not in r["out"]
    _assert_clean(cid)


@pytest.mark.parametrize("no_clone3", [False, True])
@pytest.mark.parametrize("in_caller", [True, False])
@pytest.mark.parametrize("namespaced", [True, False])
def test_the_inits_own_error_is_the_one_reported(
    busybox_rootfs: Path,  # noqa: F811
    tmp_path: Path,
    in_caller: bool,
    namespaced: bool,
    no_clone3: bool,
) -> None:
    """The init fails while A still writes to it ("j", the seccomp program) or moves it: its error is
    reported, not the broken pipe or the missing process A then meets."""
    mount = {
        "destination": "/data",
        "type": "bind",
        "source": str(tmp_path / "missing"),
        "options": ["rbind"],
    }
    for _ in range(5):
        bundle, cid = _bundle(
            tmp_path, busybox_rootfs, "echo ran", namespaced=namespaced, extra_mounts=[mount]
        )
        r = _run(bundle, cid, in_caller=in_caller, no_clone3=no_clone3)
        assert r.get("error", "").startswith("RuntimeError: rootfs: "), r
        assert "missing" in r["error"], r
        _assert_clean(cid)
