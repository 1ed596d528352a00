"""The OCI bundle of a container: its Config and HostConfig turned into config.json (with
docker's defaults), the /etc files docker bind-mounts, and the working directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pallet.engine.core import Engine
from pallet.state.containers import ContainerRecord

INIT_PATH = "/sbin/docker-init"
# Options that undo each other share a key, so that the user's choice replaces docker's default.
_TMPFS_FLAG_PAIRS = {"exec": "noexec", "suid": "nosuid", "dev": "nodev", "rw": "ro"}


def write_bundle(engine: Engine, rec: ContainerRecord, target: Path) -> None:
    """Write config.json beside the mounted rootfs `target`."""
    from pallet.engine import hostconfig, resources, security
    from pallet.engine.containers import lookup
    from pallet.runtime import rootfs, users
    from pallet.runtime.spec import default_spec, default_sysctls

    cfg = rec.config["Config"]
    hc = rec.config["HostConfig"]
    cdir = engine.paths.container_dir(rec.id)
    user = users.resolve(target, cfg.get("User") or "", hc.get("GroupAdd"))
    workdir = cfg.get("WorkingDir") or "/"
    rootfs.make_dir_in(target, workdir, user.uid, user.gid)
    shared, ns_paths, shm = hostconfig.namespaces(hc, lambda ref: lookup(engine, ref))
    mounts = _write_etc_files(cdir, cfg, hc) + _tmpfs_mounts(hc.get("Tmpfs") or {})
    env = list(cfg.get("Env") or [])
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    if hc.get("Init"):
        # docker's --init: its docker-init (tini) bound in read-only, running the command as its child.
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": hostconfig.DOCKER_INIT,
                       "options": ["bind", "ro"]})  # fmt: skip
        args = [INIT_PATH, "--", *args]
    devices, device_rules = security.oci_devices(hc)
    spec = default_spec(
        args=args,
        env=env,
        cwd=workdir,
        hostname=cfg.get("Hostname") or rec.id[:12],
        domainname=cfg.get("Domainname") or "",
        user=(user.uid, user.gid, user.groups),
        terminal=bool(cfg.get("Tty")),
        readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
        cgroups_path=f"/pallet/{rec.id}",
        extra_mounts=mounts,
        capabilities=security.capabilities(hc),
        no_new_privileges=security.no_new_privileges(hc),
        seccomp_profile=security.seccomp_profile(hc),
        sysctl={**default_sysctls("network" in shared), **(hc.get("Sysctls") or {})},
        resources=resources.oci_resources(hc),
        shm_size=int(hc.get("ShmSize") or hostconfig.DEFAULT_SHM_SIZE),
        oom_score_adj=int(hc.get("OomScoreAdj") or 0),
        annotations=hc.get("Annotations") or None,
        shared_namespaces=shared,
        namespace_paths=ns_paths,
        rlimits=resources.oci_rlimits(hc),
        devices=devices,
        device_rules=device_rules,
        masked_paths=hc.get("MaskedPaths"),
        readonly_paths=hc.get("ReadonlyPaths"),
        privileged=bool(hc.get("Privileged")),
        shm=shm,
    )
    _write_atomic(cdir / "config.json", json.dumps(spec).encode())


def _tmpfs_mounts(tmpfs: dict[str, str]) -> list[dict[str, Any]]:
    """--tmpfs: docker's noexec,nosuid,nodev defaults, then the user's options (a later one wins)."""
    out = []
    for dest, data in tmpfs.items():
        options: dict[str, str] = {}
        for opt in ["noexec", "nosuid", "nodev", *(o for o in data.split(",") if o)]:
            key = opt.split("=", 1)[0]
            options[_TMPFS_FLAG_PAIRS.get(key, key)] = opt
        mount = {"destination": dest, "type": "tmpfs", "source": "tmpfs"}
        out.append({**mount, "options": list(options.values())})
    return out


def _write_etc_files(cdir: Path, cfg: dict[str, Any], hc: dict[str, Any]) -> list[dict[str, Any]]:
    host_network = hc.get("NetworkMode") == "host"
    hostname = cfg.get("Hostname") or ""
    _write_atomic(cdir / "hostname", f"{hostname}\n".encode())
    if host_network:
        # Sharing the host's network: its /etc/hosts and resolver are the container's too.
        hosts = _read_text("/etc/hosts")
    else:
        hosts = (
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        )
    if hosts and not hosts.endswith("\n"):
        hosts += "\n"
    for entry in hc.get("ExtraHosts") or []:
        name, _, ip = entry.partition("=" if "=" in entry else ":")
        hosts += f"{ip.removeprefix('[').removesuffix(']')}\t{name}\n"
    _write_atomic(cdir / "hosts", hosts.encode())
    if host_network:
        _write_atomic(cdir / "resolv.conf", _read_text("/etc/resolv.conf").encode())
    elif not (cdir / "resolv.conf").exists():
        _write_atomic(cdir / "resolv.conf", _resolv_conf())
    opts = ["rbind", "rprivate"]
    return [
        {"destination": f"/etc/{n}", "type": "bind", "source": str(cdir / n), "options": list(opts)}
        for n in ("resolv.conf", "hostname", "hosts")
    ]


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _resolv_conf() -> bytes:
    # Without a network of its own the container gets the host's search/options but no
    # nameserver that points at the host's loopback resolver (unreachable from its netns).
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    kept = [
        ln
        for ln in lines
        if ln.strip()
        and not ln.startswith("#")
        and not (ln.startswith("nameserver") and ("127." in ln or "::1" in ln))
    ]
    return ("\n".join(kept) + "\n").encode() if kept else b""


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
