"""The monitor's exit path without a container: the record child's operations against a real
database and directories (the cgroup path and the mounts do not exist: those steps find nothing
to do), the prepared helper, and the lean release of a --network none container."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from pallet.engine import container_release
from pallet.runtime import monitor_records as records
from pallet.state import containers, db

CID = "c" * 64


def _spec(tmp_path: Path, *, auto_remove: bool) -> dict[str, Any]:
    cdir, run_dir = tmp_path / "containers" / CID, tmp_path / "run" / "containers" / CID
    for d in (cdir / "upper" / "etc", cdir / "rootfs", cdir / "work" / "work", run_dir):
        d.mkdir(parents=True)
    (cdir / "config.json").write_text("{}")
    (run_dir / "attach.sock").write_text("")
    return {
        "container_id": CID,
        "db_path": str(tmp_path / "pallet.db"),
        "state_root": str(tmp_path),
        "state_runroot": str(tmp_path / "run"),
        "runtime": "builtin",
        "cgroups_path": f"/pallet-unit-test-{os.getpid()}/{CID}",
        "rootfs": str(cdir / "rootfs"),
        "container_dir": str(cdir),
        "run_dir": str(run_dir),
        "auto_remove": auto_remove,
    }


def _insert(spec: dict[str, Any], policy: str = "no", sandbox: bool = True) -> None:
    # Closed before any fork: a child must not inherit SQLite's per-process lock state.
    with closing(db.connect(spec["db_path"])) as conn:
        _insert_into(conn, policy, sandbox)


def _insert_into(conn: sqlite3.Connection, policy: str, sandbox: bool) -> None:
    config = {
        "Config": {},
        "HostConfig": {"NetworkMode": "none", "RestartPolicy": {"Name": policy, "MaximumRetryCount": 0}},
        "NetworkSettings": {"SandboxKey": "/x/netns/" + CID} if sandbox else {},
    }
    state = {**containers.initial_state(), "Status": "running", "Running": True, "Pid": 42}
    containers.insert(conn, containers.ContainerRecord(CID, "unit", None, "busybox", "now", config, state))


def _record(spec: dict[str, Any]) -> containers.ContainerRecord | None:
    with closing(db.connect(spec["db_path"])) as conn:
        return containers.get(conn, CID)


EXIT = {"ExitCode": 3, "OOMKilled": False, "FinishedAt": "2024-01-01T00:00:00Z"}


def test_rm_removes_record_and_dirs(tmp_path: Path) -> None:
    spec = _spec(tmp_path, auto_remove=True)
    _insert(spec)
    assert records.record_exit(spec, EXIT, None) == {"outcome": "stop", "OOMKilled": False}
    assert _record(spec) is None
    assert not Path(spec["container_dir"]).exists() and not Path(spec["run_dir"]).exists()


def test_exit_is_recorded_in_one_update(tmp_path: Path) -> None:
    spec = _spec(tmp_path, auto_remove=False)
    _insert(spec)
    assert records.record_exit(spec, EXIT, None)["outcome"] == "stop"
    rec = _record(spec)
    assert rec is not None
    assert rec.state["Status"] == "exited" and rec.state["ExitCode"] == 3 and not rec.state["Running"]
    assert rec.config["NetworkSettings"] == {}  # the namespace is gone with the run
    assert not (Path(spec["run_dir"]) / "attach.sock").exists()
    assert Path(spec["container_dir"], "config.json").exists()


def test_restart_policy_records_restarting(tmp_path: Path) -> None:
    spec = _spec(tmp_path, auto_remove=False)
    _insert(spec, policy="always")
    assert records.record_exit(spec, EXIT, None)["outcome"] == "restart"
    rec = _record(spec)
    assert rec is not None and rec.state["Status"] == "restarting" and rec.config["RestartCount"] == 1
    assert (Path(spec["run_dir"]) / "attach.sock").exists()  # the next run keeps serving clients


def test_gone_record(tmp_path: Path) -> None:
    spec = _spec(tmp_path, auto_remove=True)
    db.connect(spec["db_path"]).close()
    assert records.record_exit(spec, EXIT, None)["outcome"] == "gone"


def test_prepared_helper_takes_the_first_operation(tmp_path: Path) -> None:
    spec = _spec(tmp_path, auto_remove=False)
    _insert(spec)
    r, w = os.pipe()  # stands for the container's stdin: the helper must not hold it
    try:
        records.start_helper(spec)
        helper = records._helper
        assert helper is not None
        os.close(w)
        w = -1
        os.set_blocking(r, False)
        deadline = time.monotonic() + 5
        while True:  # EOF once the helper closed its copy
            try:
                assert os.read(r, 1) == b""
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the helper holds the monitor's fds"
                time.sleep(0.01)
        assert records.in_child(records.is_paused, spec) is False
        assert records._helper is None
        assert records.in_child(records.restart_cancelled, spec) is False  # a new child
        _wait_reaped(helper.pid)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_helper_that_gave_up_leaves_the_work_to_a_new_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tmp_path, auto_remove=True)
    _insert(spec)
    monkeypatch.setattr(records, "WARM_FOR", 0.05)
    records.start_helper(spec)
    helper = records._helper
    assert helper is not None
    _wait_reaped(helper.pid)
    assert records.in_child(records.record_exit, spec, EXIT, None) == {"outcome": "stop", "OOMKilled": False}
    assert _record(spec) is None


def test_helper_forked_before_the_exec_is_adopted(tmp_path: Path) -> None:
    spec = _spec(tmp_path, auto_remove=True)
    _insert(spec)
    handed = records.fork_helper(spec)  # as runtime/monitor.py does before it execs the monitor
    assert os.get_inheritable(handed["req"]) and os.get_inheritable(handed["res"])
    assert records.adopt_helper(handed) and not os.get_inheritable(handed["req"])
    assert records.in_child(records.record_exit, spec, EXIT, None)["outcome"] == "stop"
    assert _record(spec) is None
    assert not records.adopt_helper({})


def test_loop_reaps_a_helper_that_gave_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path, auto_remove=False)
    _insert(spec)
    monkeypatch.setattr(records, "WARM_FOR", 0.05)
    records.start_helper(spec)
    helper = records._helper
    assert helper is not None
    pid = _wait_reaped(helper.pid)
    assert records.owns(pid) and helper.reaped  # as the monitor's waitpid(-1) loop asks
    assert records.in_child(records.is_paused, spec) is False
    assert not records.owns(pid)


def test_failed_operation_is_a_record_error(tmp_path: Path) -> None:
    spec = _spec(tmp_path, auto_remove=False)
    spec["db_path"] = str(tmp_path / "missing" / "pallet.db")
    with pytest.raises(records.RecordError, match="is_paused failed"):
        records.in_child(records.is_paused, spec)


def _wait_reaped(pid: int) -> int:
    deadline = time.monotonic() + 10
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return pid
        except ChildProcessError:
            return pid
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_lean_release_unpins_the_namespace_where_netns_pins_it(tmp_path: Path) -> None:
    from pallet.network import netns

    runroot = tmp_path / "run"
    pin = netns.netns_path(runroot, CID)
    assert str(pin) == os.path.join(str(runroot), container_release.NETNS_DIR, CID)
    pin.parent.mkdir(parents=True)
    pin.write_text("")  # not a mount: nothing to detach, the file goes
    conn = db.connect(tmp_path / "pallet.db")
    config = {"HostConfig": {"NetworkMode": "none"}, "NetworkSettings": {"SandboxKey": str(pin)}}
    rec = containers.ContainerRecord(CID, "n", None, "busybox", "now", config, containers.initial_state())
    top = container_release.release_after_exit(str(tmp_path), str(runroot), conn, CID, rec)
    assert top == {"NetworkSettings": {}} and not pin.exists()
    config["HostConfig"]["NetworkMode"] = "host"
    assert container_release.release_after_exit(str(tmp_path), str(runroot), conn, CID, rec) is None


def test_db_connect_without_migrating(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    db.connect(path)
    conn = db.connect(str(path), migrate=False)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == db.WAL_AUTOCHECKPOINT_PAGES
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with db.write(conn) as c:
        c.execute("INSERT INTO volumes VALUES ('v', 'local', 'now', '{}', '{}', 0)")
    assert conn.execute("SELECT name FROM volumes").fetchone()["name"] == "v"
