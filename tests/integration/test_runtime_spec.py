"""config.json generation with Docker's defaults, and the seccomp profile resolution (no root needed)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from pallet.runtime import seccomp, spec

SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "oci-runtime"
DOCKER_CAPS_MASK = 0xA80425FB


@cache
def _validator() -> jsonschema.Draft4Validator:
    if not SCHEMAS.is_dir():
        pytest.skip(f"OCI runtime-spec schemas not found at {SCHEMAS}")
    registry: Registry[Any] = Registry()
    for f in SCHEMAS.glob("*.json"):
        resource = Resource.from_contents(json.loads(f.read_text()), default_specification=DRAFT4)
        # The schemas $ref each other by bare file name: resolve them against the folder.
        registry = registry.with_resource(f.name, resource).with_resource(f.as_uri(), resource)
    schema = json.loads((SCHEMAS / "config-schema.json").read_text())
    return jsonschema.Draft4Validator(schema, registry=registry)


def _errors(doc: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(doc)]


def _default(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("args", ["sh"])
    kwargs.setdefault("env", ["PATH=/bin"])
    return spec.default_spec(**kwargs)


def test_default_spec_validates() -> None:
    assert _errors(_default(hostname="abc", cgroups_path="/pallet/abc")) == []


def test_spec_with_everything_validates() -> None:
    doc = _default(
        hostname="h",
        domainname="example.org",
        user=(1000, 1000, [10, 20]),
        terminal=True,
        readonly_rootfs=True,
        cgroups_path="/pallet/x",
        netns_path="/var/run/netns/x",
        extra_mounts=[{"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "ro"]}],
        no_new_privileges=True,
        resources={"memory": {"limit": 1 << 30}, "cpu": {"shares": 512, "quota": 50000, "period": 100000}},
        annotations={"org.example": "1"},
    )
    assert _errors(doc) == []


def test_schema_check_is_real() -> None:
    doc = _default()
    doc["process"]["user"]["uid"] = "root"
    doc["linux"]["namespaces"].append({"type": "nope"})
    assert len(_errors(doc)) >= 2


def test_docker_defaults() -> None:
    doc = _default(hostname="ctr", cgroups_path="/pallet/c1")
    caps = doc["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == list(spec.DEFAULT_CAPABILITIES)
    assert "inheritable" not in caps and "ambient" not in caps
    from pallet.runtime import linux

    assert linux.cap_mask(caps["bounding"]) == DOCKER_CAPS_MASK
    mounts = {m["destination"]: m for m in doc["mounts"]}
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert mounts["/proc"]["options"] == ["nosuid", "noexec", "nodev"]
    assert mounts["/dev"]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert mounts["/dev/pts"]["options"] == [
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
        "gid=5",
    ]
    assert "ro" in mounts["/sys"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert mounts["/dev/shm"]["options"] == ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]
    lx = doc["linux"]
    assert [ns["type"] for ns in lx["namespaces"]] == ["mount", "network", "uts", "pid", "ipc", "cgroup"]
    for p in (
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ):
        assert p in lx["maskedPaths"]
    assert lx["readonlyPaths"] == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    assert lx["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"} in lx["resources"][
        "devices"
    ]
    assert lx["cgroupsPath"] == "/pallet/c1"
    assert doc["hostname"] == "ctr"
    assert doc["process"]["env"][:2] == ["PATH=/bin", "HOSTNAME=ctr"]  # the image's PATH replaces the default
    assert doc["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    (rl,) = doc["process"]["rlimits"]
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert rl["type"] == "RLIMIT_NOFILE"
    assert rl["hard"] == rl["soft"] == (1048576 if hard == resource.RLIM_INFINITY else min(1048576, hard))
    assert lx["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"


def test_network_namespace_options() -> None:
    joined = _default(netns_path="/var/run/netns/n1")
    assert {"type": "network", "path": "/var/run/netns/n1"} in joined["linux"]["namespaces"]
    host = _default(host_network=True)
    assert "network" not in [ns["type"] for ns in host["linux"]["namespaces"]]
    assert "sysctl" not in host["linux"]  # never write the host's network sysctls


def test_user_mount_replaces_default_at_same_destination() -> None:
    shm = {"destination": "/dev/shm", "type": "bind", "source": "/srv/shm", "options": ["rbind"]}
    deep = {"destination": "/a/b/c", "type": "tmpfs", "source": "tmpfs"}
    top = {"destination": "/a", "type": "tmpfs", "source": "tmpfs"}
    doc = _default(extra_mounts=[deep, shm, top])
    dests = [m["destination"] for m in doc["mounts"]]
    assert dests.count("/dev/shm") == 1 and shm in doc["mounts"]
    assert dests.index("/a") < dests.index("/a/b/c")


def test_seccomp_default_profile_shape() -> None:
    profile = spec.load_default_profile()
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    allowed = set(profile["syscalls"][0]["names"])
    assert len(allowed) > 300 and {"read", "write", "execve", "openat", "clone3"} - allowed == {"clone3"}
    assert (Path(spec.__file__).parent / "SECCOMP_NOTICE").is_file()


def _names(section: dict[str, Any], action: str = "SCMP_ACT_ALLOW") -> set[str]:
    return {n for s in section["syscalls"] if s["action"] == action and not s.get("args") for n in s["names"]}


def test_seccomp_for_default_caps_amd64() -> None:
    sec = spec.seccomp_for(spec.load_default_profile(), spec.DEFAULT_CAPABILITIES, "amd64", kernel="6.1.0")
    assert sec["defaultAction"] == "SCMP_ACT_ERRNO" and sec["defaultErrnoRet"] == 1
    assert sec["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = _names(sec)
    assert {"arch_prctl", "modify_ldt", "chroot", "ptrace"} <= allowed  # amd64, CAP_SYS_CHROOT, kernel >= 4.8
    assert (
        not {"mount", "unshare", "setns", "bpf", "reboot", "open_by_handle_at", "s390_runtime_instr"}
        & allowed
    )
    # clone only without namespace flags; clone3 fails with ENOSYS so that libc falls back to clone.
    (clone,) = [s for s in sec["syscalls"] if s["names"] == ["clone"]]
    assert clone["args"] == [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]
    (clone3,) = [s for s in sec["syscalls"] if s["names"] == ["clone3"]]
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38
    socket = [s["args"] for s in sec["syscalls"] if s["names"] == ["socket"]]
    assert socket and all(a[0]["index"] == 0 for a in socket)  # AF_VSOCK (40) is filtered
    for s in sec["syscalls"]:
        assert set(s) <= {"names", "action", "errnoRet", "args"}  # includes/excludes/comment resolved away


def test_seccomp_for_extra_caps_and_old_kernel() -> None:
    caps = [*spec.DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]
    sec = spec.seccomp_for(spec.load_default_profile(), caps, "x86_64", kernel="4.4.0-100-generic")
    allowed = _names(sec)
    assert {"mount", "unshare", "setns", "clone", "clone3", "kcmp", "ptrace"} <= allowed
    assert not [s for s in sec["syscalls"] if s["names"] == ["clone3"] and s["action"] != "SCMP_ACT_ALLOW"]
    # The kernel-gated ptrace entry is gone on 4.4; CAP_SYS_PTRACE's entry still allows ptrace.
    sec_old = spec.seccomp_for(
        spec.load_default_profile(), spec.DEFAULT_CAPABILITIES, "amd64", kernel="4.4.0"
    )
    assert "ptrace" not in _names(sec_old)


def test_seccomp_for_other_arch() -> None:
    sec = spec.seccomp_for(spec.load_default_profile(), spec.DEFAULT_CAPABILITIES, "arm64", kernel="6.1")
    assert sec["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    allowed = _names(sec)
    assert "arm_fadvise64_64" in allowed and "arch_prctl" not in allowed


def test_seccomp_unconfined_and_custom() -> None:
    assert "seccomp" not in _default(seccomp_profile="unconfined")["linux"]
    custom = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "mkdir", "action": "SCMP_ACT_ERRNO"}]}
    sec = _default(seccomp_profile=custom)["linux"]["seccomp"]
    assert sec == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
    }


def test_seccomp_program_compiles_and_caches(tmp_path: Path) -> None:
    sec = spec.seccomp_for(spec.load_default_profile(), spec.DEFAULT_CAPABILITIES, spec.native_arch())
    prog = seccomp.program(sec, cache_dir=str(tmp_path))
    assert len(prog) % 8 == 0 and len(prog) > 8 * 100
    assert len(list(tmp_path.iterdir())) == 1
    assert seccomp.program(sec, cache_dir=str(tmp_path)) == prog  # from the cache
    # A section whose cache file holds another section's program recompiles instead of trusting it.
    other = {**sec, "defaultErrnoRet": 38}
    (mine,) = tmp_path.iterdir()
    other_prog = seccomp.program(other, cache_dir=str(tmp_path))
    assert other_prog != prog
    (theirs,) = set(tmp_path.iterdir()) - {mine}
    theirs.write_bytes(mine.read_bytes())
    assert seccomp.program(other, cache_dir=str(tmp_path)) == other_prog
    assert seccomp.compile_program(sec) == prog
