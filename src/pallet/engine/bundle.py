"""The OCI bundle of a container: its Config and HostConfig turned into config.json (with
docker's defaults), the /etc files docker bind-mounts, and the working directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pallet.engine.core import Engine
from pallet.state.containers import ContainerRecord


def write_bundle(engine: Engine, rec: ContainerRecord, target: Path) -> None:
    """Write config.json beside the mounted rootfs `target`."""
    from pallet.runtime import rootfs, users
    from pallet.runtime.spec import default_spec

    cfg = rec.config["Config"]
    hc = rec.config["HostConfig"]
    cdir = engine.paths.container_dir(rec.id)
    user = users.resolve(target, cfg.get("User") or "", hc.get("GroupAdd"))
    workdir = cfg.get("WorkingDir") or "/"
    rootfs.make_dir_in(target, workdir, user.uid, user.gid)
    etc_mounts = _write_etc_files(cdir, cfg)
    env = list(cfg.get("Env") or [])
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
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
        extra_mounts=etc_mounts,
    )
    _write_atomic(cdir / "config.json", json.dumps(spec).encode())


def _write_etc_files(cdir: Path, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    hostname = cfg.get("Hostname") or ""
    _write_atomic(cdir / "hostname", f"{hostname}\n".encode())
    hosts = (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    )
    _write_atomic(cdir / "hosts", hosts.encode())
    if not (cdir / "resolv.conf").exists():
        _write_atomic(cdir / "resolv.conf", _resolv_conf())
    opts = ["rbind", "rprivate"]
    return [
        {"destination": f"/etc/{n}", "type": "bind", "source": str(cdir / n), "options": list(opts)}
        for n in ("resolv.conf", "hostname", "hosts")
    ]


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
