"""Running a build plan: every stage the target needs in its own thread, all started at once.

A stage waits only where it must: at its start for a `FROM <stage>` base, and at the instruction
that reads another stage (`COPY --from`, `RUN --mount=from=`), so independent stages run side by
side and a stage runs its own steps while the stage it copies from is still building. Base images
are resolved from the local store before anything starts (pallet does not pull during builds).

The first failure wins: it cancels the build (the Canceller kills every running step's process),
the other stages stop at their next step, and it is what the caller reports. An interrupt of the
main thread (Ctrl-C, SIGTERM turned into KeyboardInterrupt) does the same, waits for every stage
to have cleaned up (mounts, temp dirs), and is re-raised.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pallet.build.cache import step_key
from pallet.build.config import ImageState, Layer
from pallet.build.dispatch import StageDispatcher
from pallet.build.run_mounts import MountSource
from pallet.build.session import BuildError, BuildSession, Cancelled, StepFailed
from pallet.build.stages import BuildPlan, PlannedStage

__all__ = ["Executor", "ResolvedImage", "resolve_image"]


@dataclass
class ResolvedImage:
    name: str  # as BuildKit shows it: docker.io/library/busybox:latest
    id: str
    config: dict[str, Any]
    layers: list[Layer]

    @property
    def fs_key(self) -> str:
        return step_key("image", "", self.id)


def resolve_image(session: BuildSession, name: str, line: int) -> ResolvedImage:
    from pallet.errors import NotFound
    from pallet.oci import reference as refs

    store = session.store
    try:
        shown = str(refs.parse_normalized(name))
    except refs.ReferenceError as e:
        raise StepFailed(f'failed to parse stage name "{name}": {e}', line=line) from None
    try:
        rec = store.resolve(name)
    except NotFound:
        raise StepFailed(f"{name}: failed to resolve source metadata for {shown}: no such image in the local "
                         "store (pallet build does not pull: load or pull it first)", line=line) from None
    config = store.config(rec.id)
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(rec.chain_ids):
        raise BuildError(f"image {name}: its config does not match its layers")
    sizes = dict(store.conn.execute(
        f"SELECT chain_id, size FROM layers WHERE chain_id IN ({','.join('?' * len(rec.chain_ids))})",
        rec.chain_ids).fetchall()) if rec.chain_ids else {}
    layers = [Layer(c, d, int(sizes.get(c, 0))) for c, d in zip(rec.chain_ids, diff_ids, strict=True)]
    return ResolvedImage(shown, rec.id, config, layers)


@dataclass
class _StageRun:
    planned: PlannedStage
    done: threading.Event = field(default_factory=threading.Event)
    state: ImageState | None = None
    args: dict[str, str] = field(default_factory=dict)
    declared: list[Any] = field(default_factory=list)
    error: BaseException | None = None


class Executor:
    def __init__(self, session: BuildSession, plan: BuildPlan, images: dict[str, ResolvedImage],
                 cache_from: list[dict[str, Any]] | None = None) -> None:
        self.session = session
        self.plan = plan
        self.images = images
        self.cache_from = cache_from or []
        self.runs = {p.index: _StageRun(p) for p in plan.stages}
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        # BuildKit names stages in progress lines only when the Dockerfile has more than one.
        self.named = len(plan.dockerfile.stages) > 1 or any(p.image_sources for p in plan.stages)

    def run(self) -> ImageState:
        threads = [threading.Thread(target=self._stage_thread, args=(r,), name=f"stage-{i}", daemon=True)
                   for i, r in self.runs.items()]
        for t in threads:
            t.start()
        target = self.runs[self.plan.target.index]
        try:
            while not target.done.wait(0.1):
                pass
        except BaseException:
            self.session.canceller.cancel()
            self._join(threads)
            raise
        self._join(threads)
        if self.error is not None:
            raise self.error
        if target.error is not None:
            raise target.error
        assert target.state is not None
        return target.state

    def _join(self, threads: list[threading.Thread]) -> None:
        for t in threads:
            while t.is_alive():
                t.join(0.1)

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None and not isinstance(error, Cancelled):
                self.error = error
        self.session.canceller.cancel()

    # ---- one stage ------------------------------------------------------------------------------

    def _stage_thread(self, run: _StageRun) -> None:
        try:
            self._build_stage(run)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            run.error = e
            self._failed(e)
        finally:
            run.done.set()

    def _build_stage(self, run: _StageRun) -> None:
        planned = run.planned
        stage = planned.stage
        image = None
        if planned.base_stage is not None:
            base = self.wait_stage(planned.base_stage)
            assert base.state is not None
            state = base.state.child()
        elif planned.base == "scratch":
            p = self.plan.target_platform
            state = ImageState.scratch(p.architecture, p.os, p.variant, step_key("scratch", "", str(p)))
        else:
            image = self.images[planned.base]
            state = ImageState.from_image(image.config, image.layers, image.fs_key)
        scope = self.plan.scope(state.env_map())
        if planned.base_stage is not None:
            base_run = self.runs[planned.base_stage]
            scope.args.update(base_run.args)  # a stage built FROM another keeps its ARG values (BuildKit)
            scope.declared.extend(base_run.declared)
        name = stage.display_name if self.named else ""
        dispatcher = StageDispatcher(self.session, planned, state, scope, stage_name=name,
                                     source_of=self.source_of, path=self.plan.dockerfile.path,
                                     cache_from=self.cache_from)
        triggers = dispatcher.triggers()
        dispatcher.count([*triggers, *stage.instructions], counts_from=image is not None)
        if image is not None:
            vertex = self.session.progress.vertex(dispatcher.prefix(f"FROM {image.name}"))
            vertex.done()
        run.state = dispatcher.dispatch_all(triggers, stage.instructions)
        run.args = dict(scope.args)
        run.declared = list(scope.declared)

    def wait_stage(self, index: int) -> _StageRun:
        run = self.runs.get(index)
        if run is None:
            raise BuildError(f"stage {index} is not part of this build")
        while not run.done.wait(0.1):
            self.session.canceller.check()
        if run.error is not None or run.state is None:
            raise Cancelled(f"stage {run.planned.name} failed")
        return run

    def source_of(self, name: str, line: int) -> MountSource:
        """A stage (by name or index) or an image (resolved up front) that a step reads from."""
        df = self.plan.dockerfile
        index: int | None = None
        if name.isdigit():
            index = int(name)
        else:
            found = df.stage_by_name(name)
            index = found.index if found is not None else None
        if index is not None:
            run = self.wait_stage(index)
            assert run.state is not None
            return MountSource(run.state.chain, run.state.fs_key)
        image = self.images.get(name)
        if image is None:
            image = resolve_image(self.session, name, line)
            self.images[name] = image
        return MountSource([layer.chain_id for layer in image.layers], image.fs_key)
