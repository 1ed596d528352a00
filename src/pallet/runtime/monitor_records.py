"""The monitor's reads and writes of the state database, and the clean-up after an exit, each done
in a short-lived forked child: sqlite3, ctypes and the state modules would add about 3 MB to every
long-lived monitor, while a fork of the small monitor costs well under a millisecond.

The first operation (normally the exit) goes to a child forked when the monitor starts
(`start_helper`): it imports the exit path's modules and opens the database while the container
runs, then waits for one request, so that `run --rm` does not pay ~5 ms of imports between the
container's exit and the EXIT frame. It gives up after WARM_FOR seconds (a container that runs
longer pays the imports at its exit, as every later operation does): one short-lived process per
start, never a second long-lived one. Best forked before the monitor's exec (`fork_helper`).

Every operation takes the monitor's spec and JSON-able arguments and returns a JSON-able result.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Mapping
    from typing import Any

    from pallet.runtime.cgroups import Hierarchy
    from pallet.state.containers import ContainerRecord


WARM_FOR = 1.0  # seconds the prepared helper waits for its request


class RecordError(Exception):
    pass


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn(*args) in a child and return its result (through a pipe, as JSON): in the prepared
    helper if it is still there, else in a new child."""
    global _helper
    helper, _helper = _helper, None
    if helper is not None:
        taken, result = helper.call(fn, args)
        if taken:
            return result
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            _child_setup()
            _reply(w, fn(*args))
            code = 0
        except BaseException:  # noqa: BLE001 - reported to monitor.log and as a RecordError
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(w)
    data = _read_all(r)
    _reap(pid)
    return _result(fn, data)


def start_helper(spec: Mapping[str, Any]) -> None:
    """Fork the prepared helper (see the module's docstring); in the monitor, before its loop."""
    global _helper
    try:
        _helper = _Helper(spec)
    except OSError as e:  # only a lost speed-up: operations fork their own child
        print(f"preparing the exit: {e}", file=sys.stderr)


def fork_helper(spec: Mapping[str, Any]) -> dict[str, int]:
    """The prepared helper forked before the monitor execs its lean interpreter (runtime/monitor.py):
    there the CLI's modules are loaded already, so the helper is ready at once instead of some
    5 ms after the monitor's start-up, which a container that exits at once would wait for.
    Returns what the monitor needs to `adopt_helper` (its fds made to survive the exec); {} if
    there is no helper."""
    try:
        helper = _Helper(spec)
    except OSError as e:
        print(f"preparing the exit: {e}", file=sys.stderr)
        return {}
    for fd in (helper.req_w, helper.res_r):
        os.set_inheritable(fd, True)
    return {"pid": helper.pid, "req": helper.req_w, "res": helper.res_r}


def adopt_helper(handed: Mapping[str, int] | None) -> bool:
    """In the monitor: the helper `fork_helper` made before the exec, if there is one."""
    global _helper
    if not handed:
        return False
    helper = _Helper.__new__(_Helper)
    helper.pid, helper.req_w, helper.res_r = int(handed["pid"]), int(handed["req"]), int(handed["res"])
    helper.reaped = False
    for fd in (helper.req_w, helper.res_r):
        os.set_inheritable(fd, False)
    _helper = helper
    return True


def owns(pid: int) -> bool:
    """A child of ours the monitor's loop reaped: the prepared helper that gave up, or a child
    whose result came before its exit (see `_reap`)."""
    if pid in _unreaped:
        _unreaped.discard(pid)
        return True
    if _helper is not None and pid == _helper.pid:
        _helper.reaped = True  # its pid may be anyone's now: never wait for it again
        return True
    return False


