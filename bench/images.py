"""Image loading benchmark: pallet against podman, in one run.

    .venv/bin/python -m bench.images [--runs N]

1. `load -i debian.tar` of a docker-archive of debian:bookworm (made once by `pallet image bootstrap`
   + `pallet save`; the bootstrap rootfs is cached under /var/cache/pallet/bootstrap, so only the very
   first run ever uses the Debian mirror);
2. `import ROOTFS.tar debian:imp` of the plain rootfs tar (the archive's single layer);
3. layer unpack throughput of `pallet.images.layers.unpack_layer`, called directly, on that layer and on
   a gzip copy of it, in MB/s of uncompressed tar bytes (GNU tar on the same input, for reference).

Every timed run starts from a fresh pallet root or a fresh private podman store (created and removed
outside the timed part, after an os.sync()); one warm-up precedes N runs, and the engines take turns.
Inputs are in the page cache. Scratch space is the temp dir (disk) unless --tmpdir says otherwise;
on a tmpfs (--tmpdir /dev/shm) the filesystem drops out and the engines' own costs remain. Needs root;
podman columns are left out, with a note, when podman is not installed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from bench.common import (
    BenchError,
    Podman,
    Scratch,
    Stats,
    compare,
    exit_on_sigterm,
    fmt_range,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    format_table,
    missing_tools,
    pallet_cli,
    run,
    timed,
)
from pallet.images.layers import open_decompressed, unpack_layer

IMAGE = "debian:bookworm"
IMPORTED = "debian:imp"
CHUNK = 1 << 20

PALLET = pallet_cli()


@dataclass(frozen=True)
class Inputs:
    archive: Path  # docker-archive of debian:bookworm, as `pallet save` writes it
    layer: Path  # its single layer, uncompressed: the rootfs tar
    layer_gz: Path  # the same, gzip-compressed


@dataclass(frozen=True)
class Operation:
    name: str
    pallet: Callable[[], float]
    podman: Callable[[], float] | None


# ---- inputs -------------------------------------------------------------------------------------

def prepare_inputs(work: Scratch) -> Inputs:
    seed = ["--root", str(work / "seed")]
    note(f"bootstrapping {IMAGE} (uses the cache under /var/cache/pallet/bootstrap when present)")
    run([PALLET, *seed, "image", "bootstrap", IMAGE], timeout=1800)
    inputs = Inputs(work / "debian.tar", work / "rootfs.tar", work / "rootfs.tar.gz")
    run([PALLET, *seed, "save", "-o", inputs.archive, IMAGE])
    extract_single_layer(inputs.archive, inputs.layer)
    gzip_copy(inputs.layer, inputs.layer_gz)
    shutil.rmtree(work / "seed")
    return inputs


def extract_single_layer(archive: Path, dest: Path) -> None:
    """Write the archive's only layer to dest as a plain tar, whatever its compression."""
    with tarfile.open(archive) as tf:
        manifest = json.load(_member(tf, "manifest.json"))
        layers = manifest[0]["Layers"]
        if len(layers) != 1:
            raise BenchError(f"{archive}: expected one layer, found {len(layers)}")
        with open(dest, "wb") as out:
            shutil.copyfileobj(open_decompressed(_member(tf, layers[0])), out, CHUNK)


def _member(tf: tarfile.TarFile, name: str) -> BinaryIO:
    f = tf.extractfile(name)
    if f is None:
        raise BenchError(f"{name} is not a regular file in the archive")
    return cast(BinaryIO, f)


def gzip_copy(src: Path, dest: Path) -> None:
    with open(src, "rb") as f, gzip.open(dest, "wb", compresslevel=6) as out:
        shutil.copyfileobj(f, out, CHUNK)


# ---- engine trials ------------------------------------------------------------------------------

def pallet_trial(args: Sequence[str | Path], check: str, parent: Path | None) -> Callable[[], float]:
    """Time `pallet --root FRESH ARGS`, then check that the image `check` exists (untimed)."""
    def trial() -> float:
        with Scratch(prefix="pallet-bench-root-", parent=parent) as root:
            state = ["--root", str(root / "state")]
            os.sync()
            seconds = timed(lambda: run([PALLET, *state, *args]))
            run([PALLET, *state, "inspect", "--type", "image", "--format", "{{.Id}}", check])
        return seconds
    return trial


def podman_trial(args: Sequence[str | Path], check: str, parent: Path | None) -> Callable[[], float]:
    """Time `podman --root FRESH --runroot FRESH ARGS`, then check that `check` exists (untimed)."""
    def trial() -> float:
        with Podman(parent=parent) as podman:
            os.sync()
            seconds = timed(lambda: podman(*args))
            podman("image", "inspect", "--format", "{{.Id}}", check)
        return seconds
    return trial


def engine_operations(inputs: Inputs, with_podman: bool, parent: Path | None) -> list[Operation]:
    load: list[str | Path] = ["load", "-i", inputs.archive]
    imp: list[str | Path] = ["import", inputs.layer, IMPORTED]
    return [
        Operation("load (docker-archive)", pallet_trial(load, IMAGE, parent),
                  podman_trial(load, IMAGE, parent) if with_podman else None),
        Operation("import (rootfs tar)", pallet_trial(imp, IMPORTED, parent),
                  podman_trial(imp, IMPORTED, parent) if with_podman else None),
    ]


