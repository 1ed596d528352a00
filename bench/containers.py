"""Container lifecycle benchmark: pallet against podman (crun, runc) and docker, in one run.

    .venv/bin/python -m bench.containers [--runs N] [--batch-runs N]

1. `run --rm --network none busybox true` latency (pallet with its default runtime, and with
   `--runtime crun` / `--runtime runc` as extra rows);
2. `exec CONTAINER true` latency into a running `busybox sleep 1000` container;
3. throughput: 50 x `run -d --network none busybox sleep 1000`, then one `rm -f` of all 50: the wall
   time of the whole batch, per container, and of each phase (podman gets `rm -f -t 0`: its plain
   `rm -f` waits 10 s for the stop signal before SIGKILL, where docker's and pallet's SIGKILL at once);
4. resident memory (VmRSS) of the per-container process that watches one idle container: pallet's
   monitor (`<root>/run/containers/<id>/monitor.pid`), podman's conmon (`.State.ConmonPid`), docker's
   containerd-shim (the parent of `.State.Pid`); docker's daemons (dockerd, containerd) are shared by all
   containers and not counted.

Every engine runs the same image: busybox made by `pallet image bootstrap`, saved by `pallet save`, and
that archive loaded by pallet, podman and docker. All commands are whole CLI invocations; every
container uses `--network none`. Latencies are 1 warm-up + N runs with the engines taking turns; the
batch runs M rounds (no warm-up: the latency runs warmed everything up). podman has a private store per
runtime (bench.common.Podman); docker is a dockerd of its own in its own network namespace
(bench.common.Dockerd, without a bridge). An engine that is not installed, or cannot run here, is left
out with a note. Every container, store, daemon and temp dir is removed at the end, also on Ctrl-C,
and the removal is checked. Needs root.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from bench.common import (
    MB,
    MIB,
    BenchError,
    Dockerd,
    Podman,
    Scratch,
    Stats,
    close_all,
    compare,
    exit_on_sigterm,
    fmt_mib,
    fmt_range,
    fmt_ratio,
    fmt_seconds,
    format_table,
    kill_pids,
    missing_tools,
    pallet_cli,
    processes_of,
    run,
    signals_held,
    timed,
    vm_rss,
)

PALLET = pallet_cli()
IMAGE = "busybox"
BATCH = 50
RSS_SETTLE = 2.0  # seconds an idle container sits before its monitor's RSS is read
RSS_SAMPLES = 5
# issue 3's targets, for pallet with its default runtime
RUN_TARGET = 0.3  # x podman run (crun)
EXEC_TARGET = 0.5  # x podman exec (crun)
RSS_TARGET = 12 * MB  # judged in decimal megabytes, the stricter reading (12 MiB would be 12.6 MB)


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


# ---- engines ------------------------------------------------------------------------------------

class Store:
    """One engine's state (a pallet root, a podman store, a dockerd) and its CLI. Keeps every container
    ID it has seen so that close() can remove them and check that none of their processes is left."""

    process = "monitor"  # what watches a container: pallet's monitor, conmon, containerd-shim
    rm_flags: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.created: set[str] = set()
        self.live: set[str] = set()

    def cli(self, *args: str | Path, timeout: float = 120) -> str:
        raise NotImplementedError

    def monitor_pid(self, cid: str) -> int:
        raise NotImplementedError

    def close_store(self) -> None:
        raise NotImplementedError

    def remove(self, ids: Sequence[str]) -> None:
        self.cli("rm", "-f", *self.rm_flags, *ids, timeout=300)
        self.live.difference_update(ids)

    def close(self) -> None:
        """Remove every container (the ones we know and whatever `ps -a` lists, e.g. one whose `run` was
        interrupted), kill any of their processes still there, then remove the store."""
        with signals_held():
            close_all(self._remove_all, self.close_store)

    def _remove_all(self) -> None:
        ids = set(self.live)
        try:
            ids.update(self.cli("ps", "-aq", "--no-trunc", timeout=60).split())
        except BenchError as e:
            note(f"listing containers failed: {e}")
        self.created.update(ids)
        if ids:
            try:
                self.remove(sorted(ids))
            except BenchError as e:
                note(f"removing containers failed: {e}")
        left = processes_of(self.created)
        if left:
            note(f"killing {len(left)} leftover container processes: {left}")
            kill_pids(left)


class PalletStore(Store):
    def __init__(self, work: Scratch, archive: Path) -> None:
        super().__init__()
        self.root = Scratch(prefix="pallet-", parent=work.path)
        self.argv: list[str | Path] = [PALLET, "--root", self.root.path]
        try:
            self.cli("load", "-i", archive)
        except BaseException:
            self.root.close()
            raise

    def cli(self, *args: str | Path, timeout: float = 120) -> str:
        return run([*self.argv, *args], timeout=timeout)

    def monitor_pid(self, cid: str) -> int:
        # "PID STARTTIME"; the run root of a non-default root is <root>/run
        return int((self.root / "run" / "containers" / cid / "monitor.pid").read_text().split()[0])

    def close_store(self) -> None:
        self.root.close()


class PodmanStore(Store):
    process = "conmon"
    # podman's rm -f sends the stop signal and waits --time (10 s) before SIGKILL; `sleep` as PID 1
    # ignores SIGTERM, so that is 10 s per container. docker's and pallet's rm -f SIGKILL at once.
    rm_flags = ("-t", "0")

    def __init__(self, work: Scratch, archive: Path, runtime: str) -> None:
        super().__init__()
        self.podman = Podman(runtime=runtime, parent=work.path)
        try:
            self.cli("load", "-i", archive)
        except BaseException:
            self.podman.close()
            raise

    def cli(self, *args: str | Path, timeout: float = 120) -> str:
        return self.podman(*args, timeout=timeout)

    def monitor_pid(self, cid: str) -> int:
        return int(self.cli("inspect", "--format", "{{.State.ConmonPid}}", cid))

    def close_store(self) -> None:
        self.podman.close()


class DockerStore(Store):
    process = "containerd-shim"

    def __init__(self, work: Scratch, archive: Path) -> None:
        super().__init__()
        # Only --network none containers run: no bridge, no NAT rules (in its netns anyway).
        self.dockerd = Dockerd(parent=work.path, extra_args=["--bridge=none", "--iptables=false"])
        try:
            self.cli("load", "-i", archive)
        except BaseException:
            self.dockerd.close()
            raise

    def cli(self, *args: str | Path, timeout: float = 120) -> str:
        return self.dockerd(*args, timeout=timeout)

    def monitor_pid(self, cid: str) -> int:
        init = int(self.cli("inspect", "--format", "{{.State.Pid}}", cid))
        status = Path(f"/proc/{init}/status").read_text().splitlines()
        shim = int(next(line.split()[1] for line in status if line.startswith("PPid:")))
        name = Path(f"/proc/{shim}/comm").read_text().strip()
        if not name.startswith("containerd-shim"):
            raise BenchError(f"the parent of container {cid[:12]}'s init is {name}, not a containerd-shim")
        return shim

    def close_store(self) -> None:
        self.dockerd.close()


class Row:
    """One row of the tables: an engine's store, plus run flags (pallet's --runtime)."""

    def __init__(self, name: str, store: Store, run_flags: Sequence[str] = ()) -> None:
        self.name, self.store, self.run_flags = name, store, list(run_flags)

    def run_rm(self) -> float:
        argv = ["run", "--rm", *self.run_flags, "--network", "none", IMAGE, "true"]
        return timed(lambda: self.store.cli(*argv))

    def start(self) -> str:
        """`run -d ... sleep 1000`; the container ID is recorded before anything else can fail."""
        argv = ["run", "-d", *self.run_flags, "--network", "none", IMAGE, "sleep", "1000"]
        cid = self.store.cli(*argv).strip()
        if not cid:
            raise BenchError(f"{self.name}: run -d printed no container ID")
        cid = cid.splitlines()[-1]
        self.store.created.add(cid)
        self.store.live.add(cid)
        return cid

    def exec_true(self, cid: str) -> float:
        return timed(lambda: self.store.cli("exec", cid, "true"))

    def batch(self, phases: list[tuple[float, float]]) -> float:
        """50 x run -d, then one rm -f of all 50; appends (run phase, rm phase), returns the total."""
        start = time.perf_counter()
        ids = [self.start() for _ in range(BATCH)]
        started = time.perf_counter()
        self.store.remove(ids)
        done = time.perf_counter()
        phases.append((started - start, done - started))
        return done - start


# ---- set-up -------------------------------------------------------------------------------------

def prepare(work: Scratch) -> Path:
    """busybox bootstrapped by pallet and saved as a docker-archive, which every engine loads."""
    seed = ["--root", str(work / "seed")]
    run([PALLET, *seed, "image", "bootstrap", IMAGE])
    archive = work / "busybox.tar"
    run([PALLET, *seed, "save", "-o", archive, IMAGE])
    return archive


def crun_blocker() -> str | None:
    """Why crun cannot run here, or None. On a cgroup v1 host with a v2 mount (hybrid), crun refuses to
    run unless hugetlb is also mounted as a v1 hierarchy (scripts/setup does that; PEERS.md)."""
    if missing_tools("crun"):
        return "crun is not installed"
    cgroup = Path("/sys/fs/cgroup")
    if (cgroup / "cgroup.controllers").exists():
        return None  # cgroup v2 only
    hybrid = (cgroup / "memory").is_dir() and "hugetlb" in Path("/proc/cgroups").read_text()
    if hybrid and not os.path.ismount(cgroup / "hugetlb"):
        return ("/sys/fs/cgroup/hugetlb is not a mount: crun refuses hybrid cgroups until hugetlb is mounted "
                "as v1 (scripts/setup does it)")
    return None


def probe(row: Row, notes: list[str]) -> bool:
    """One `run --rm ... true`: can this engine run a container here at all?"""
    try:
        row.run_rm()
    except BenchError as e:
        notes.append(f"{row.name} left out: {e}")
        return False
    return True


def start_engines(work: Scratch, archive: Path, stack: ExitStack, notes: list[str]) -> list[Row]:
    """Stores are registered on stack (closed in reverse order, also on Ctrl-C) as soon as they exist."""
    crun_why = crun_blocker()
    runc_why = "runc is not installed" if missing_tools("runc") else None
    pallet = PalletStore(work, archive)
    stack.callback(pallet.close)
    candidates = [Row("pallet", pallet)]
    for runtime, why in (("crun", crun_why), ("runc", runc_why)):
        if why:
            notes.append(f"pallet --runtime {runtime} left out: {why}")
        else:
            candidates.append(Row(f"pallet --runtime {runtime}", pallet, ["--runtime", runtime]))
    if missing_tools("podman", "conmon"):
        notes.append("podman left out: podman or conmon is not installed")
    else:
        for runtime, why in (("crun", crun_why), ("runc", runc_why)):
            if why:
                notes.append(f"podman ({runtime}) left out: {why}")
                continue
            note(f"podman ({runtime}): private store, loading busybox")
            store = PodmanStore(work, archive, runtime)
            stack.callback(store.close)
            candidates.append(Row(f"podman ({runtime})", store))
    if missing_tools("dockerd", "nsenter", "ip") or not (Path("/usr/bin/docker").exists()
                                                         or shutil.which("docker")):
        notes.append("docker left out: dockerd, nsenter, ip or a docker client is not installed")
    else:
        note("docker: starting a private dockerd in its own network namespace, loading busybox")
        try:
            docker = DockerStore(work, archive)
        except BenchError as e:
            notes.append(f"docker left out: {e}")
        else:
            stack.callback(docker.close)
            candidates.append(Row("docker", docker))
    return [row for row in candidates if probe(row, notes)]


# ---- measurements -------------------------------------------------------------------------------

def measure_rss(rows: list[Row]) -> dict[str, Stats]:
    """One idle `sleep 1000` container per row; after RSS_SETTLE seconds, its watcher's VmRSS,
    RSS_SAMPLES times (a tenth of a second apart, rows in turn); then the containers are removed."""
    started = [(row, row.start()) for row in rows]
    try:
        pids = {row.name: row.store.monitor_pid(cid) for row, cid in started}
        time.sleep(RSS_SETTLE)
        samples: dict[str, list[float]] = {row.name: [] for row in rows}
        for _ in range(RSS_SAMPLES):
            for row in rows:
                samples[row.name].append(vm_rss(pids[row.name]))
            time.sleep(0.1)
    finally:
        for row, cid in started:
            if cid in row.store.live:
                row.store.remove([cid])
    return {name: Stats(tuple(values)) for name, values in samples.items()}


def measure_exec(rows: list[Row], runs: int) -> dict[str, Stats]:
    targets = {row.name: row.start() for row in rows}
    try:
        trials: dict[str, Callable[[], float]] = {
            row.name: functools.partial(row.exec_true, targets[row.name]) for row in rows}
        return compare(trials, runs)
    finally:
        for row in rows:
            cid = targets.get(row.name)
            if cid is not None and cid in row.store.live:
                row.store.remove([cid])


def measure_batch(rows: list[Row], runs: int) -> tuple[dict[str, Stats], dict[str, Stats], dict[str, Stats]]:
    """Totals, run -d phases and rm -f phases of the batch, per row."""
    phases: dict[str, list[tuple[float, float]]] = {row.name: [] for row in rows}
    trials: dict[str, Callable[[], float]] = {
        row.name: functools.partial(row.batch, phases[row.name]) for row in rows}
    totals = compare(trials, runs, warmup=0)
    starts = {name: Stats(tuple(p[0] for p in values)) for name, values in phases.items()}
    removes = {name: Stats(tuple(p[1] for p in values)) for name, values in phases.items()}
    return totals, starts, removes


# ---- output -------------------------------------------------------------------------------------

def reference(names: list[str]) -> str | None:
    """What pallet is held against: podman with crun (issue 3), else podman with runc."""
    return next((n for n in ("podman (crun)", "podman (runc)") if n in names), None)


def latency_table(names: list[str], runs: dict[str, Stats], execs: dict[str, Stats]) -> str:
    ref = reference(names)
    vs = f"/ {ref}" if ref else "/ podman"
    rows = []
    for n in names:
        rows.append([n, fmt_seconds(runs[n].median), fmt_range(runs[n]),
                     fmt_ratio(runs[n].median, runs[ref].median) if ref else "-",
                     fmt_seconds(execs[n].median), fmt_range(execs[n]),
                     fmt_ratio(execs[n].median, execs[ref].median) if ref else "-"])
    return format_table(["engine", "run --rm true", "min–max", vs, "exec true", "min–max", vs], rows)


def batch_table(names: list[str], totals: dict[str, Stats], starts: dict[str, Stats],
                removes: dict[str, Stats]) -> str:
    rows = []
    for n in names:
        per = Stats(tuple(s / BATCH for s in totals[n].samples))
        rows.append([n, fmt_seconds(totals[n].median), fmt_range(totals[n]), fmt_seconds(per.median),
                     fmt_seconds(starts[n].median), fmt_seconds(removes[n].median)])
    headers = ["engine", f"{BATCH} x run -d + rm -f", "min–max", "per container", f"{BATCH} x run -d",
               f"rm -f of {BATCH}"]
    return format_table(headers, rows)


def rss_table(rows: list[Row], rss: dict[str, Stats]) -> str:
    lines = []
    for row in rows:
        s = rss[row.name]
        lines.append([row.name, row.store.process, fmt_mib(s.median), fmt_range(s, fmt_mib),
                      f"{s.median / MB:.1f} MB"])
    return format_table(["engine", "per-container process", "VmRSS", "min–max", "(decimal)"], lines)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def targets(names: list[str], runs: dict[str, Stats], execs: dict[str, Stats], rss: dict[str, Stats]) -> str:
    ref = reference(names)
    lines = ["issue-3 targets (pallet with its default runtime):"]
    if ref is None:
        lines.append("  run and exec latency: cannot be checked, podman is not in this run")
    else:
        caveat = "" if ref == "podman (crun)" else "  (crun cannot run here: held against runc instead)"
        checks = (("run --rm latency", runs, RUN_TARGET), ("exec latency", execs, EXEC_TARGET))
        for label, stats, goal in checks:
            ours, theirs = stats["pallet"].median, stats[ref].median
            lines.append(f"  {label:<17} <= {goal:.1f} x {ref}: {fmt_seconds(ours)} / {fmt_seconds(theirs)}"
                         f" = {ours / theirs:.2f}x  -> {verdict(ours <= goal * theirs)}{caveat}")
    mem = rss["pallet"].median
    lines.append(f"  {'idle monitor RSS':<17} <= 12 MB: {mem / MB:.1f} MB ({mem / MIB:.1f} MiB)  -> "
                 f"{verdict(mem <= RSS_TARGET)}")
    return "\n".join(lines)


# ---- the run ------------------------------------------------------------------------------------

def verify_clean(stores: list[Store], work_path: Path, docker: bool) -> str:
    """After every store and scratch dir is closed: no process of any container we saw, no temp dir."""
    created = set().union(*(s.created for s in stores)) if stores else set()
    left = processes_of(created)
    if left:
        raise BenchError(f"container processes left behind: {left}")
    if work_path.exists():
        raise BenchError(f"{work_path} is still there")
    daemon = "; dockerd stopped, its exec root and network namespace removed" if docker else ""
    return (f"clean-up checked: {len(created)} containers, none of their processes left; no mounts or "
            f"temp dirs left{daemon}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.containers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of run and exec (default 10)")
    parser.add_argument("--batch-runs", type=int, default=3,
                        help=f"rounds of the {BATCH}-container batch (default 3)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.batch_runs < 1:
        parser.error("--runs and --batch-runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench.containers needs root (namespaces, mounts, cgroups, dockerd, podman)", file=sys.stderr)
        return 1
    exit_on_sigterm()
    notes: list[str] = []
    stores: list[Store] = []
    began = time.monotonic()
    with Scratch(prefix="pallet-bench-containers-") as work:
        work_path = work.path
        stack = ExitStack()
        try:
            note("bootstrapping busybox with pallet, saving it for the other engines")
            archive = prepare(work)
            rows = start_engines(work, archive, stack, notes)
            stores = list({id(r.store): r.store for r in rows}.values())
            names = [row.name for row in rows]
            note(f"engines: {', '.join(names)}")
            note(f"run --rm true: 1 warm-up + {args.runs} runs per engine, engines taking turns")
            runs = compare({row.name: row.run_rm for row in rows}, args.runs)
            note(f"exec true: 1 warm-up + {args.runs} runs per engine, engines taking turns")
            execs = measure_exec(rows, args.runs)
            note(f"{BATCH} x run -d + rm -f: {args.batch_runs} rounds, engines taking turns")
            totals, starts, removes = measure_batch(rows, args.batch_runs)
            note(f"idle monitor RSS: one container per engine, {RSS_SETTLE:.0f} s idle, "
                 f"{RSS_SAMPLES} readings")
            rss = measure_rss(rows)
        finally:
            note("cleaning up")
            with signals_held():  # the stores close in reverse order, none of them cut short
                stack.close()
    clean = verify_clean(stores, work_path, any(isinstance(s, DockerStore) for s in stores))
    print(f"Containers: busybox, --network none, whole CLI invocations; run/exec: medians of {args.runs} "
          f"runs after 1 warm-up; batch: medians of {args.batch_runs} rounds; "
          f"{time.monotonic() - began:.0f} s in all")
    for line in notes:
        print(f"note: {line}")
    print()
    print(latency_table(names, runs, execs))
    print()
    print(batch_table(names, totals, starts, removes))
    if any(isinstance(s, PodmanStore) for s in stores):
        print("(podman: `rm -f -t 0`; its plain rm -f waits 10 s for SIGTERM, which `sleep` as PID 1 "
              "ignores, before SIGKILL)")
    print()
    print(rss_table(rows, rss))
    print("(VmRSS of the process that watches an idle container; docker's dockerd and containerd are "
          "shared by all containers and not counted)")
    print()
    print(targets(names, runs, execs, rss))
    print()
    print(clean)
    return 0


if __name__ == "__main__":
    sys.exit(main())