class _Helper:
    """The request goes as a 4-byte length and JSON [name, args] (not up to EOF: children the
    monitor forks later, a health probe say, hold copies of our end); the helper answers b"+"
    once it has it, then the result. EOF before the "+": it never ran the operation (it had
    given up, or died)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        req_r, self.req_w = os.pipe2(os.O_CLOEXEC)
        self.res_r, res_w = os.pipe2(os.O_CLOEXEC)
        self.reaped = False
        self.pid = os.fork()
        if self.pid == 0:
            _helper_main(spec, req_r, res_w)
        os.close(req_r)
        os.close(res_w)

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        request = json.dumps([fn.__name__, args]).encode()
        try:
            _write_all(self.req_w, len(request).to_bytes(4, "big") + request)
        except OSError:
            pass  # EPIPE: it gave up and is gone; what it answers (nothing) says so
        finally:
            os.close(self.req_w)
        data = _read_all(self.res_r)
        if not self.reaped:
            _reap(self.pid)
        if not data.startswith(b"+"):
            return False, None
        return True, _result(fn, data[1:])


_helper: _Helper | None = None
_unreaped: set[int] = set()


def _helper_main(spec: Mapping[str, Any], req: int, res: int) -> None:
    code = 1
    try:
        _child_setup()
        _close_fds_but(0, 1, 2, req, res)  # the container's stdio, clients' sockets: not ours to hold
        _prepare(spec)
        import select

        if not select.select([req], [], [], WARM_FOR)[0]:
            code = 0
            return
        size = _read_exact(req, 4)
        if len(size) < 4:  # the monitor is gone
            code = 0
            return
        name, args = json.loads(_read_exact(req, int.from_bytes(size, "big")))
        os.write(res, b"+")
        if name not in _OPERATIONS:
            raise RecordError(f"unknown operation {name!r}")
        _reply(res, globals()[name](*args))
        code = 0
    except BaseException:  # noqa: BLE001 - reported to monitor.log; the monitor sees no result
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _prepare(spec: Mapping[str, Any]) -> None:
    """What the exit would otherwise import after the container's exit, and the database."""
    global _conn, _hierarchies
    from pallet.runtime import cgroups, oom, rootfs  # noqa: F401 - loaded ahead of need
    from pallet.state import containers  # noqa: F401

    _hierarchies = cgroups.hierarchies()  # what the start child set the container's cgroups up in

    if spec["runtime"] != "builtin":
        from pallet.runtime import oci_cli  # noqa: F401
    if "state_root" in spec:
        from pallet.engine import container_release  # noqa: F401
    _conn = _db(spec)
    _conn.execute("SELECT 1 FROM containers LIMIT 0")  # opens the file and reads the schema now


def _child_setup() -> None:
    gc.disable()  # short-lived: a collection would only copy the monitor's pages it walks
    signal.set_wakeup_fd(-1)  # the monitor's signals are not ours
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _close_fds_but(*keep: int) -> None:
    start = 0
    for fd in sorted(keep):
        if fd > start:
            os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, os.sysconf("SC_OPEN_MAX"))


def _reap(pid: int) -> None:
    """Without waiting: a child's exit (unmapping sqlite and the rest) takes a while after its
    answer; the monitor's loop reaps what is left."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == 0:
            _unreaped.add(pid)
    except ChildProcessError:
        pass  # reaped by the monitor's loop


def _reply(fd: int, result: Any) -> None:
    """The result, then EOF at once: the monitor need not wait for this process's exit."""
    _write_all(fd, json.dumps({"result": result}).encode())
    os.close(fd)


def _result(fn: Callable[..., Any], data: bytes) -> Any:
    if not data:
        raise RecordError(f"{getattr(fn, '__name__', fn)} failed (see monitor.log)")
    return json.loads(data)["result"]


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _read_exact(fd: int, n: int) -> bytes:
    """n bytes, or fewer if EOF comes first."""
    data = b""
    while len(data) < n and (chunk := os.read(fd, n - len(data))):
        data += chunk
    return data


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


_conn: sqlite3.Connection | None = None  # the prepared helper's
_hierarchies: list[Hierarchy] | None = None  # the prepared helper's


def _db(spec: Mapping[str, Any]) -> sqlite3.Connection:
    if _conn is not None:
        return _conn
    from pallet.state import db

    return db.connect(spec["db_path"], migrate=False)  # the engine that made the spec migrated it


