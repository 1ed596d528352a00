"""Network benchmark: pallet against podman and docker (when installed), in one run.

    .venv/bin/python -m bench.network [--runs N] [--seconds S] [--repeats R] [--connects N]

1. `run --rm busybox true` latency on the engine's default bridge network, with `--network none` as the
   baseline (pallet's extra cost of a network: namespace, veth, address, /etc files, and the release
   at exit);
2. TCP throughput between two containers on one user-defined network;
3. TCP throughput from the host to a published port: through 127.0.0.1 (pallet: its userland proxy,
   and with PALLET_USERLAND_PROXY=0 route_localnet + nftables DNAT) and through a non-loopback address
   of the host (nftables DNAT in the output hook);
4. connection setup latency through a published port: connect, 1-byte request and reply, close.

The traffic is generated and received by a small Python program run with `nsenter --net` inside the
containers' network namespaces (busybox has no tool that measures), so every engine is measured with
the same code; the containers themselves only sleep. Nothing leaves the machine: podman and docker run
in network namespaces of their own (PEERS.md), where their bridges, NAT rules and "host" live -- their
"host address" is the gateway of their bench network, pallet's the host's own address. podman gets a
CNI network of its own (its config dir and IPAM state in the scratch dir, nothing host-wide). Every
container, network, store, daemon and namespace is removed at the end, also on Ctrl-C. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from bench.common import (
    MB,
    BenchError,
    Scratch,
    Stats,
    compare,
    exit_on_sigterm,
    fmt_range,
    fmt_ratio,
    fmt_seconds,
    format_table,
    missing_tools,
    run,
    signals_held,
)
from bench.network_engines import (
    IMAGE,
    PALLET,
    DockerEngine,
    Engine,
    PalletEngine,
    PodmanEngine,
    remove_pallet_host_state,
)

SINK_PORT, ECHO_PORT = 5001, 5002

# Run as `python3 -I -c PROBE MODE ARGS...` inside a namespace.
PROBE = r"""
import json, socket, sys, threading, time
mode, args = sys.argv[1], sys.argv[2:]
def listener(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(512); print("ready", flush=True); return s
def connect(host, port):
    deadline = time.monotonic() + 10
    while True:
        try: return socket.create_connection((host, port), timeout=10)
        except OSError:
            if time.monotonic() > deadline: raise
            time.sleep(0.02)
if mode == "sink":
    c, _ = listener(int(args[0])).accept(); buf = bytearray(1 << 20); n = 0; t0 = None
    while True:
        k = c.recv_into(buf)
        if not k: break
        if t0 is None: t0 = time.perf_counter()
        n += k
    print(json.dumps({"bytes": n, "seconds": time.perf_counter() - (t0 or time.perf_counter())}), flush=True)
elif mode == "send":
    c = connect(args[0], int(args[1])); data = memoryview(bytes(1 << 20))
    end = time.monotonic() + float(args[2])
    while time.monotonic() < end: c.sendall(data)
    c.close()
elif mode == "echo":
    s = listener(int(args[0]))
    def serve(c):
        with c:
            b = c.recv(1)
            if b: c.sendall(b)
    while True:
        c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
elif mode == "connects":
    host, port, n = args[0], int(args[1]), int(args[2]); connect(host, port).close(); out = []
    for _ in range(n):
        t0 = time.perf_counter(); c = socket.create_connection((host, port), timeout=10)
        c.sendall(b"x"); c.recv(1); c.close(); out.append(time.perf_counter() - t0)
    print(json.dumps(out), flush=True)
"""


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def probe_argv(netns: str | None, *args: str | float) -> list[str]:
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    return [*prefix, sys.executable, "-I", "-c", PROBE, *(str(a) for a in args)]


# ---- measurements -------------------------------------------------------------------------------


class Probe:
    """A long-running probe (sink or echo server) inside a namespace; ready when it says so."""

    def __init__(self, netns: str | None, *args: str | int) -> None:
        self.proc = subprocess.Popen(probe_argv(netns, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            self.stop()
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise BenchError(f"probe {args[0]} did not start: {err.strip()}")

    def result(self, timeout: float = 60) -> object:
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise BenchError(f"probe failed: {err.decode(errors='replace').strip()}")
        return json.loads(out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def throughput(
    server_ns: str | None,
    client_ns: str | None,
    host: str,
    port: int,
    seconds: float,
    server_port: int = SINK_PORT,
) -> float:
    """Bytes per second of one connection, measured by the receiver (first byte to EOF)."""
    sink = Probe(server_ns, "sink", server_port)
    try:
        run(probe_argv(client_ns, "send", host, port, seconds), timeout=seconds + 60)
        got = sink.result()
    finally:
        sink.stop()
    assert isinstance(got, dict)
    if not got["bytes"] or not got["seconds"]:
        raise BenchError(f"nothing arrived through {host}:{port}")
    return float(got["bytes"]) / float(got["seconds"])


def connect_latency(client_ns: str | None, host: str, port: int, n: int) -> Stats:
    out = run(probe_argv(client_ns, "connects", host, port, n), timeout=120)
    return Stats(tuple(json.loads(out)))


class Paths:
    """The containers and published ports one engine's traffic measurements use."""

    def __init__(self, engine: Engine, nat_env: dict[str, str] | None = None) -> None:
        e = engine
        self.a = e.sleeper("bench-a", "--network", e.user_network)
        self.b = e.sleeper("bench-b", "--network", e.user_network)
        self.a_ip = e.address(self.a, e.user_network)
        self.sink_port, self.echo_port = free_port(), free_port()
        publish = ["-p", f"{self.sink_port}:{SINK_PORT}", "-p", f"{self.echo_port}:{ECHO_PORT}"]
        self.pub = e.sleeper("bench-pub", *e.bridge_args, *publish)
        self.ns = {cid: e.netns(cid) for cid in (self.a, self.b, self.pub)}
        self.nat: str | None = None
        if nat_env is not None:  # pallet only: loopback through route_localnet + DNAT instead of the proxy
            self.nat_sink, self.nat_echo = free_port(), free_port()
            flags = [
                "-p",
                f"127.0.0.1:{self.nat_sink}:{SINK_PORT}",
                "-p",
                f"127.0.0.1:{self.nat_echo}:{ECHO_PORT}",
            ]
            self.nat = e.sleeper("bench-nat", *e.bridge_args, *flags, env=nat_env)
            self.ns[self.nat] = e.netns(self.nat)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure_traffic(
    engine: Engine, p: Paths, seconds: float, repeats: int, connects: int, results: dict[str, dict[str, str]]
) -> None:
    e, host = engine, engine.host_netns
    addr = e.host_addr()
    flows: list[tuple[str, str | None, str | None, str, int]] = [
        ("container -> container (user network)", p.ns[p.a], p.ns[p.b], p.a_ip, SINK_PORT),
        ("host -> published port, 127.0.0.1", p.ns[p.pub], host, "127.0.0.1", p.sink_port),
        ("host -> published port, host address", p.ns[p.pub], host, addr, p.sink_port),
    ]
    if p.nat:
        flows.insert(
            2,
            (
                "host -> published port, 127.0.0.1 (no proxy: DNAT)",
                p.ns[p.nat],
                host,
                "127.0.0.1",
                p.nat_sink,
            ),
        )
    for label, server_ns, client_ns, target, port in flows:
        try:
            rates = [throughput(server_ns, client_ns, target, port, seconds) for _ in range(repeats)]
            results.setdefault(label, {})[e.name] = f"{Stats(tuple(rates)).median / MB:,.0f} MB/s"
        except (BenchError, subprocess.TimeoutExpired) as err:
            results.setdefault(label, {})[e.name] = "n/a"
            note(f"{e.name}: {label}: {err}")
    echo_targets = [
        ("connect + 1-byte echo + close, 127.0.0.1", p.pub, "127.0.0.1", p.echo_port),
        ("connect + 1-byte echo + close, host address", p.pub, addr, p.echo_port),
    ]
    if p.nat:
        echo_targets.insert(
            1, ("connect + 1-byte echo + close, 127.0.0.1 (no proxy: DNAT)", p.nat, "127.0.0.1", p.nat_echo)
        )
    for label, server, target, port in echo_targets:
        server_probe = Probe(p.ns[server], "echo", ECHO_PORT)
        try:
            lat = connect_latency(host, target, port, connects)
            results.setdefault(label, {})[e.name] = f"{lat.median * 1e6:,.0f} µs"
        except (BenchError, subprocess.TimeoutExpired) as err:
            results.setdefault(label, {})[e.name] = "n/a"
            note(f"{e.name}: {label}: {err}")
        finally:
            server_probe.stop()


# ---- the run ------------------------------------------------------------------------------------


def prepare(work: Scratch) -> Path:
    seed = ["--root", str(work / "seed")]
    run([PALLET, *seed, "image", "bootstrap", IMAGE])
    archive = work / "busybox.tar"
    run([PALLET, *seed, "save", "-o", archive, IMAGE])
    remove_pallet_host_state(work / "seed")
    return archive


def start_engines(work: Scratch, archive: Path, stack: ExitStack, notes: list[str]) -> list[Engine]:
    pallet = PalletEngine(work, archive)
    stack.callback(pallet.close)
    engines: list[Engine] = [pallet]
    starters: list[tuple[str, Callable[[], Engine], list[str]]] = [
        ("podman", lambda: PodmanEngine(work, archive), ["podman", "conmon", "runc", "nsenter"]),
        ("docker", lambda: DockerEngine(work, archive), ["dockerd", "nsenter", "iptables"]),
    ]
    for name, start, tools in starters:
        missing = missing_tools(*tools)
        if missing:
            notes.append(f"{name} left out: {', '.join(missing)} not installed")
            continue
        note(f"{name}: a private store in a network namespace of its own, loading busybox")
        try:
            engine = start()
        except BenchError as err:
            notes.append(f"{name} left out: {err}")
            continue
        stack.callback(engine.close)
        try:
            engine.run_rm("bridge")
        except BenchError as err:
            notes.append(f"{name} left out: its bridge network does not work here: {err}")
            continue
        engines.append(engine)
    return engines


def latency_table(engines: list[Engine], stats: dict[str, Stats]) -> str:
    ref = "podman bridge" if "podman bridge" in stats else None
    rows = []
    for e in engines:
        for net in ("bridge", "none"):
            key = f"{e.name} {net}"
            s = stats[key]
            vs = fmt_ratio(s.median, stats[ref].median) if ref else "-"
            extra = fmt_seconds(s.median - stats[f"{e.name} none"].median) if net == "bridge" else ""
            rows.append([key, fmt_seconds(s.median), fmt_range(s), extra, vs])
    return format_table(
        ["engine, network", "run --rm true", "min–max", "bridge − none", "/ podman bridge"], rows
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.network", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--runs", type=int, default=10, help="timed `run --rm` per engine and network (default 10)"
    )
    ap.add_argument(
        "--seconds", type=float, default=1.5, help="length of one throughput transfer (default 1.5)"
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="throughput transfers per path (median; default 3)"
    )
    ap.add_argument("--connects", type=int, default=300, help="connections per latency path (default 300)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench.network needs root (namespaces, bridges, nftables)", file=sys.stderr)
        return 1
    exit_on_sigterm()
    notes: list[str] = []
    traffic: dict[str, dict[str, str]] = {}
    began = time.monotonic()
    with Scratch(prefix="pallet-bench-network-") as work:
        stack = ExitStack()
        try:
            note("bootstrapping busybox with pallet, saving it for the other engines")
            archive = prepare(work)
            engines = start_engines(work, archive, stack, notes)
            trials = {
                f"{e.name} {net}": (lambda e=e, net=net: e.run_rm(net))
                for e in engines
                for net in ("bridge", "none")
            }
            note(f"run --rm: 1 warm-up + {args.runs} runs per engine and network, taking turns")
            latency = compare(trials, args.runs)
            for e in engines:
                note(f"{e.name}: throughput and connection latency")
                nat_env = {"PALLET_USERLAND_PROXY": "0"} if isinstance(e, PalletEngine) else None
                measure_traffic(e, Paths(e, nat_env), args.seconds, args.repeats, args.connects, traffic)
                e.remove_containers()
        finally:
            note("cleaning up")
            with signals_held():
                stack.close()
    names = [e.name for e in engines]
    print(
        f"Network benchmark, busybox; {args.runs} runs of run --rm after 1 warm-up; throughput: median of "
        f"{args.repeats} x {args.seconds:g} s; latency: median of {args.connects} connections; "
        f"{time.monotonic() - began:.0f} s in all"
    )
    for line in notes:
        print(f"note: {line}")
    print()
    print(latency_table(engines, latency))
    print()
    rows = [[label, *(values.get(n, "-") for n in names)] for label, values in traffic.items()]
    print(format_table(["path", *names], rows))
    print('(peers: the "host" is their own network namespace, the host address their network\'s gateway)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
