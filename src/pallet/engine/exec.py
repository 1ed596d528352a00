"""`exec`: a new process in a running container, started from the caller's own process.

Every runtime is served by runtime/exec.py (it needs only the container's init pid and its bundle), not by
`runc exec`/`crun exec`: the result is the same namespaces, cgroups and security profile, without a runtime
binary's start-up on the hot path. The caller gets the pid of its own child and waits for it.
"""

from __future__ import annotations

from pathlib import Path

from pallet.engine.core import Engine
from pallet.errors import Conflict, NotFound, PalletError


class ExecFailed(PalletError):
    """The process could not be started in the container (docker: 126, or 127 for a missing command)."""

    exit_code = 126


class ExecTarget:
    """A running container, as exec needs it. (A plain class: dataclass creation costs ~1 ms.)"""

    __slots__ = ("container_id", "pid", "bundle", "env")

    def __init__(self, container_id: str, pid: int, bundle: Path, env: list[str]) -> None:
        self.container_id = container_id
        self.pid = pid  # host pid of the container's init
        self.bundle = bundle
        self.env = env  # the container's Config.Env (config.json's also has the defaults docker adds)


def target(engine: Engine, ref: str) -> ExecTarget:
    """The running container `ref`; Conflict (exit 1, as docker) when it is not running or paused.

    Deliberately lean (exec's latency is the point): it reads the record and checks the init's pid
    against its recorded start time itself, rather than through lifecycle.refresh. A container whose
    init is alive can take an exec even if its monitor died; one whose init is gone is not running
    whatever the record says."""
    from pallet.runtime.monitor import process_start_time
    from pallet.state import containers as records

    found = records.find(engine.conn, ref)
    if not found:
        raise NotFound(f"No such container: {ref}")
    if len(found) > 1:
        raise PalletError(f"multiple IDs found with provided prefix: {ref}")
    rec = found[0]
    st = rec.state
    pid = int(st.get("Pid") or 0)
    if not st.get("Running") or pid <= 0 or process_start_time(pid) != st.get("PidStart"):
        raise Conflict(f"container {rec.id} is not running")
    if st.get("Paused"):
        raise Conflict(f"Container {rec.id} is paused, unpause the container before exec")
    if st.get("Restarting"):
        raise Conflict(f"Container {rec.id} is restarting, wait until the container is running")
    env = list((rec.config.get("Config") or {}).get("Env") or [])
    return ExecTarget(rec.id, pid, engine.paths.container_dir(rec.id), env)


def open_console(t: ExecTarget) -> tuple[int, int]:
    """A pty in the container's devpts: (master, slave) for `spawn(console_fd=slave)`."""
    from pallet.runtime.exec import ExecError
    from pallet.runtime.exec_console import open_console as open_in_container

    try:
        return open_in_container(t.pid)
    except ExecError as e:
        raise _failure(t, e) from None


def spawn(
    t: ExecTarget,
    args: list[str],
    *,
    env: list[str],
    user: str | None,
    workdir: str | None,
    tty: bool,
    privileged: bool,
    stdin: int | None,
    stdout: int,
    stderr: int,
    console_fd: int | None = None,
) -> int:
    """Start `args` in the container as docker's exec does; returns the pid (our child) to wait for."""
    from pallet.runtime import exec as rexec

    # docker's exec environment: the container's, TERM for a tty, then -e/--env-file. HOME follows the
    # exec user unless the container's Config sets it.
    extra: list[str] = ["TERM=xterm"] if tty else []
    if user and not any(e.startswith("HOME=") for e in t.env):
        extra.append(f"HOME={_home_of(t, user)}")
    try:
        return rexec.exec_in_container(
            t.pid,
            t.bundle,
            args,
            env=extra + env,
            user=user,
            cwd=workdir or None,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            console_fd=console_fd,
            privileged=privileged,
        )
    except rexec.ExecError as e:
        raise _failure(t, e) from None


def _home_of(t: ExecTarget, user: str) -> str:
    from pallet.runtime import users

    try:
        return users.resolve(t.bundle / "rootfs", user).home
    except PalletError:
        return "/"  # exec_in_container reports the unknown user


def _failure(t: ExecTarget, e: Exception) -> PalletError:
    from pallet.runtime.exec import ContainerGone

    if isinstance(e, ContainerGone):
        return Conflict(f"container {t.container_id} is not running")
    err = ExecFailed(f"OCI runtime exec failed: exec failed: unable to start container process: {e}: unknown")
    err.exit_code = getattr(e, "exit_code", 126)
    return err
