"""The stage graph of a build: which stages the target needs, their bases and dependency edges.

Rules (BuildKit's dockerfile2llb):
- Global ARGs (before the first FROM) are resolved first: `--build-arg` wins, else the default
  expanded with the ARGs above it, on top of BuildKit's automatic platform ARGs
  (BUILDPLATFORM, TARGETARCH, …, TARGETSTAGE). FROM lines and `--platform` expand with them only.
- `FROM name` refers to a stage when an earlier stage is called exactly `name`.
- `COPY --from=x` takes a stage name (case-insensitive) or index; any other value is an image
  reference (BuildKit's rule) and is listed in `image_sources` so the caller can pull it (and a
  warning is given when it looks like a misspelt stage name). Variables are not allowed in it.
- `RUN --mount=…,from=x` refers to a stage by name, else to an image.
- A stage may only depend on stages defined before it; cycles are rejected.
- Build args that no ARG of the needed stages (or the global scope) declares are reported as
  unused, as docker does, except the predefined proxy ARGs and BuildKit's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pallet.build.dockerfile import Dockerfile, Stage
from pallet.build.errors import BuildPlanError, DockerfileError
from pallet.build.gocompat import suggest, with_suggestion
from pallet.build.instructions import Arg, Copy, Run
from pallet.build.platforms import Platform, automatic_args, host_platform
from pallet.build.scope import PREDEFINED_ARGS, StageScope
from pallet.build.shell import ShellLexer
from pallet.oci.reference import ReferenceError, parse_normalized

__all__ = ["BuildPlan", "PlannedStage", "resolve_stages"]

_BUILDKIT_ARGS = frozenset({"SOURCE_DATE_EPOCH"})
_SCRATCH = "scratch"


@dataclass
class PlannedStage:
    stage: Stage
    base: str  # the base name with global ARGs expanded: an image reference, "scratch" or a stage name
    base_stage: int | None  # index of the stage it is built on, when `base` names one
    platform: Platform | None  # FROM --platform, expanded; None = the target platform
    deps: set[int] = field(default_factory=set)  # stages that must be built first
    image_sources: list[str] = field(default_factory=list)  # COPY --from / mount from= images

    @property
    def index(self) -> int:
        return self.stage.index

    @property
    def name(self) -> str:
        return self.stage.display_name


@dataclass
class BuildPlan:
    dockerfile: Dockerfile
    stages: list[PlannedStage]  # the stages the target needs, in Dockerfile (topological) order
    target: PlannedStage
    global_args: dict[str, str]  # what `ARG NAME` inside a stage can pick up
    build_args: dict[str, str]
    target_platform: Platform
    build_platform: Platform
    unused_build_args: list[str]
    warnings: list[str] = field(default_factory=list)

    def scope(self, base_env: Mapping[str, str] | None = None) -> StageScope:
        """A fresh ARG/ENV scope for dispatching one stage; `base_env` is the base image's Env
        (or the ENV the base stage ended with)."""
        return StageScope(global_args=self.global_args, build_args=self.build_args, base_env=base_env,
                          escape=self.dockerfile.escape, path=self.dockerfile.path)

    def levels(self) -> list[list[PlannedStage]]:
        """Waves of stages whose dependencies are all in earlier waves: each wave may run in parallel."""
        depth: dict[int, int] = {}
        for planned in self.stages:  # dependencies always come earlier in the list
            depth[planned.index] = 1 + max((depth[d] for d in planned.deps), default=-1)
        waves: list[list[PlannedStage]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for planned in self.stages:
            waves[depth[planned.index]].append(planned)
        return waves


def _global_args(df: Dockerfile, lexer: ShellLexer, base: dict[str, str],
                 build_args: Mapping[str, str]) -> dict[str, str]:
    args = dict(base)
    for instruction in df.meta_args:
        for definition in instruction.args:
            if definition.key in build_args:
                args[definition.key] = build_args[definition.key]
            elif definition.value is not None:
                try:
                    args[definition.key] = lexer.process_word(definition.value, args)
                except DockerfileError as e:
                    raise e.located(path=df.path, line=instruction.line) from None
    return args


def _stage_index(df: Dockerfile, name: str) -> int | None:
    stage = df.stage_by_name(name)
    return stage.index if stage is not None else None


class _Planner:
    def __init__(self, df: Dockerfile, global_args: dict[str, str], lexer: ShellLexer) -> None:
        self.df = df
        self.global_args = global_args
        self.lexer = lexer
        self.warnings: list[str] = []
        # References to a stage that is not defined earlier: an error only if the stage is needed.
        self.forward: dict[int, list[BuildPlanError]] = {s.index: [] for s in df.stages}

    def fail(self, message: str, line: int) -> BuildPlanError:
        return BuildPlanError(message, path=self.df.path, line=line)

    def expand_from(self, word: str, line: int) -> str:
        try:
            return self.lexer.process_word(word, self.global_args)
        except DockerfileError as e:
            raise e.located(path=self.df.path, line=line) from None

    def plan(self, stage: Stage) -> PlannedStage:
        base = self.expand_from(stage.base, stage.line)
        if base == "":
            raise self.fail(f"base name ({stage.base}) should not be blank", stage.line)
        platform = None
        if stage.platform:
            value = self.expand_from(stage.platform, stage.line)
            if value == "":
                raise self.fail(f"empty platform value from expression {stage.platform}", stage.line)
            try:
                platform = Platform.parse(value)
            except ValueError as e:
                raise self.fail(f"failed to parse platform {stage.platform}: {e}", stage.line) from None
        # FROM refers to a stage defined earlier, by its exact (lower-case) name.
        base_stage = next((s.index for s in self.df.stages[:stage.index] if s.name and s.name == base), None)
        if base_stage is None and base != _SCRATCH:
            self._check_reference(base, stage.line)
        planned = PlannedStage(stage=stage, base=base, base_stage=base_stage, platform=platform)
        if base_stage is not None:
            planned.deps.add(base_stage)
        for instruction in stage.instructions:
            if isinstance(instruction, Copy) and instruction.from_:
                self._copy_from(planned, instruction)
            elif isinstance(instruction, Run):
                for mount in instruction.mounts:
                    if mount.from_:
                        self._mount_from(planned, mount.from_, mount.target, instruction.line)
        return planned

    def _copy_from(self, planned: PlannedStage, copy: Copy) -> None:
        source = copy.from_
        if self.lexer.process_word(source, {}) != source:
            raise self.fail("variable expansion is not supported for --from, define a new stage with FROM "
                            "using ARG from global scope as a workaround", copy.line)
        if source.isdigit() or (source[:1] in "+-" and source[1:].isdigit()):
            index = int(source)
            if not 0 <= index < len(self.df.stages):
                raise self.fail(f"invalid stage index {index}", copy.line)
        else:
            found = _stage_index(self.df, source)
            if found is None:
                self._image_source(planned, source, copy.line)
                return
            index = found
        if index >= planned.index:
            self.forward[planned.index].append(self.fail(
                f'cannot copy from stage "{source}", it needs to be defined before current stage '
                f'"{planned.name}"', copy.line))
        planned.deps.add(index)

    def _mount_from(self, planned: PlannedStage, source: str, target: str, line: int) -> None:
        index = _stage_index(self.df, source)
        if index is None:
            self._image_source(planned, source, line)
            return
        if index >= planned.index:
            self.forward[planned.index].append(self.fail(
                f'cannot mount from stage "{source}" to "{target}", stage needs to be defined '
                "before current command", line))
        planned.deps.add(index)

    def _check_reference(self, name: str, line: int) -> None:
        try:
            parse_normalized(name)
        except ReferenceError as e:
            raise self.fail(f'failed to parse stage name "{name}": {e}', line) from None

    def _image_source(self, planned: PlannedStage, source: str, line: int) -> None:
        # Not a stage: BuildKit takes it as an image reference, so it must parse as one.
        self._check_reference(source, line)
        planned.image_sources.append(source)
        names = [s.name for s in self.df.stages if s.name]
        close = suggest(source, names, case_sensitive=False)
        if close:
            self.warnings.append(f"{self.df.path}:{line}: no stage named {source!r}, it is used as an image "
                                 f"reference (did you mean {close}?)")


def _unused_build_args(df: Dockerfile, needed: list[PlannedStage], build_args: Mapping[str, str],
                       automatic: Mapping[str, str]) -> list[str]:
    declared = {d.key for a in df.meta_args for d in a.args}
    for planned in needed:
        for instruction in planned.stage.instructions:
            if isinstance(instruction, Arg):
                declared |= {d.key for d in instruction.args}
    exempt = declared | PREDEFINED_ARGS | _BUILDKIT_ARGS | set(automatic)
    return sorted(k for k in build_args if k not in exempt and not k.startswith("BUILDKIT_"))


def resolve_stages(df: Dockerfile, build_args: Mapping[str, str] | None = None, target: str | None = None,
                   *, platform: Platform | str | None = None,
                   build_platform: Platform | None = None) -> BuildPlan:
    """Order the stages `target` (default: the last stage) needs, with bases and dependencies resolved."""
    build_args = dict(build_args or {})
    build_plat = build_platform or host_platform()
    target_plat = Platform.parse(platform) if isinstance(platform, str) else (platform or build_plat)
    if target:
        target_stage = df.stage_by_name(target)
        if target_stage is None:
            names = [s.name for s in df.stages if s.name]
            raise BuildPlanError(with_suggestion(f'target stage "{target}" could not be found', target, names,
                                                 case_sensitive=True), path=df.path)
    else:
        target_stage = df.stages[-1]
    automatic = automatic_args(build_plat, target_plat, target_stage.name, build_args)
    lexer = ShellLexer(df.escape)
    global_args = _global_args(df, lexer, automatic, build_args)
    planner = _Planner(df, global_args, lexer)
    planned = [planner.plan(stage) for stage in df.stages]
    _check_cycles(df, planned)
    needed: set[int] = set()
    pending = [target_stage.index]
    while pending:
        index = pending.pop()
        if index not in needed:
            needed.add(index)
            pending.extend(planned[index].deps)
    ordered = [p for p in planned if p.index in needed]
    for p in ordered:
        if planner.forward[p.index]:
            raise planner.forward[p.index][0]
    unused = _unused_build_args(df, ordered, build_args, automatic)
    warnings = list(planner.warnings)
    if unused:
        warnings.append(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
    return BuildPlan(dockerfile=df, stages=ordered, target=planned[target_stage.index],
                     global_args=global_args, build_args=build_args, target_platform=target_plat,
                     build_platform=build_plat, unused_build_args=unused, warnings=warnings)


def _check_cycles(df: Dockerfile, planned: list[PlannedStage]) -> None:
    # Only forward references (to stages defined later) can close a cycle.
    state: dict[int, str] = {}

    def visit(index: int) -> None:
        state[index] = "visiting"
        for dep in planned[index].deps:
            if state.get(dep) == "visiting":
                raise BuildPlanError(f"circular dependency detected on stage: {planned[dep].name}",
                                     path=df.path, line=planned[dep].stage.line)
            if dep not in state:
                visit(dep)
        state[index] = "done"

    for p in planned:
        if p.index not in state:
            visit(p.index)
