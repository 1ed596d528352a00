"""Shared helpers for the on-demand benchmarks (`python -m bench.NAME`).

- timing: `timed` wraps one call in time.perf_counter; `compare` runs each named trial once as a
  warm-up, then N times, interleaved (a, b, a, b, ...) so that drift on a noisy machine hits every
  engine alike, and returns a `Stats` (median, min, max) per trial;
- peers: `missing_tools` (shutil.which), `Podman` (a private store and a containers.conf of its own),
  `Dockerd` (a private dockerd in its own network namespace, stopped and removed by close());
- containers: `processes_of` (the processes of given container IDs: monitors, conmons, shims and the
  containers' own), `kill_pids`, `vm_rss`;
- scratch space: `Scratch`, a temp directory whose cleanup is guaranteed: the processes it spawned
  and any process still running from inside it are killed by PID, every mount below it is
  unmounted, the tree is removed, and /proc/mounts is checked to be clean;
- output: `format_table` (plain text), and formatters for seconds, ratios and ranges.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

MB = 1_000_000
MIB = 1 << 20

# The host cannot grant podman's default rlimits (no CAP_SYS_RESOURCE) and has no systemd: PEERS.md.
PODMAN_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class BenchError(RuntimeError):
    """A benchmark step failed (a command exited non-zero, cleanup left something behind)."""


# ---- timing -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stats:
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def per_second(self, amount: float) -> Stats:
        """The same runs as a rate (e.g. bytes per second); min and max swap roles."""
        return Stats(tuple(amount / s for s in self.samples))


def timed(fn: Callable[[], object]) -> float:
    """Seconds taken by one call of fn."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(trials: Mapping[str, Callable[[], float]], runs: int, warmup: int = 1) -> dict[str, Stats]:
    """Each trial returns the seconds of its timed part (set-up and clean-up are its own business)."""
    samples: dict[str, list[float]] = {name: [] for name in trials}
    for i in range(warmup + runs):
        for name, trial in trials.items():
            seconds = trial()
            if i >= warmup:
                samples[name].append(seconds)
    return {name: Stats(tuple(values)) for name, values in samples.items()}


# ---- processes ----------------------------------------------------------------------------------

def run(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 600) -> str:
    """Run a command to completion in its own session and return its stdout; raise BenchError on a
    non-zero exit. On a timeout or an interrupt its whole process group is killed (and only that)."""
    args = [str(a) for a in argv]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=None if env is None else dict(env), cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    if proc.returncode != 0:
        tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-3:])
        raise BenchError(f"{' '.join(args)}: exit {proc.returncode}: {tail}")
    return out.decode(errors="replace")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that every `with Scratch(...)` still cleans up."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


def processes_inside(path: Path) -> list[int]:
    """PIDs whose command line names something under path, or whose cwd or root is under it.
    path is a fresh mkdtemp directory, so whatever matches was started by this benchmark."""
    prefix = str(path) + "/"
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().decode(errors="replace").split("\0")
            places = [os.readlink(f"{entry.path}/cwd"), os.readlink(f"{entry.path}/root")]
        except OSError:
            continue  # gone, or a kernel thread
        if any(a == str(path) or a.startswith(prefix) or f"={prefix}" in a for a in argv) \
                or any(p == str(path) or p.startswith(prefix) for p in places):
            found.append(int(entry.name))
    return found


# ---- mounts -------------------------------------------------------------------------------------

