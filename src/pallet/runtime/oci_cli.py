"""Drive an external OCI runtime binary (crun, runc) through its command line.

Same verbs as the built-in runtime (create / start / kill / delete). The runtime's state lives under its
own root directory (e.g. /run/pallet/runtimes/crun); the container's stdio are the runtime's stdio at
`create` (runc and crun hand them on to the container's init). The runtime's own messages go to a log
file beside its state so that they don't end up in the container's output; a failing call raises
RuntimeError with the last error from that log.

The caller becomes a child subreaper in create(), so the container's init, orphaned when the runtime's
`create` process exits, is re-parented to it and can be waited for.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pallet.runtime import linux


@dataclass
class CliCreated:
    pid: int  # host pid of the container's init process
    container_id: str


class OciRuntime:
    def __init__(self, binary: str, root: str | Path) -> None:
        self.binary = binary
        self.root = Path(root)

    # -- plumbing ---------------------------------------------------------------------------------------

    def _log_path(self, container_id: str) -> Path:
        return self.root / f"{container_id}.log"

    def _posix_spawn(self, argv: list[str], actions: list[tuple[int, int, int]]) -> int:
        try:
            return os.posix_spawnp(self.binary, argv, os.environ, file_actions=actions)
        except OSError as e:
            raise RuntimeError(f"cannot run OCI runtime {self.binary!r}: {e.strerror}") from None

    def _spawn(self, args: list[str], stdio: tuple[int, int, int]) -> int:
        """Run the runtime with the given stdio; returns its exit code."""
        argv = [self.binary, "--root", str(self.root), *args]
        actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(stdio)]
        pid = self._posix_spawn(argv, actions)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def _call(self, args: list[str], container_id: str) -> str:
        """Run a verb with /dev/null for stdin and a pipe for its output; returns stdout."""
        r, w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            pid = self._posix_spawn(
                [self.binary, "--root", str(self.root), *args],
                [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)],
            )
        finally:
            os.close(w)
            os.close(devnull)
        chunks = []
        try:
            while chunk := os.read(r, 65536):
                chunks.append(chunk)
        finally:
            os.close(r)
        _, status = os.waitpid(pid, 0)
        out = b"".join(chunks).decode(errors="replace")
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeError(
                f"{self.binary} {args[0]} {container_id}: {out.strip() or f'exit status {code}'}"
            )
        return out

    def _last_error(self, container_id: str) -> str:
        """The last error line of the runtime's log (JSON lines for both runc and crun)."""
        try:
            lines = self._log_path(container_id).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                if line.strip():
                    return line.strip()
                continue
            if entry.get("level") in ("error", "fatal"):
                return str(entry.get("msg", line))
        return ""

    # -- verbs ------------------------------------------------------------------------------------------

    def create(
        self,
        bundle: Path | str,
        container_id: str,
        *,
        stdin: int | None,
        stdout: int,
        stderr: int,
        console_socket: str | None = None,
    ) -> CliCreated:
        """`create` the container; its init waits for start(). Raises RuntimeError on failure."""
        linux.set_child_subreaper()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        pid_file = self.root / f"{container_id}.pid"
        log = self._log_path(container_id)
        # --log/--log-format are global options: they go before the verb.
        args = [
            "--log",
            str(log),
            "--log-format",
            "json",
            "create",
            "--bundle",
            str(Path(bundle).absolute()),
            "--pid-file",
            str(pid_file),
        ]
        if console_socket:
            args += ["--console-socket", console_socket]
        args.append(container_id)
        devnull = None
        if stdin is None:
            devnull = stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            code = self._spawn(args, (stdin, stdout, stderr))
        finally:
            if devnull is not None:
                os.close(devnull)
        if code != 0:
            detail = self._last_error(container_id) or f"exit status {code}"
            raise RuntimeError(f"{self.binary} create {container_id}: {detail}")
        pid = int(pid_file.read_text().strip())
        return CliCreated(pid=pid, container_id=container_id)

    def start(self, c: CliCreated) -> None:
        self._call(["start", c.container_id], c.container_id)

    def kill(self, c: CliCreated | str, sig: int) -> None:
        container_id = c if isinstance(c, str) else c.container_id
        self._call(["kill", container_id, str(sig)], container_id)

    def state(self, container_id: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self._call(["state", container_id], container_id))
        return state

    def delete(self, bundle: Path | str, container_id: str) -> None:
        """`delete --force`: kills what is left and removes the runtime's state and cgroups."""
        try:
            self._call(["delete", "--force", container_id], container_id)
        finally:
            for leftover in (self._log_path(container_id), self.root / f"{container_id}.pid"):
                try:
                    leftover.unlink()
                except FileNotFoundError:
                    pass
