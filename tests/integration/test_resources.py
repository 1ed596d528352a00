"""Resource limits: docker's flags into HostConfig and the container's cgroup (v1 or v2), enforced on
every runtime; impossible limits refused before anything is created."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cgroup_cleanup import inspect

from conftest import Pallet, needs_root

pytestmark = [needs_root(), pytest.mark.integration]

CGROUP = Path("/sys/fs/cgroup")
UNIFIED = (CGROUP / "cgroup.controllers").exists()


def sh(p: Pallet, script: str, *flags: str) -> subprocess.CompletedProcess[bytes]:
    return p("run", "--rm", *flags, "busybox", "sh", "-c", script, check=False, timeout=60)


def cgroup_file(controller: str, cid: str, name: str) -> str:
    base = CGROUP if UNIFIED else CGROUP / controller
    return (base / "pallet" / cid / name).read_text().strip()


def test_memory_limit_kills_a_hog(runtime_busybox: Pallet) -> None:
    hog = "x=a; while :; do x=$x$x; done"
    proc = runtime_busybox("run", "--name", "hog", "--memory", "32m", "busybox", "sh", "-c", hog, check=False)
    assert proc.returncode == 137
    state = inspect(runtime_busybox, "hog")["State"]
    assert (state["ExitCode"], state["OOMKilled"]) == (137, True)


def test_pids_limit_contains_a_fork_bomb(runtime_busybox: Pallet) -> None:
    script = "for i in $(seq 100); do sleep 30 & done; wait"
    proc = sh(runtime_busybox, script, "--pids-limit", "32")
    # The shell can't fork past the limit; as pid 1 it exits, and its children go with it.
    assert proc.returncode != 0
    assert b"can't fork" in proc.stderr
    assert subprocess.run(["true"]).returncode == 0  # the host still forks
    assert runtime_busybox.out("ps", "-q") == ""


def test_limits_reach_the_cgroup(runtime_busybox: Pallet) -> None:
    flags = "--cpus 0.5 -m 64m --memory-reservation 32m --pids-limit 50 --cpu-shares 512 --cpuset-cpus 0"
    cid = runtime_busybox.out("run", "-d", *flags.split(), "busybox", "sleep", "60").strip()
    try:
        if UNIFIED:
            assert cgroup_file("cpu", cid, "cpu.max") == "50000 100000"
            assert cgroup_file("memory", cid, "memory.max") == str(64 << 20)
        else:
            assert cgroup_file("cpu", cid, "cpu.cfs_quota_us") == "50000"
            assert cgroup_file("cpu", cid, "cpu.cfs_period_us") == "100000"
            assert cgroup_file("cpu", cid, "cpu.shares") == "512"
            assert cgroup_file("memory", cid, "memory.limit_in_bytes") == str(64 << 20)
            assert cgroup_file("memory", cid, "memory.soft_limit_in_bytes") == str(32 << 20)
            if os.path.exists(CGROUP / "memory" / "pallet" / cid / "memory.memsw.limit_in_bytes"):
                # docker's default swap: as much as the memory limit again
                assert cgroup_file("memory", cid, "memory.memsw.limit_in_bytes") == str(128 << 20)
        assert cgroup_file("pids", cid, "pids.max") == "50"
        assert cgroup_file("cpuset", cid, "cpuset.cpus") == "0"
    finally:
        runtime_busybox("rm", "-f", cid)


def test_host_config_fields(busybox: Pallet) -> None:
    flags = "--cpus 1.5 -m 64m --memory-swap -1 --pids-limit 50 --cpu-shares 1024 --cpuset-cpus 0 "
    flags += "--oom-kill-disable --memory-swappiness=10"
    busybox("create", "--name", "res", *flags.split(), "busybox")
    hc = inspect(busybox, "res")["HostConfig"]
    assert hc["NanoCpus"] == 1_500_000_000 and hc["CpuQuota"] == 0 and hc["CpuPeriod"] == 0
    assert (hc["Memory"], hc["MemorySwap"], hc["MemoryReservation"]) == (64 << 20, -1, 0)
    assert (hc["PidsLimit"], hc["CpuShares"], hc["CpusetCpus"]) == (50, 1024, "0")
    assert (hc["OomKillDisable"], hc["MemorySwappiness"]) == (not UNIFIED, 10)
    busybox("create", "--name", "plain", "busybox")
    hc = inspect(busybox, "plain")["HostConfig"]
    assert (hc["Memory"], hc["MemorySwap"], hc["NanoCpus"], hc["PidsLimit"]) == (0, 0, 0, None)
    assert (hc["ShmSize"], hc["Ulimits"], hc["MemorySwappiness"]) == (64 << 20, [], None)


def _ncpu() -> int:
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--memory", "1k"], "Minimum memory limit allowed is 6MB"),
        (["--memory", "lots"], "invalid argument \"lots\" for \"-m, --memory\" flag: invalid size: 'lots'"),
        (["--cpus", "999"], f"Range of CPUs is from 0.01 to {_ncpu()}.00, as there are only {_ncpu()} CPUs"),
        (["--cpus", "0.001"], "Range of CPUs is from 0.01"),
        (["--cpus", "x"], "failed to parse x as a rational number"),
        (["-m", "10m", "--memory-swap", "8m"], "Minimum memoryswap limit should be larger than memory limit"),
        (["--memory-swap", "64m"], "You should always set the Memory limit when using Memoryswap limit"),
        (["-m", "8m", "--memory-reservation", "16m"], "can not be less than memory reservation limit"),
        (["--cpus", "1", "--cpu-quota", "50000"], "Nano CPUs and CPU Quota cannot both be set"),
        (["--cpu-period", "10"], "CPU cfs period can not be less than 1ms"),
        (["--cpu-quota", "10"], "CPU cfs quota can not be less than 1ms"),
        (["--cpuset-cpus", "999"], "Requested CPUs are not available - requested 999"),
        (["--cpuset-cpus", "0-x"], "Invalid value 0-x for cpuset cpus"),
        (["--memory-swappiness", "101"], "Valid memory swappiness range is 0-100"),
    ],
)
def test_impossible_limits(busybox: Pallet, flags: list[str], message: str) -> None:
    proc = busybox("run", "--rm", *flags, "busybox", "true", check=False)
    assert proc.returncode == 125
    err = proc.stderr.decode()
    assert message in err and len(err.splitlines()) == 1, err
    assert busybox.out("ps", "-aq") == ""
    assert list((busybox.root / "containers").iterdir()) == []
