"""Small long-lived helper processes (the DNS server of a network, the port proxy of an endpoint).

pallet has no daemon, so these outlive the command that starts them. The protocol keeps errors
synchronous: the helper binds its sockets first, then forks; the parent writes the child's pid file and
exits 0, or exits non-zero with the reason on stderr, which `spawn` turns into an exception. The
grandchild is never a child of the engine, so nothing has to reap it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pallet.errors import PalletError


class HelperError(PalletError):
    pass


def spawn(module: str, args: Sequence[str], pidfile: Path, *, pass_fds: Sequence[int] = ()) -> int:
    """Start `python -m module args…` detached; return its pid once it is serving."""
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.unlink(missing_ok=True)
    # -I: no user site, no PYTHON* env, no cwd on sys.path: a lean, predictable interpreter.
    argv = [sys.executable, "-I", "-m", module, "--pidfile", str(pidfile), *args]
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=tuple(pass_fds),
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise HelperError(msg[-1] if msg else f"{module} exited {proc.returncode}")
    return read_pid(pidfile) or 0


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_running(pidfile: Path) -> bool:
    """True when the pid file names a live helper that was started with this very pid file (a pid
    recycled by an unrelated process does not count)."""
    pid = read_pid(pidfile)
    if pid is None:
        return False
    cmd = _cmdline(pid)
    return str(pidfile) in cmd and not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def stop(pidfile: Path, timeout: float = 5.0) -> None:
    """SIGTERM the helper, SIGKILL it if it lingers, and remove the pid file. Idempotent."""
    pid = read_pid(pidfile)
    if pid is not None and is_running(pidfile):
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and not _zombie(pid):
            time.sleep(0.005)
        if Path(f"/proc/{pid}").exists() and not _zombie(pid):
            _signal(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ---- inside the helper -------------------------------------------------------------------------


def detach(pidfile: Path, log: Path | None = None) -> None:
    """Called by the helper once its sockets are bound: fork, let the parent publish the pid and exit,
    and carry on in a new session with stdio on the log file (or /dev/null)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        os.read(r, 1)  # the child has set itself up
        tmp = pidfile.with_name(pidfile.name + ".tmp")
        tmp.write_text(f"{pid}\n")
        os.rename(tmp, pidfile)
        os._exit(0)
    os.close(r)
    os.setsid()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {null, out}:
        if fd > 2:
            os.close(fd)
    os.chdir("/")
    os.write(w, b"1")
    os.close(w)


def fail(message: str) -> None:
    """Report a start-up failure to spawn() (one line on stderr) and exit."""
    sys.stderr.write(message.rstrip() + "\n")
    sys.stderr.flush()
    os._exit(1)