def _unescape(field_: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal (\\040 ...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def mounts_below(path: Path) -> list[str]:
    """Mount points at or under path, deepest first."""
    top = str(path)
    with open("/proc/self/mounts") as f:
        points = [_unescape(line.split()[1]) for line in f]
    return sorted((p for p in points if p == top or p.startswith(top + "/")), key=len, reverse=True)


def unmount_below(path: Path) -> None:
    for point in mounts_below(path):
        subprocess.run(["umount", "-l", point], capture_output=True)


# ---- scratch space ------------------------------------------------------------------------------

@dataclass
class Scratch:
    """A fresh temp directory; `with Scratch(...) as s:` guarantees its cleanup (see close)."""

    prefix: str = "pallet-bench-"
    parent: Path | None = None  # default: tempfile's (TMPDIR, /tmp)
    path: Path = field(init=False)
    _procs: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=self.prefix, dir=self.parent)).resolve()

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def spawn(self, argv: Sequence[str | Path], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a long-running helper (a daemon, a registry) that close() will kill."""
        proc: subprocess.Popen[bytes] = subprocess.Popen([str(a) for a in argv], start_new_session=True,
                                                         **kwargs)  # type: ignore[call-overload]
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        """Kill, unmount, remove, verify; SIGINT and SIGTERM wait until this is done."""
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._cleanup()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _cleanup(self) -> None:
        if not self.path.exists():
            return
        for proc in self._procs:
            if proc.poll() is None:
                _kill_group(proc.pid)
                proc.wait()
        self._kill_stragglers()
        unmount_below(self.path)
        shutil.rmtree(self.path, ignore_errors=True)
        left = mounts_below(self.path)
        if left or self.path.exists():
            raise BenchError(f"cleanup of {self.path} left {left or 'files'} behind")

    def _kill_stragglers(self) -> None:
        for pid in processes_inside(self.path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while processes_inside(self.path) and time.monotonic() < deadline:
            time.sleep(0.05)


# ---- peers --------------------------------------------------------------------------------------

def missing_tools(*tools: str) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


def pallet_cli() -> Path:
    """The pallet entry point of the interpreter running the benchmark (the venv's), not a shim."""
    here = Path(sys.prefix) / "bin" / "pallet"
    if here.exists():
        return here
    found = shutil.which("pallet")
    if found is None:
        raise BenchError("pallet is not installed in this environment (pip install -e .)")
    return Path(found)


class Podman:
    """podman with a private store: --root in a scratch directory (under parent, default the temp dir),
    --runroot in another directly under /tmp (podman refuses runroots longer than ~50 characters), its
    own containers.conf, and TMPDIR inside the scratch directory. Nothing shared on the host is touched;
    close() removes it all."""

    def __init__(self, runtime: str | None = None, parent: Path | None = None) -> None:
        self.home = Scratch(prefix="pallet-bench-podman-", parent=parent)
        try:
            self.run_home = Scratch(prefix="pb-bench-", parent=Path("/tmp"))
        except BaseException:
            self.home.close()
            raise
        conf = self.home / "containers.conf"
        conf.write_text(PODMAN_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf), "TMPDIR": str(self.home.path)}
        self.runtime = runtime

    def __enter__(self) -> Podman:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def argv(self) -> list[str]:
        argv = ["podman", "--root", str(self.home / "storage"), "--runroot", str(self.run_home / "run")]
        return argv + (["--runtime", self.runtime] if self.runtime else [])

    def __call__(self, *args: str | Path, timeout: float = 600) -> str:
        return run([*self.argv, *args], env=self.env, timeout=timeout)

    def close(self) -> None:
        # No `system reset`: it also removes networks from the host-wide network config directory.
        # The overlay driver leaves a private bind mount of its home; Scratch unmounts it.
        try:
            self.home.close()
        finally:
            self.run_home.close()


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (for clean-ups that must not be cut short).
    Children started inside inherit the blocked mask, so they are not cut short either."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def close_all(*closers: Callable[[], object]) -> None:
    """Call every closer, in order, even when one fails; then raise the first failure."""
    first: BaseException | None = None
    for close in closers:
        try:
            close()
        except BaseException as e:  # noqa: B036 - re-raised below, after the others have run
            first = first or e
    if first is not None:
        raise first


_dockerd_serial = itertools.count()


class Dockerd:
    """A dockerd of our own, as in PEERS.md: started in a network namespace of its own (its bridge and
    NAT, if any, stay in there), its data root and socket in a scratch directory (under parent, default
    the temp dir), its exec root (containerd's state, the shims' bundles) in another directly under /run
    (socket paths must stay short), and a docker client configuration of its own. The client is Debian's
    20.10 docker (/usr/bin/docker) when present, else the first docker on PATH. extra_args go to dockerd
    (e.g. --bridge=none --iptables=false when only --network none containers run). close() stops the
    daemon cleanly (it stops its containerd), kills whatever is left inside its roots, and removes the
    namespace and both directories. Raises BenchError when the daemon does not come up in time."""

    def __init__(self, parent: Path | None = None, extra_args: Sequence[str] = (),
                 timeout: float = 60) -> None:
        self.netns = f"pallet-bench-dockerd-{os.getpid()}-{next(_dockerd_serial)}"
        self.home = Scratch(prefix="pallet-bench-docker-", parent=parent)
        self.exec_root: Scratch | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._netns_added = False
        client = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker")
        self.client = client or "docker"
        self.sock = self / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}", "DOCKER_CONFIG": str(self / "client")}
        try:
            (self / "client").mkdir()
            self.exec_root = Scratch(prefix="pb-dockerd-", parent=Path("/run"))
            run(["ip", "netns", "add", self.netns])
            self._netns_added = True
            run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
            with open(self / "dockerd.log", "wb") as log:
                self.proc = self.home.spawn(
                    ["nsenter", f"--net=/var/run/netns/{self.netns}", "dockerd", "-H", f"unix://{self.sock}",
                     "--data-root", self / "data", "--exec-root", self.exec_root.path,
                     "--pidfile", self.exec_root / "dockerd.pid", *extra_args],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            deadline = time.monotonic() + timeout
            while subprocess.run([self.client, "version"], env=self.env, capture_output=True).returncode:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"dockerd did not come up: {self.log_tail()}")
                time.sleep(0.2)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Dockerd:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __truediv__(self, name: str) -> Path:
        return self.home / name

    def __call__(self, *args: str | Path, timeout: float = 600) -> str:
        return run([self.client, *args], env=self.env, timeout=timeout)

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = (self / "dockerd.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def close(self) -> None:
        with signals_held():
            close_all(self._stop, self._close_exec_root, self._del_netns, self.home.close)

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # a clean stop unmounts its overlays and stops its containerd
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass  # the exec root's and home's clean-ups kill it, and what it started, by PID

    def _close_exec_root(self) -> None:
        if self.exec_root is not None:
            self.exec_root.close()

    def _del_netns(self) -> None:
        if self._netns_added:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            if Path("/var/run/netns", self.netns).exists():
                raise BenchError(f"network namespace {self.netns} is still there")


# ---- containers ---------------------------------------------------------------------------------

_FULL_ID = re.compile(r"[0-9a-f]{64}")


def processes_of(ids: Collection[str]) -> list[int]:
    """PIDs that belong to the given containers (full 64-digit IDs): the ID is in the process's command
    line (pallet's monitor, conmon and containerd-shim name it) or in its cgroup paths (the container's
    own processes, under every engine's cgroupfs layout)."""
    wanted = {i for i in ids if _FULL_ID.fullmatch(i)}
    found: list[int] = []
    if not wanted:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = Path(entry.path, "cmdline").read_bytes().decode(errors="replace")
            text += Path(entry.path, "cgroup").read_text(errors="replace")
        except OSError:
            continue
        if wanted.intersection(_FULL_ID.findall(text)):
            found.append(int(entry.name))
    return found


def kill_pids(pids: Collection[int], wait: float = 5) -> list[int]:
    """SIGKILL each PID; return those still there after `wait` seconds (zombies count as gone)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    while True:
        left = [pid for pid in pids if _alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def vm_rss(pid: int) -> int:
    """Resident set size of a process in bytes (VmRSS in /proc/PID/status, which counts KiB)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError as e:
        raise BenchError(f"process {pid} is gone: {e}")
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"process {pid} has no VmRSS (a kernel thread, or exiting)")


# ---- output -------------------------------------------------------------------------------------

def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain text, columns padded; the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def fmt_range(stats: Stats, fmt: Callable[[float], str] = fmt_seconds) -> str:
    return f"{fmt(stats.min)}–{fmt(stats.max)}"


def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def fmt_rate(bytes_per_second: float) -> str:
    return f"{bytes_per_second / MB:.0f} MB/s"


def fmt_mib(size: float) -> str:
    return f"{size / MIB:.1f} MiB"