def _now() -> str:
    from pallet.runtime.jsonlog import rfc3339_nano

    return rfc3339_nano(time.time_ns())


def _stopped(health: dict[str, Any] | None) -> dict[str, Any] | None:
    from pallet.runtime.health import stopped  # loaded only for a container with a healthcheck

    return stopped(health)


class _Thread:
    """fn(*args) on a thread of its own: umount2 mostly waits in the kernel (an RCU grace period),
    with the GIL released, while the caller gets on with its own work. `_thread`: no import cost."""

    def __init__(self, fn: Callable[..., None], *args: Any) -> None:
        import _thread

        self.error: BaseException | None = None
        self.done = _thread.allocate_lock()
        self.done.acquire()
        _thread.start_new_thread(self._run, (fn, args))

    def _run(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to join()
            self.error = e
        finally:
            self.done.release()

    def join(self) -> None:
        self.done.acquire()
        if self.error is not None:
            raise self.error


# ---- operations (run in the child) ---------------------------------------------------------------
#
# The exit imports only sqlite3's C module, the lean state modules, cgroups and rootfs (with ctypes
# for umount2); network and volume code loads only for a container that has them (container_release).


def record_exit(
    spec: Mapping[str, Any], exit_info: dict[str, Any], health: dict[str, Any] | None
) -> dict[str, Any]:
    """Everything after an exit but the monitor's own fds: the runtime's state removed (cgroups),
    then, as docker's restart manager decides, "restarting" recorded (and the restart count), or
    the end (`record_end`): one child for the whole exit keeps `run --rm` quick. Returns
    {"outcome": "restart" | "stop" | "gone", "OOMKilled": bool}."""
    from pallet.runtime import restart
    from pallet.state import containers

    conn = _db(spec)
    rec = containers.get(conn, spec["container_id"])
    go_on = rec is not None and restart.should_restart(
        rec.config["HostConfig"].get("RestartPolicy"),
        int(exit_info["ExitCode"]),
        restart_count=int(rec.config.get("RestartCount") or 0),
        manually_stopped=bool(rec.config.get("HasBeenManuallyStopped")),
        cancelled=bool(rec.config.get("ExitOnNext")),
        auto_remove=bool(spec["auto_remove"]),
    )
    # Down for good: the rootfs goes while the cgroups do (rm -f, which removed the record, unmounts).
    unmounting = _Thread(_unmount, spec) if rec is not None and not go_on else None
    oom_killed = drop_runtime_state(spec)
    exit_info = {**exit_info, "OOMKilled": oom_killed}
    if rec is None:
        return {"outcome": "gone", "OOMKilled": oom_killed}
    if unmounting is not None:
        unmounting.join()
        record_end(spec, exit_info, "", conn, rec, unmounted=True)
        return {"outcome": "stop", "OOMKilled": oom_killed}
    count = int(rec.config.get("RestartCount") or 0)
    state = {
        "Status": "restarting",
        "Running": True,
        "Restarting": True,
        "Paused": False,
        "Pid": 0,
        **exit_info,
    }
    if rec.state.get("Health") is not None or health is not None:
        state["Health"] = _stopped(rec.state.get("Health") or health)
    containers.update(conn, spec["container_id"], state=state, top={"RestartCount": count + 1})
    return {"outcome": "restart", "OOMKilled": oom_killed}


def drop_runtime_state(spec: Mapping[str, Any]) -> bool:
    """What the runtime keeps of a run: cgroups (built-in), or runc/crun's state (`delete`).
    Returns whether the OOM killer struck, read from the memory cgroup before it goes."""
    from pallet.runtime import cgroups, oom

    hs = _hierarchies if _hierarchies is not None else cgroups.hierarchies()  # parses mountinfo
    oom_killed = oom.oom_kills(spec["cgroups_path"], hs) > 0
    try:
        if spec["runtime"] == "builtin":
            cgroups.remove(spec["cgroups_path"], hs)
        else:
            from pallet.runtime import oci_cli

            oci_cli.OciRuntime(spec["runtime"], spec["runtime_root"]).delete(
                spec["bundle"], spec["container_id"]
            )
    except Exception as e:  # noqa: BLE001 - reported; the exit is recorded all the same
        print(f"deleting the container's runtime state: {e}", file=sys.stderr)
    return oom_killed


def _unmount(spec: Mapping[str, Any]) -> None:
    """No more attach clients (the socket goes before the record, so that a new start's socket is
    never the one removed), and the rootfs (and a shareable /dev/shm) detached."""
    from pallet.runtime import rootfs

    try:
        os.unlink(os.path.join(spec["run_dir"], "attach.sock"))
    except FileNotFoundError:
        pass
    for key in ("rootfs", "shm_dir"):  # shm_dir: a shareable container's /dev/shm (engine/container_ipc.py)
        if not spec.get(key):
            continue
        try:
            rootfs.unmount(spec[key])
        except OSError as e:
            print(f"unmounting {spec[key]}: {e}", file=sys.stderr)


def record_end(
    spec: Mapping[str, Any],
    exit_info: dict[str, Any],
    error: str,
    conn: sqlite3.Connection | None = None,
    rec: ContainerRecord | None = None,
    *,
    unmounted: bool = False,
) -> None:
    """The container is down for good: no more attach clients, the rootfs unmounted (`_unmount`,
    unless done already), its network and volumes given back, then recorded exited, or removed
    (--rm), in one transaction. `rec`: the record as the caller read it (else it is read here)."""
    from pallet.runtime import rootfs
    from pallet.state import containers

    if not unmounted:
        _unmount(spec)
    conn = conn or _db(spec)
    cid = spec["container_id"]
    if rec is None:
        rec = containers.get(conn, cid)
    top = _release(spec, conn, rec)
    if spec["auto_remove"]:
        containers.delete(conn, cid)
        rootfs.remove_tree(spec["container_dir"], ignore_errors=True)
        rootfs.remove_tree(spec["run_dir"], ignore_errors=True)
        return
    state: dict[str, Any] = {
        "Status": "exited",
        "Running": False,
        "Paused": False,
        "Restarting": False,
        "Pid": 0,
        "Error": error,
        "FinishedAt": _now(),
        **exit_info,
    }
    if rec is not None and rec.state.get("Health") is not None:
        state["Health"] = _stopped(rec.state["Health"])
    containers.update(conn, cid, state=state, top=top)


def _release(
    spec: Mapping[str, Any], conn: sqlite3.Connection, rec: ContainerRecord | None
) -> dict[str, Any] | None:
    """The container's network and volume mounts (and with --rm its anonymous volumes), before the
    record says it stopped: see engine/container_release.py. Returns config keys to merge."""
    if "state_root" not in spec:
        return None  # a monitor started before this existed
    from pallet.engine.container_release import release_after_exit

    cid = spec["container_id"]
    root, runroot = spec["state_root"], spec["state_runroot"]
    return release_after_exit(root, runroot, conn, cid, rec, remove_anonymous=bool(spec["auto_remove"]))


def restart_cancelled(spec: Mapping[str, Any]) -> bool:
    from pallet.state import containers

    rec = containers.get(_db(spec), spec["container_id"])
    return rec is None or bool(rec.config.get("ExitOnNext"))


def is_paused(spec: Mapping[str, Any]) -> bool:
    from pallet.state import containers

    rec = containers.get(_db(spec), spec["container_id"])
    return bool(rec and rec.state.get("Paused"))


def record_health(spec: Mapping[str, Any], health: dict[str, Any]) -> None:
    from pallet.state import containers

    containers.update_state(_db(spec), spec["container_id"], Health=health)


_OPERATIONS = (
    "record_exit",
    "record_end",
    "drop_runtime_state",
    "restart_cancelled",
    "is_paused",
    "record_health",
)
