"""Executing a RUN step: the built-in OCI runtime, in-process, on an overlay of the parent's layers.

No container record and no monitor: the step's bundle (config.json from runtime/spec.py's
`default_spec`, rootfs = the step's overlay) is created and started with runtime/builtin.py, this
process being the child subreaper that waits for the step's init. Its stdout and stderr go through
one pipe to the progress output. The hostname is `buildkitsandbox`, /etc/hosts names it, and:

- `--network=none` (and `default`: the bridge network subsystem is not wired into builds yet) gives
  the step its own network namespace with only the loopback interface, up;
- `--network=host` shares the host's network namespace (and its /etc/resolv.conf).

Files the runtime creates only as mount points (/etc/hosts in an image without one, a secret's
/run/secrets/x, a cache mount's target) are removed from the layer afterwards, and the directories
they were made in get their times back, as BuildKit's mount-stub cleaner does.

Interrupts: the step's init is registered with the build's Canceller, which SIGKILLs it; the pid
namespace then takes everything else down, the pipe reaches EOF, and the cleanup below runs.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pallet.build.mounts import Mount
from pallet.build.progress import Vertex
from pallet.build.rootfs import StepRootfs
from pallet.build.session import BuildSession, Cancelled, StepFailed

__all__ = ["RunRequest", "execute_run"]

HOSTNAME = "buildkitsandbox"
_HOSTS = f"127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
_CLONE_NEWNET = 0x40000000


@dataclass
class RunRequest:
    args: list[str]
    env: list[str]
    user: str
    workdir: str
    network: str  # none | host
    mounts: list[Mount] = field(default_factory=list)
    inline_file: tuple[str, str] | None = None  # a heredoc with a shebang: (name, content) at /dev/pipes
    line: int = 0


@dataclass
class _Stub:
    rel: str  # the mount point's path in the rootfs, symlinks resolved
    top: str  # the first component that did not exist before the step (removed with all below)
    parents: list[tuple[str, os.stat_result]]  # existing directories above it, nearest first


def execute_run(session: BuildSession, fs: StepRootfs, req: RunRequest, vertex: Vertex,
                source_of: Any) -> None:
    """Run the step in `fs` (mounted); raises StepFailed on a non-zero exit. The caller commits `fs`."""
    from pallet.build.run_mounts import prepare_mounts
    from pallet.runtime import users
    from pallet.runtime.spec import default_spec

    session.canceller.check()
    step_dir = fs.dir
    with ExitStack() as stack:
        prepared = prepare_mounts(session, stack, step_dir, req.mounts, req.workdir, source_of)
        hosts = step_dir / "hosts"
        hosts.write_text(_HOSTS)
        extra: list[dict[str, Any]] = [_ro_bind(str(hosts), "/etc/hosts")]
        targets = ["/etc/hosts", *prepared.targets]
        if req.network == "host" and os.path.exists("/etc/resolv.conf"):
            extra.append(_ro_bind("/etc/resolv.conf", "/etc/resolv.conf"))
            targets.append("/etc/resolv.conf")
        if req.inline_file is not None:
            pipes = step_dir / "pipes"
            pipes.mkdir()
            name, content = req.inline_file
            (pipes / name).write_text(content)
            os.chmod(pipes / name, 0o755)
            extra.append(_ro_bind(str(pipes), "/dev/pipes"))
        try:
            who = users.resolve(fs.merged, req.user)
        except Exception as e:  # PalletError from the passwd lookup
            raise StepFailed(str(e), line=req.line) from None
        env = [*req.env, *(f"{k}={v}" for k, v in prepared.env.items())]
        if not any(item.startswith("HOME=") for item in env):
            env.append(f"HOME={who.home}")
        stubs = _find_stubs(fs.merged, targets)
        container_id = "build-" + secrets.token_hex(8)
        netns = stack.enter_context(_LoopbackNetns()) if req.network != "host" else None
        spec = default_spec(
            args=req.args, env=env, cwd=req.workdir, hostname=HOSTNAME,
            user=(who.uid, who.gid, who.groups), rootfs=str(fs.merged),
            cgroups_path=f"/pallet/{container_id}", host_network=req.network == "host",
            netns_path=netns.path if netns else None, extra_mounts=[*extra, *prepared.spec])
        bundle = step_dir / "bundle"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(spec))
        code = _run_process(session, bundle, container_id, vertex, netns)
    _remove_stubs(fs.merged, stubs)
    # The directories the stubs were made in were copied up only for them: not part of the layer.
    fs.copied_up.extend(p for stub in stubs for p in stub.parents if p[0])
    if code != 0:
        from pallet.build.gocompat import go_quote

        shown = go_quote(" ".join(req.args))
        raise StepFailed(f"process {shown} did not complete successfully: exit code: {code}", line=req.line)


def _ro_bind(source: str, target: str) -> dict[str, Any]:
    return {"destination": target, "type": "bind", "source": source, "options": ["rbind", "ro"]}


def _run_process(session: BuildSession, bundle: Path, container_id: str, vertex: Vertex,
                 netns: _LoopbackNetns | None) -> int:
    from pallet.runtime import builtin

    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = 0
    try:
        try:
            created = builtin.create(bundle, container_id, stdin=None, stdout=write_fd, stderr=write_fd)
        except RuntimeError as e:
            raise StepFailed(f"failed to start the build container: {e}") from None
        finally:
            os.close(write_fd)
            if netns is not None:
                netns.release()  # the container holds the namespace now
        pid = created.pid
        session.canceller.register(pid)
        if session.canceller.cancelled:
            os.close(created.start_fd)
        else:
            builtin.start(created)
        while chunk := os.read(read_fd, 65536):
            vertex.output(chunk)
        _, status = os.waitpid(pid, 0)
        pid_done = pid
        pid = 0
        session.canceller.unregister(pid_done)
        if session.canceller.cancelled:
            raise Cancelled("build cancelled")
        return _exit_code(status)
    finally:
        os.close(read_fd)
        if pid:
            from pallet.runtime.process import kill_and_reap

            kill_and_reap(pid)
            session.canceller.unregister(pid)
        try:
            builtin.delete(bundle, container_id)
        except OSError:
            pass


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


class _LoopbackNetns:
    """A network namespace with `lo` up, held by a small child until the step's init has joined it."""

    def __init__(self) -> None:
        self.pid = 0
        self._hold = -1

    def __enter__(self) -> _LoopbackNetns:
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(ready_r)
                os.close(hold_w)
                from pallet.runtime import linux

                linux.unshare(_CLONE_NEWNET)
                _loopback_up()
                os.write(ready_w, b"k")
                os.read(hold_r, 1)  # until the parent releases (or dies)
                code = 0
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(hold_r)
        self.pid, self._hold = pid, hold_w
        ok = os.read(ready_r, 1)
        os.close(ready_r)
        if ok != b"k":
            self.release()
            raise StepFailed("failed to create the build step's network namespace")
        return self

    @property
    def path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def release(self) -> None:
        if self._hold >= 0:
            os.close(self._hold)
            self._hold = -1
        if self.pid:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0

    def __exit__(self, *exc: object) -> None:
        self.release()


