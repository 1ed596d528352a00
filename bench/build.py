"""Dockerfile build benchmark: pallet against BuildKit (docker) and podman build, in one run.

    .venv/bin/python -m bench.build [--runs N]

The reference Dockerfile: FROM busybox, RUN, COPY of a 10 MB file, ENV, CMD. Three measurements per
engine, each a whole CLI invocation:

1. cold: no build cache (a fresh pallet root / podman store with busybox loaded; for docker, its
   build cache pruned and the result removed); the base image is local in every case;
2. cached: the same build again with nothing changed;
3. cached, touched: the same, after touching the 10 MB file (same content, new mtime): every engine
   must see that nothing changed, from the content (pallet then also skips its build memo).

podman runs `build --layers --pull=never --network=none` with a private store (bench.common.Podman,
runc); docker runs `DOCKER_BUILDKIT=1 docker build` against a dockerd of its own, started in its own
network namespace with its own data and exec roots (PEERS.md), and stopped afterwards. An engine
that is not installed, or whose daemon does not come up, is left out with a note. Needs root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import (
    BenchError,
    Podman,
    Scratch,
    Stats,
    compare,
    exit_on_sigterm,
    fmt_range,
    fmt_ratio,
    fmt_seconds,
    format_table,
    missing_tools,
    pallet_cli,
    run,
    timed,
    unmount_below,
)

PALLET = pallet_cli()
DOCKERFILE = ('FROM busybox\nRUN echo hello > /hello\nCOPY big /big\nENV GREETING=hello\n'
              'CMD ["cat", "/hello"]\n')
BIG = 10 * 1024 * 1024
TAG = "bench-ref"
OPERATIONS = ("cold", "cached", "cached, touched")


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def prepare(work: Scratch) -> tuple[Path, Path]:
    """The build context, and a docker-archive of busybox made by pallet (loaded by every engine)."""
    context = work / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "big").write_bytes(os.urandom(BIG))
    seed = ["--root", str(work / "seed")]
    run([PALLET, *seed, "image", "bootstrap", "busybox"])
    archive = work / "busybox.tar"
    run([PALLET, *seed, "save", "-o", archive, "busybox"])
    return context, archive


def touch(path: Path) -> None:
    now = time.time()
    os.utime(path, (now, now))


# ---- pallet -------------------------------------------------------------------------------------

class PalletEngine:
    def __init__(self, work: Scratch, context: Path, archive: Path) -> None:
        self.work, self.context, self.archive = work, context, archive
        self.warm = self.root("warm")

    def root(self, name: str) -> list[str | Path]:
        path = self.work / f"pallet-{name}"
        shutil.rmtree(path, ignore_errors=True)
        argv: list[str | Path] = [PALLET, "--root", path]
        run([*argv, "load", "-i", self.archive])
        return argv

    def cold(self) -> float:
        argv = self.root("cold")
        os.sync()
        seconds = timed(lambda: run([*argv, "build", "-t", TAG, self.context]))
        unmount_below(self.work / "pallet-cold")
        return seconds

    def cached(self) -> float:
        return timed(lambda: run([*self.warm, "build", "-t", TAG, self.context]))

    def touched(self) -> float:
        touch(self.context / "big")
        return self.cached()


# ---- podman -------------------------------------------------------------------------------------

class PodmanEngine:
    ARGS = ("build", "--layers", "--pull=never", "--network=none", "-t", TAG)

    def __init__(self, work: Scratch, context: Path, archive: Path) -> None:
        self.work, self.context, self.archive = work, context, archive
        self.warm = Podman(runtime="runc", parent=work.path)
        self.warm("load", "-i", archive)

    def cold(self) -> float:
        with Podman(runtime="runc", parent=self.work.path) as podman:
            podman("load", "-i", self.archive)
            os.sync()
            return timed(lambda: podman(*self.ARGS, self.context))

    def cached(self) -> float:
        return timed(lambda: self.warm(*self.ARGS, self.context))

    def touched(self) -> float:
        touch(self.context / "big")
        return self.cached()

    def close(self) -> None:
        self.warm.close()


# ---- docker (BuildKit) --------------------------------------------------------------------------

class DockerEngine:
    """dockerd in its own network namespace, data and exec roots; stopped and removed by close()."""

    def __init__(self, work: Scratch, context: Path, archive: Path) -> None:
        self.work, self.context = work, context
        self.netns = f"pallet-bench-{os.getpid()}"
        self.exec_root = Path(f"/run/pallet-bench-docker-{os.getpid()}")
        self.sock = work / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}", "DOCKER_BUILDKIT": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        run(["ip", "netns", "add", self.netns])
        try:
            run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
            log = open(work / "dockerd.log", "wb")  # noqa: SIM115 - kept for the daemon's life
            self.proc = work.spawn(["nsenter", f"--net=/var/run/netns/{self.netns}", "dockerd", "-H",
                                    f"unix://{self.sock}", "--data-root", work / "docker", "--exec-root",
                                    self.exec_root, "--pidfile", self.exec_root / "dockerd.pid"],
                                   stdout=log, stderr=log)
            deadline = time.monotonic() + 60
            probe = ["/usr/bin/docker", "version"]
            while subprocess.run(probe, env=self.env, capture_output=True).returncode:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise BenchError("dockerd did not come up (see dockerd.log)")
                time.sleep(0.2)
            self.docker("load", "-i", archive)
        except BaseException:
            self.close()
            raise

    def docker(self, *args: str | Path) -> str:
        return run(["/usr/bin/docker", *args], env=self.env)

    def cold(self) -> float:
        subprocess.run(["/usr/bin/docker", "rmi", "-f", TAG], env=self.env, capture_output=True)
        self.docker("builder", "prune", "-af")
        os.sync()
        return timed(lambda: self.docker("build", "-t", TAG, self.context))

    def cached(self) -> float:
        return timed(lambda: self.docker("build", "-t", TAG, self.context))

    def touched(self) -> float:
        touch(self.context / "big")
        return self.cached()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # a clean stop unmounts its overlays and stops its containerd
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        unmount_below(self.exec_root)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


# ---- the run ------------------------------------------------------------------------------------

Engine = PalletEngine | PodmanEngine | DockerEngine


def measure(engines: dict[str, Engine], runs: int) -> dict[str, dict[str, Stats]]:
    results: dict[str, dict[str, Stats]] = {}
    for op in OPERATIONS:
        note(f"{op}: 1 warm-up + {runs} runs per engine, engines taking turns")
        trials: dict[str, Callable[[], float]] = {}
        for name, engine in engines.items():
            kinds = {"cold": engine.cold, "cached": engine.cached, "cached, touched": engine.touched}
            trials[name] = kinds[op]
        results[op] = compare(trials, runs)
    return results


def table(results: dict[str, dict[str, Stats]], names: list[str]) -> str:
    headers = ["build", *(f"{n} median" for n in names)]
    others = [n for n in names if n != "pallet"]
    headers += [f"pallet/{n}" for n in others] + [f"{n} min–max" for n in names]
    rows = []
    for op, stats in results.items():
        ours = stats["pallet"].median
        rows.append([op, *(fmt_seconds(stats[n].median) for n in names),
                     *(fmt_ratio(ours, stats[n].median) for n in others),
                     *(fmt_range(stats[n]) for n in names)])
    return format_table(headers, rows)


def start_engines(work: Scratch, context: Path, archive: Path, notes: list[str]) -> dict[str, Engine]:
    engines: dict[str, Engine] = {"pallet": PalletEngine(work, context, archive)}
    if missing_tools("dockerd", "nsenter", "ip") or not Path("/usr/bin/docker").exists():
        notes.append("docker (BuildKit) left out: dockerd or Debian's docker client is not installed")
    else:
        try:
            engines["buildkit"] = DockerEngine(work, context, archive)
        except BenchError as e:
            notes.append(f"docker (BuildKit) left out: {e}")
    if missing_tools("podman", "runc"):
        notes.append("podman left out: podman or runc is not installed")
    else:
        engines["podman"] = PodmanEngine(work, context, archive)
    return engines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per operation (default 5)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench.build needs root (mounts, namespaces, dockerd, podman's storage)", file=sys.stderr)
        return 1
    exit_on_sigterm()
    notes: list[str] = []
    with Scratch(prefix="pallet-bench-build-") as work:
        context, archive = prepare(work)
        engines = start_engines(work, context, archive, notes)
        try:
            results = measure(engines, args.runs)
        finally:
            for engine in engines.values():
                if isinstance(engine, (PodmanEngine, DockerEngine)):
                    engine.close()
    names = list(engines)
    print(f"Dockerfile build (FROM busybox, RUN, COPY 10 MB, ENV, CMD); medians of {args.runs} runs after "
          "1 warm-up; whole CLI invocations")
    for line in notes:
        print(f"note: {line}")
    print()
    print(table(results, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