def measure_engines(ops: list[Operation], runs: int) -> list[tuple[str, Stats, Stats | None]]:
    results: list[tuple[str, Stats, Stats | None]] = []
    for op in ops:
        note(f"{op.name}: 1 warm-up + {runs} runs per engine")
        trials = {"pallet": op.pallet, **({"podman": op.podman} if op.podman else {})}
        stats = compare(trials, runs)
        results.append((op.name, stats["pallet"], stats.get("podman")))
    return results


def engine_table(results: list[tuple[str, Stats, Stats | None]]) -> str:
    headers = ["operation", "pallet median", "podman median", "pallet/podman", "pallet min–max",
               "podman min–max"]
    rows = []
    for name, ours, theirs in results:
        rows.append([name, fmt_seconds(ours.median),
                     fmt_seconds(theirs.median) if theirs else "n/a",
                     fmt_ratio(ours.median, theirs.median) if theirs else "n/a",
                     fmt_range(ours), fmt_range(theirs) if theirs else "n/a"])
    return format_table(headers, rows)


# ---- unpack throughput --------------------------------------------------------------------------

def unpack_trial(layer: Path, work: Path) -> Callable[[], float]:
    """Time unpack_layer on `layer` into a fresh empty directory."""
    def trial() -> float:
        dest = Path(tempfile.mkdtemp(prefix="unpack-", dir=work))
        try:
            os.sync()
            with open(layer, "rb") as f:
                return timed(lambda: unpack_layer(f, dest))
        finally:
            shutil.rmtree(dest)
    return trial


def tar_trial(layer: Path, work: Path) -> Callable[[], float]:
    """The same with GNU tar (owners and modes kept, as unpack_layer does), for reference."""
    def trial() -> float:
        dest = Path(tempfile.mkdtemp(prefix="tar-", dir=work))
        try:
            os.sync()
            return timed(lambda: run(["tar", "--numeric-owner", "-xpf", layer, "-C", dest]))
        finally:
            shutil.rmtree(dest)
    return trial


def measure_unpack(inputs: Inputs, work: Path, runs: int) -> list[tuple[str, Stats]]:
    trials = {
        "unpack_layer, tar": unpack_trial(inputs.layer, work),
        "unpack_layer, tar.gz": unpack_trial(inputs.layer_gz, work),
    }
    if not missing_tools("tar"):
        trials["reference: GNU tar -x, tar"] = tar_trial(inputs.layer, work)
        trials["reference: GNU tar -x, tar.gz"] = tar_trial(inputs.layer_gz, work)
    note(f"layer unpack: 1 warm-up + {runs} runs each")
    tar_bytes = inputs.layer.stat().st_size
    return [(name, stats.per_second(tar_bytes)) for name, stats in compare(trials, runs).items()]


def unpack_table(results: list[tuple[str, Stats]]) -> str:
    headers = ["layer unpack", "median", "min–max"]
    return format_table(headers, [[name, fmt_rate(rate.median), fmt_range(rate, fmt_rate)]
                                  for name, rate in results])


# ---- main ---------------------------------------------------------------------------------------

def filesystem_of(path: Path) -> str:
    """'ext4 (/)': the type and mount point of the mount holding path."""
    target, best = str(path.resolve()), ("?", "")
    with open("/proc/self/mounts") as f:
        for line in f:
            point, fstype = line.split()[1:3]
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[1]):
                best = (fstype, point)
    return f"{best[0]} ({best[1]})"


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per operation (default 5)")
    parser.add_argument("--tmpdir", type=Path, default=None,
                        help="where the inputs, fresh roots and unpack directories go (default: the temp "
                             "dir, i.e. disk; a tmpfs such as /dev/shm takes the filesystem out of it)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench.images needs root (layer owners, podman's storage)", file=sys.stderr)
        return 1
    exit_on_sigterm()
    missing = missing_tools("podman")
    with Scratch(prefix="pallet-bench-images-", parent=args.tmpdir) as work:
        inputs = prepare_inputs(work)
        ops = engine_operations(inputs, with_podman=not missing, parent=args.tmpdir)
        engines = measure_engines(ops, args.runs)
        rates = measure_unpack(inputs, work.path, args.runs)
        sizes = {p.name: p.stat().st_size for p in (inputs.archive, inputs.layer, inputs.layer_gz)}
    print(f"image loading, {IMAGE}; medians of {args.runs} runs after 1 warm-up, each into a fresh root")
    print(f"scratch filesystem: {filesystem_of(args.tmpdir or Path(tempfile.gettempdir()))}")
    print("inputs: " + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sizes.items()))
    if missing:
        print("note: podman is not installed (apt-get install podman): its columns are left out")
    print()
    print(engine_table(engines))
    print()
    print(unpack_table(rates))
    print("(MB/s of uncompressed tar bytes, 1 MB = 10^6 bytes; the tar.gz rows include gunzip)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