def _loopback_up() -> None:
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), siocgifflags, req))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


# ---- mount stubs ---------------------------------------------------------------------------------

def _find_stubs(root: Path, targets: list[str]) -> list[_Stub]:
    """Mount points the runtime will have to create, and the directories they will be made in."""
    from pallet.runtime.mounts import secure_join

    base = str(root)
    stubs = []
    for target in targets:
        resolved = secure_join(base, target)
        if os.path.lexists(resolved):
            continue
        rel = resolved[len(base):].lstrip("/")
        parts = rel.split("/")
        top = None
        parents: list[tuple[str, os.stat_result]] = []
        for i in range(len(parts)):
            sub = "/".join(parts[: i + 1])
            if not os.path.lexists(os.path.join(base, sub)):
                top = sub
                for j in range(i, -1, -1):
                    above = "/".join(parts[:j])
                    parents.append((above, os.lstat(os.path.join(base, above))))
                break
        if top is not None:
            stubs.append(_Stub(rel, top, parents))
    return stubs


def _remove_stubs(root: Path, stubs: list[_Stub]) -> None:
    base = str(root)
    for stub in stubs:
        top = os.path.join(base, stub.top)
        if not _only_stub(top):
            continue  # the step put something real there: keep it
        if os.path.isdir(top) and not os.path.islink(top):
            import shutil

            shutil.rmtree(top, ignore_errors=True)
        else:
            try:
                os.unlink(top)
            except FileNotFoundError:
                pass
        for rel, before in stub.parents:
            path = os.path.join(base, rel) if rel else base
            try:
                os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns), follow_symlinks=False)
            except OSError:
                pass


def _only_stub(path: str) -> bool:
    """Nothing but empty directories and empty files: what mkdir/touch of mount points leaves."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISREG(st.st_mode):
        return st.st_size == 0
    if not stat.S_ISDIR(st.st_mode):
        return False
    return all(_only_stub(os.path.join(path, name)) for name in os.listdir(path))
