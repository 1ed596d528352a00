"""Dispatching one stage: each instruction expanded with the stage's ARG/ENV scope and applied.

Metadata instructions only change the image config (build/config.py). Filesystem steps (RUN,
COPY, ADD, WORKDIR) get a cache key first (build/cache.py); on a hit the recorded layer is taken
as it is, with no container, no tar and no copy; on a miss the step runs on a fresh overlay whose
upper dir becomes the layer, and a cache record is written. `--cache-from` images are looked at
before running a missed step: a layer whose history line matches the step exactly is adopted
(steps that read the context are never taken from there: their history does not name content).
"""

from __future__ import annotations

import hashlib
import math
import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pallet.build.cache import CacheRecord, step_key
from pallet.build.config import ImageState, Layer, run_created_by, with_shell
from pallet.build.dockerfile import parse_trigger
from pallet.build.errors import DockerfileError
from pallet.build.instructions import (
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from pallet.build.parser import parse_heredoc
from pallet.build.progress import Vertex
from pallet.build.rootfs import StepRootfs
from pallet.build.run_mounts import MountSource
from pallet.build.scope import StageScope
from pallet.build.session import BuildSession, Cancelled, StepFailed
from pallet.build.shell import ShellLexer

if TYPE_CHECKING:
    from pallet.build.stages import PlannedStage

__all__ = ["StageDispatcher", "chain_of"]

_FS_STEPS = (Run, Copy, Add, Workdir)


def chain_of(parent: str | None, diff_id: str) -> str:
    if not parent:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def _now() -> str:
    from pallet.images.config import rfc3339

    return rfc3339()


class StageDispatcher:
    """Builds one stage on `state` (already based on its FROM)."""

    def __init__(self, session: BuildSession, planned: PlannedStage, state: ImageState, scope: StageScope,
                 *, stage_name: str, source_of: Callable[[str, int], MountSource], path: str,
                 cache_from: list[dict[str, Any]] | None = None) -> None:
        self.session = session
        self.planned = planned
        self.state = state
        self.scope = scope
        self.stage_name = stage_name
        self.source_of = source_of
        self.path = path
        self.cache_from = cache_from or []
        self.index = 0
        self.total = 0
        self.on_build = False
        self.lexer = ShellLexer(scope.lexer.escape, raw_quotes=True, skip_unset=True)

    # ---- naming -------------------------------------------------------------------------------

    def count(self, instructions: list[Instruction], counts_from: bool) -> None:
        self.total = (1 if counts_from else 0) + sum(isinstance(i, _FS_STEPS) for i in instructions)

    def prefix(self, text: str) -> str:
        """`[stage 2/5] RUN …`, as BuildKit's prefixCommand numbers the steps of a stage."""
        if self.total == 0:
            return text
        self.index += 1
        width = int(1 + math.log10(self.total))
        head = f"{self.stage_name} " if self.stage_name else ""
        onbuild = "ONBUILD " if self.on_build else ""
        return f"[{head}{self.index:>{width}}/{self.total}] {onbuild}{text}"

    def display(self, instr: Instruction) -> str:
        try:
            text = self.lexer.process_word(instr.source, self.scope.variables())
        except DockerfileError:
            text = instr.source
        keyword, _, rest = text.partition(" ")
        return f"{keyword.upper()} {rest}".strip()

    # ---- the stage ----------------------------------------------------------------------------

    def dispatch_all(self, triggers: list[Instruction], instructions: list[Instruction]) -> ImageState:
        self.on_build = True
        for instr in triggers:
            self.dispatch(instr)
        self.on_build = False
        for instr in instructions:
            self.session.canceller.check()
            self.dispatch(instr)
        return self.state

    def triggers(self) -> list[Instruction]:
        """The base image's ONBUILD triggers, parsed (errors point at the FROM line); taken once."""
        out = []
        for expression in self.state.onbuild_triggers:
            out.append(parse_trigger(expression, path=self.path, line=self.planned.stage.line))
        self.state.onbuild_triggers = []
        return out

    def dispatch(self, instr: Instruction) -> None:
        try:
            expanded = self.scope.apply(instr)
        except DockerfileError:
            raise
        state = self.state
        if isinstance(expanded, Run):
            self._run(expanded)
        elif isinstance(expanded, (Copy, Add)):
            self._copy(expanded)
        elif isinstance(expanded, Workdir):
            self._workdir(expanded)
        elif isinstance(expanded, Arg):
            state.add_arg_history([(d.key, d.value) for d in expanded.args])
        elif isinstance(expanded, Env):
            state.set_env([(p.key, p.value) for p in expanded.pairs])
        elif isinstance(expanded, Label):
            state.set_labels([(p.key, p.value) for p in expanded.pairs])
        elif isinstance(expanded, Cmd):
            state.set_cmd(self._command(expanded.command, expanded.shell_form))
        elif isinstance(expanded, Entrypoint):
            state.set_entrypoint(self._command(expanded.command, expanded.shell_form))
        elif isinstance(expanded, User):
            state.set_user(expanded.user)
        elif isinstance(expanded, Expose):
            state.set_exposed(self._ports(expanded))
        elif isinstance(expanded, Volume):
            if any(p == "" for p in expanded.paths):
                raise self.fail("VOLUME specified can not be an empty string", expanded)
            state.set_volumes(expanded.paths)
        elif isinstance(expanded, Stopsignal):
            state.set_stopsignal(self._signal(expanded))
        elif isinstance(expanded, Shell):
            state.set_shell(expanded.shell)
        elif isinstance(expanded, Healthcheck):
            state.set_healthcheck(expanded.test, expanded.interval, expanded.timeout, expanded.start_period,
                                  expanded.start_interval, expanded.retries)
        elif isinstance(expanded, Onbuild):
            state.add_onbuild(expanded.expression)
        elif isinstance(expanded, Maintainer):
            state.set_maintainer(expanded.maintainer)

    def fail(self, message: str, instr: Instruction) -> StepFailed:
        return StepFailed(message, line=instr.line, end_line=instr.end_line)

    def _command(self, command: list[str], shell_form: bool) -> list[str]:
        return with_shell(self.state, command) if shell_form else list(command)

    def _ports(self, instr: Expose) -> list[str]:
        out = []
        for raw in instr.ports:
            port, _, proto = raw.rpartition(":")[2].partition("/")
            proto = (proto or "tcp").lower()
            start, _, end = port.partition("-")
            if not start.isdigit() or (end and not end.isdigit()) or proto not in ("tcp", "udp", "sctp"):
                raise self.fail(f'invalid port: "{raw}"' if start.isdigit() else
                                f"invalid containerPort: {port}", instr)
            first, last = int(start), int(end or start)
            if last < first or last > 65535:
                raise self.fail(f"invalid port range: {port}", instr)
            out += [f"{p}/{proto}" for p in range(first, last + 1)]
        return out

    def _signal(self, instr: Stopsignal) -> str:
        import signal as signals

        value = instr.signal
        name = value.upper()
        known = signals.Signals.__members__
        valid = (value.isdigit() or name in known or f"SIG{name}" in known
                 or name.startswith(("SIGRTMIN", "SIGRTMAX")))
        if not valid:
            raise self.fail(f"Invalid signal: {value}", instr)
        return value

    # ---- filesystem steps ---------------------------------------------------------------------

    def _step(self, instr: Instruction, prepare: Callable[[], tuple[str, str]],
              work: Callable[[StepRootfs, Vertex], None]) -> None:
        """A filesystem step under its own vertex: `prepare` gives (cache key, history line) — its
        errors (a missing COPY source, …) are the step's — then the step comes from the cache, from a
        --cache-from image, or from running `work`, and is recorded."""
        session = self.session
        vertex = session.progress.vertex(self.prefix(self.display(instr)))
        vertex.step = True
        state = self.state
        try:
            key, created_by = prepare()
            session.keys.append(key)
            layer, created = self._cached(key)
            if layer is None:
                layer, created = self._from_images(created_by, instr)
                if layer is not None:
                    self._record(key, layer, created, vertex.name)
            if layer is not None:
                vertex.cached()
            else:
                layer, created = self._execute(key, work, vertex)
                vertex.done()
        except StepFailed as e:
            vertex.error(str(e))
            raise StepFailed(str(e), line=e.line or instr.line, end_line=instr.end_line) from None
        except Cancelled:
            vertex.canceled()
            raise
        except BaseException as e:
            vertex.error(str(e) or type(e).__name__)
            raise
        state.add_history(created_by, layer=layer, created=created)
        state.fs_key = key

    def _cached(self, key: str) -> tuple[Layer | None, str]:
        if self.session.no_cache:
            return None, ""
        rec = self.session.cache.lookup(key)
        state = self.state
        parent = state.chain[-1] if state.chain else None
        if rec is None or rec.chain_id != chain_of(parent, rec.diff_id) or \
                not self.session.store.has_layer(rec.chain_id):
            return None, ""
        self.session.cache.note_used(key)
        return Layer(rec.chain_id, rec.diff_id, rec.size), rec.created

    def _from_images(self, created_by: str, instr: Instruction) -> tuple[Layer | None, str]:
        if not self.cache_from or self.session.no_cache or self._reads_context(instr):
            return None, ""
        chain = self.state.chain
        for image in self.cache_from:
            layers: list[Layer] = image["layers"]
            if len(layers) <= len(chain) or [x.chain_id for x in layers[:len(chain)]] != chain:
                continue
            entries = [h for h in image["history"] if not h.get("empty_layer")]
            if len(entries) != len(layers) or entries[len(chain)].get("created_by") != created_by:
                continue
            candidate = layers[len(chain)]
            if self.session.store.has_layer(candidate.chain_id):
                return candidate, str(entries[len(chain)].get("created") or _now())
        return None, ""

    @staticmethod
    def _reads_context(instr: Instruction) -> bool:
        if isinstance(instr, (Copy, Add)):
            return not (isinstance(instr, Copy) and instr.from_)
        if isinstance(instr, Run):
            return any(m.type == "bind" and not m.from_ for m in instr.mounts)
        return False

    def _execute(self, key: str, work: Callable[[StepRootfs, Vertex], None],
                 vertex: Vertex) -> tuple[Layer, str]:
        session = self.session
        with StepRootfs(session.store, self.state.chain) as fs:
            work(fs, vertex)
            session.canceller.check()
            with session.store.writing():
                layer, _ = fs.commit()
                created = _now()
                self._record(key, layer, created, vertex.name)
        return layer, created

    def _record(self, key: str, layer: Layer, created: str, description: str) -> None:
        rec = CacheRecord(key, self.state.fs_key, description, layer.chain_id, layer.diff_id, layer.size,
                          created)
        self.session.cache.store(rec, [*self.state.chain, layer.chain_id])

    # RUN ---------------------------------------------------------------------------------------

    def _run(self, instr: Run) -> None:
        if instr.security == "insecure":
            raise self.fail("granting entitlement security.insecure is not allowed by build daemon "
                            "configuration", instr)
        args, inline = self._run_args(instr)
        env = [f"{k}={v}" for k, v in self.scope.run_environment().items()]
        network = instr.network if instr.network != "default" else self.session.network
        network = "host" if network == "host" else "none"
        state = self.state
        build_args = [(d.key, self.scope.variables().get(d.key, d.value or "")) for d in self.scope.declared]

        def source_of(name: str) -> MountSource:
            return self.source_of(name, instr.line)

        for mount in instr.mounts:
            if mount.from_:
                source_of(mount.from_)  # wait for the stage before the step shows as started

        def prepare() -> tuple[str, str]:
            mounts_key: list[Any] = []
            if instr.mounts:
                from pallet.build.run_mounts import mount_key_inputs

                self.session.context_reads.extend([m.source or "."] for m in instr.mounts
                                                  if m.type == "bind" and not m.from_)
                mounts_key = mount_key_inputs(self.session, instr.mounts, state.workdir, source_of)
            key = step_key("run", state.fs_key, args, env, state.user, state.workdir, network, mounts_key,
                           inline)
            return key, run_created_by(args, build_args)

        def work(fs: StepRootfs, vertex: Vertex) -> None:
            from pallet.build.steps_run import RunRequest, execute_run  # only when a RUN really runs

            req = RunRequest(args=args, env=env, user=state.user, workdir=state.workdir, network=network,
                             mounts=instr.mounts, inline_file=inline, line=instr.line)
            execute_run(self.session, fs, req, vertex, source_of)

        self._step(instr, prepare, work)

    def _run_args(self, instr: Run) -> tuple[list[str], tuple[str, str] | None]:
        args = list(instr.command)
        inline = None
        if instr.heredocs:
            if len(args) != 1 or not instr.shell_form:
                raise self.fail(f"parsing produced an invalid run command: {args}", instr)
            if parse_heredoc(args[0]) is not None:
                doc = instr.heredocs[0]
                data = doc.text
                if data.startswith("#!"):
                    inline = (doc.name, data)
                    args = [posixpath.join("/dev/pipes", doc.name)]
                else:
                    args = [data]
            else:
                args = [args[0] + "".join("\n" + d.content + d.name for d in instr.heredocs)]
        if instr.shell_form:
            args = with_shell(self.state, args)
        return args, inline

    # COPY / ADD ----------------------------------------------------------------------------------

    def _copy(self, instr: Copy | Add) -> None:
        from pallet.build.rootfs import ReadonlyView
        from pallet.build.steps_copy import CopyInputs, copy_inputs, execute_copy, is_url

        session = self.session
        workdir = self.state.workdir
        found: dict[str, Any] = {}

        # Wait for the stage it reads before the step shows as started, as BuildKit does.
        origin = self.source_of(instr.from_, instr.line) if isinstance(instr, Copy) and instr.from_ else None

        def prepare() -> tuple[str, str]:
            inputs = copy_inputs(session, instr, origin.fs_key if origin else None)
            found["inputs"] = inputs
            if origin is None:
                session.context_reads.append([s for s in instr.sources if not is_url(s)])
            if inputs.downloads:
                session.replayable = False
            flags = "".join(f for f in ("--parents " if isinstance(instr, Copy) and instr.parents else "",
                                        f"--chown={instr.chown} " if instr.chown else "",
                                        f"--chmod={instr.chmod} " if instr.chmod else ""))
            shown = [*instr.sources, *(f"<<{c.path}" for c in instr.contents)]
            key = step_key("copy", self.state.fs_key, inputs.key, workdir)
            return key, f"{instr.keyword} {flags}{' '.join(shown)} {instr.dest} # buildkit"

        def work(fs: StepRootfs, vertex: Vertex) -> None:
            inputs: CopyInputs = found["inputs"]
            if origin is None:
                execute_copy(session, fs.merged, instr, workdir, inputs, None)
                return
            with ReadonlyView(session.store, origin.chain) as view:
                execute_copy(session, fs.merged, instr, workdir, inputs, view.path)

        try:
            self._step(instr, prepare, work)
        finally:
            if "inputs" in found:
                found["inputs"].close()

    # WORKDIR -------------------------------------------------------------------------------------

    def _workdir(self, instr: Workdir) -> None:
        state = self.state
        wd = state.set_workdir(instr.path)
        if wd == "/":
            state.add_history("WORKDIR /")
            return
        user = state.user
        key = step_key("workdir", state.fs_key, wd, user)

        def work(fs: StepRootfs, vertex: Vertex) -> None:
            from pallet.runtime import mounts, users

            owner = (0, 0)
            if user:
                try:
                    who = users.resolve(fs.merged, user)
                except Exception as e:
                    raise StepFailed(str(e)) from None
                owner = (who.uid, who.gid)
            _mkdir_owned(str(fs.merged), wd, owner, mounts.secure_join)

        self._step(instr, lambda: (key, f"WORKDIR {wd}"), work)


def _mkdir_owned(root: str, path: str, owner: tuple[int, int],
                 secure_join: Callable[[str, str], str]) -> None:
    import os

    resolved = secure_join(root, path)
    rel = resolved[len(root.rstrip("/")):].strip("/")
    cur = root.rstrip("/")
    for part in rel.split("/") if rel else []:
        cur = f"{cur}/{part}"
        if os.path.isdir(cur):
            continue
        if os.path.lexists(cur):
            raise StepFailed(f"mkdir {path}: not a directory")
        os.mkdir(cur, 0o755)
        os.chown(cur, *owner)
        os.chmod(cur, 0o755)
