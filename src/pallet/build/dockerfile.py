"""A parsed Dockerfile: its directives, the ARGs before the first FROM, and its stages.

`parse_dockerfile` is the entry point of the build frontend: text in, typed stages out, every
error naming the Dockerfile line. Variables are not expanded here: that needs the build
arguments and the stage order, see `stages.resolve_stages` and `scope.StageScope`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pallet.build.commands import to_instruction
from pallet.build.errors import DockerfileError
from pallet.build.instructions import Arg, From, Instruction
from pallet.build.parser import parse

__all__ = ["Dockerfile", "Stage", "parse_dockerfile", "parse_trigger"]


@dataclass
class Stage:
    """One `FROM …` and the instructions up to the next FROM."""

    index: int
    from_: From
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The `AS` name, lower-cased, or "" for an unnamed stage."""
        return self.from_.name

    @property
    def display_name(self) -> str:
        return self.name or f"stage-{self.index}"

    @property
    def base(self) -> str:
        """The base name as written (variables not expanded)."""
        return self.from_.base

    @property
    def platform(self) -> str:
        return self.from_.platform

    @property
    def line(self) -> int:
        return self.from_.line


@dataclass
class Dockerfile:
    path: str
    directives: dict[str, str]  # syntax / escape / check, as written at the top
    escape: str
    meta_args: list[Arg]  # ARG instructions before the first FROM (global scope)
    stages: list[Stage]
    warnings: list[str] = field(default_factory=list)

    def stage_by_name(self, name: str) -> Stage | None:
        """The stage called `name` (case-insensitive); the last one wins when names repeat."""
        found = None
        for stage in self.stages:
            if stage.name and stage.name == name.lower():
                found = stage
        return found


def parse_trigger(expression: str, *, path: str = "Dockerfile", line: int | None = None) -> Instruction:
    """An ONBUILD trigger of a base image (`Onbuild.expression`) as the instruction it runs.

    `line` is where the errors point: the FROM line of the stage that inherits the trigger.
    """
    try:
        nodes = parse(expression, path=path).nodes
        if len(nodes) != 1:
            raise DockerfileError("onbuild trigger should be a single expression", path=path)
        keyword = nodes[0].keyword.upper()
        if keyword in ("ONBUILD", "FROM", "MAINTAINER"):
            raise DockerfileError(f"{keyword} isn't allowed as an ONBUILD trigger", path=path)
        return to_instruction(nodes[0], path=path)
    except DockerfileError as e:
        raise DockerfileError(e.message, path=path, line=line) from None


def parse_dockerfile(text: str, *, path: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile into stages of typed instructions (nothing expanded yet)."""
    if text == "":
        raise DockerfileError("the Dockerfile cannot be empty", path=path)
    result = parse(text, path=path)
    meta_args: list[Arg] = []
    stages: list[Stage] = []
    warnings = list(result.warnings)
    seen_names: dict[str, int] = {}
    for node in result.nodes:
        instruction = to_instruction(node, path=path)
        if isinstance(instruction, From):
            stage = Stage(index=len(stages), from_=instruction)
            if stage.name in seen_names:
                first = seen_names[stage.name]
                warnings.append(f"{path}:{instruction.line}: Duplicate stage name {stage.name!r}, "
                                f"stage names should be unique (first defined on line {first})")
            elif stage.name:
                seen_names[stage.name] = instruction.line
            stages.append(stage)
        elif not stages and isinstance(instruction, Arg):
            meta_args.append(instruction)
        elif not stages:
            raise DockerfileError("no build stage in current context", path=path, line=node.start_line,
                                  end_line=node.end_line)
        else:
            stages[-1].instructions.append(instruction)
    if not stages:
        raise DockerfileError("dockerfile contains no stages to build", path=path)
    return Dockerfile(path=path, directives=result.directives, escape=result.escape, meta_args=meta_args,
                      stages=stages, warnings=warnings)
