"""`RUN --mount=…`: what each mount contributes to the step's cache key, and the OCI mounts it becomes.

- bind: a path of the build context (its content hash is part of the key, as BuildKit's), or of a
  stage or image (`from=`; its filesystem key is). Read-only by default; `rw` gives a writable
  overlay whose changes are thrown away.
- cache: a directory kept under the state root between builds, keyed by `id` (default: the
  target); created with `uid`/`gid`/`mode`; `sharing=locked` takes a file lock for the step.
  Cache mounts are not part of the key.
- tmpfs: a fresh tmpfs (`size=`).
- secret: the `--secret id=…` file, copied into the step's private dir with `mode` (0400), `uid`,
  `gid`, mounted at `target` (default /run/secrets/<id>), or exposed as `env=` variable. Never part
  of the key, never in the image.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import posixpath
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pallet.build.context import hash_sources
from pallet.build.mounts import Mount
from pallet.build.session import BuildSession, StepFailed

__all__ = ["MountSource", "PreparedMounts", "mount_key_inputs", "prepare_mounts", "resolve_target"]


@dataclass
class MountSource:
    """Where a `from=` mount reads: a stage's or image's layers and their filesystem key."""

    chain: list[str]
    fs_key: str


@dataclass
class PreparedMounts:
    spec: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)  # container paths mounted over (for stub cleanup)


def resolve_target(target: str, workdir: str) -> str:
    path = target if target.startswith("/") else posixpath.join("/", workdir, target)
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/")


def secret_id(m: Mount) -> str:
    ident = m.source or m.cache_id
    if not ident:
        if not m.target:
            raise ValueError("one of source, target required")
        ident = posixpath.basename(m.target)
    return ident


def mount_key_inputs(session: BuildSession, mounts: list[Mount], workdir: str,
                     source_of: Callable[[str], MountSource]) -> list[Any]:
    """What of the mounts decides the step's result, for its cache key."""
    out: list[Any] = []
    for m in mounts:
        if m.type == "bind":
            target = resolve_target(m.target, workdir)
            if m.from_:
                origin = source_of(m.from_).fs_key
            else:
                origin = hash_sources(session.context.dir, [m.source or "."], session.context.ignore)
            out.append(["bind", target, m.source, origin, m.readonly])
        elif m.type == "cache":
            out.append(["cache", resolve_target(m.target, workdir)])
        elif m.type == "tmpfs":
            out.append(["tmpfs", resolve_target(m.target, workdir), m.size_limit])
        elif m.type == "secret":
            out.append(["secret", secret_id(m), m.target, m.env])
        else:
            out.append([m.type, m.target])
    return out


def _cache_dir(session: BuildSession, m: Mount, target: str) -> Path:
    ident = m.cache_id or posixpath.normpath(target)
    base = session.store.paths.root / "build-cache" / "mounts"
    path = base / hashlib.sha256(ident.encode()).hexdigest()[:32]
    if not path.is_dir():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(path) + f".new-{os.getpid()}")
        tmp.mkdir(mode=0o755)
        os.chown(tmp, m.uid or 0, m.gid or 0)
        os.chmod(tmp, m.mode if m.mode is not None else 0o755)
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another build made it first
    return path


def _lock(stack: ExitStack, path: Path) -> None:
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    stack.callback(os.close, fd)
    fcntl.flock(fd, fcntl.LOCK_EX)


def _bind(source: str, target: str, readonly: bool) -> dict[str, Any]:
    return {"destination": target, "type": "bind", "source": source,
            "options": ["rbind", "ro" if readonly else "rw", "nosuid", "nodev"]}


def _writable_copy(stack: ExitStack, step_dir: Path, source: str, n: int) -> str:
    """An overlay over `source` whose writes vanish with the step (a rw bind mount)."""
    from pallet.runtime import linux, rootfs

    base = step_dir / f"rw-{n}"
    upper, work, merged = base / "upper", base / "work", base / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True)
    linux.mount("overlay", str(merged), "overlay", 0, f"lowerdir={source},upperdir={upper},workdir={work}")
    stack.callback(rootfs.unmount, merged)
    return str(merged)


def _inside(root: str, rel: str) -> str:
    from pallet.runtime.mounts import secure_join

    path = secure_join(root, rel)
    if not os.path.lexists(path):
        raise StepFailed(f'failed to compute cache key: "/{rel.lstrip("/")}": not found')
    return path


def prepare_mounts(session: BuildSession, stack: ExitStack, step_dir: Path, mounts: list[Mount],
                   workdir: str, source_of: Callable[[str], MountSource]) -> PreparedMounts:
    """Make every mount ready; whatever needs undoing is pushed onto `stack`."""
    from pallet.build.rootfs import ReadonlyView

    out = PreparedMounts()
    for n, m in enumerate(mounts):
        if m.type == "ssh":
            raise StepFailed("RUN --mount=type=ssh is not supported by pallet")
        if m.type == "secret":
            _secret(session, step_dir, m, n, out)
            continue
        target = resolve_target(m.target, workdir)
        if target == "/":
            raise StepFailed(f'invalid mount target "{target}"')
        out.targets.append(target)
        if m.type == "tmpfs":
            options = ["nosuid", "nodev"] + ([f"size={m.size_limit}"] if m.size_limit else [])
            out.spec.append({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
        elif m.type == "cache":
            path = _cache_dir(session, m, target)
            if m.sharing == "locked":
                _lock(stack, path)
            out.spec.append(_bind(str(path), target, m.readonly))
        else:  # bind
            if m.from_:
                origin = source_of(m.from_)
                view = stack.enter_context(ReadonlyView(session.store, origin.chain))
                source = _inside(str(view.path), m.source)
            else:
                # Context paths are resolved like COPY sources: never outside the context.
                from pallet.build.context import resolve_sources

                try:
                    rel = resolve_sources(session.context.dir, m.source or ".", session.context.ignore)[0]
                except Exception as e:  # NotFound
                    raise StepFailed(f"failed to compute cache key: {e}") from None
                source = str(session.context.dir / rel) if rel else str(session.context.dir)
            if not m.readonly and os.path.isdir(source):
                source = _writable_copy(stack, step_dir, source, n)
            out.spec.append(_bind(source, target, m.readonly))
    return out


def _secret(session: BuildSession, step_dir: Path, m: Mount, n: int, out: PreparedMounts) -> None:
    ident = secret_id(m)
    data = session.secrets.get(ident)
    if data is None:
        if m.required:
            raise StepFailed(f"secret {ident} not found")
        return
    if m.env:
        out.env[m.env] = data.decode("utf-8", "surrogateescape")
        if not m.target:
            return
    target = m.target or f"/run/secrets/{posixpath.basename(ident)}"
    secrets_dir = step_dir / "secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    copy = secrets_dir / f"{n}"
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chown(copy, m.uid or 0, m.gid or 0)
    os.chmod(copy, m.mode if m.mode is not None else 0o400)
    out.targets.append(target)
    out.spec.append(_bind(str(copy), target, True))
