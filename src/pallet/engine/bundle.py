"""The OCI bundle of a container: its Config and HostConfig turned into config.json (with
docker's defaults), the /etc files docker bind-mounts, and the working directory."""

from __future__ import annotations

import json
from pathlib import Path

from pallet.engine.container_etc import write_atomic
from pallet.engine.container_network import Attached
from pallet.engine.core import Engine
from pallet.state.containers import ContainerRecord

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

INIT_PATH = "/sbin/docker-init"
# Options that undo each other share a key, so that the user's choice replaces docker's default.
_TMPFS_FLAG_PAIRS = {"exec": "noexec", "suid": "nosuid", "dev": "nodev", "rw": "ro"}


def write_bundle(engine: Engine, rec: ContainerRecord, target: Path) -> None:
    """Write config.json beside the mounted rootfs `target`, with the container's network wired
    (engine/container_network.py) and its volumes mounted. If this fails, the network is released."""
    from pallet.engine import container_network, network_release

    attached = container_network.attach(engine, rec)
    try:
        _write_spec(engine, rec, target, attached)
    except BaseException:
        network_release.release(engine.paths, engine.conn, rec.id)
        if rec.config.get("MountPlan"):
            from pallet.engine import container_mounts

            container_mounts.release(engine.paths, engine.conn, rec.id)
        raise


def _write_spec(engine: Engine, rec: ContainerRecord, target: Path, attached: Attached) -> None:
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
    shm_size = int(hc.get("ShmSize") or hostconfig.DEFAULT_SHM_SIZE)
    if shm == "shareable" or shm.startswith("container:"):
        from pallet.engine import container_ipc

        if shm == "shareable":
            shm = container_ipc.mount_shareable(engine, rec, shm_size)
        else:
            shm = container_ipc.donor_shm(engine, shm.split(":", 1)[1])
    if attached.netns_path:
        ns_paths["network"] = attached.netns_path
    mounts = attached.etc_mounts + _tmpfs_mounts(hc.get("Tmpfs") or {})
    if rec.config.get("MountPlan"):
        from pallet.engine import container_mounts

        mounts += container_mounts.oci_mounts(engine, rec, target)
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
        hostname=attached.hostname or cfg.get("Hostname") or rec.id[:12],
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
        shm_size=shm_size,
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
    write_atomic(cdir / "config.json", json.dumps(spec).encode())


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
