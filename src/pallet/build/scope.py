"""Variables in scope while one stage's instructions are dispatched: ARG and ENV, as docker scopes them.

- An ARG before the first FROM (global) is visible only to FROM lines, unless a stage
  re-declares it: `ARG NAME` without a value then takes the global value.
- `--build-arg NAME=v` overrides an ARG's default (it is used as given, not expanded); an ARG
  that is neither given nor defaulted is declared but unset.
- ENV, set in the stage or inherited from the base image, always overrides an ARG of the same
  name, whichever comes first (the Dockerfile reference's rule).
- A variable that is not set expands to the empty string.
- The predefined proxy ARGs (HTTP_PROXY, no_proxy, …) reach RUN's environment when given as
  build args, without an ARG instruction; they are kept out of expansion and of the image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TypeVar, cast

from pallet.build.errors import DockerfileError
from pallet.build.instructions import Arg, ArgDefinition, Env, Instruction
from pallet.build.shell import ShellLexer

__all__ = ["PREDEFINED_ARGS", "StageScope"]

InstructionT = TypeVar("InstructionT", bound=Instruction)

PREDEFINED_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})


class _ScopeExpander:
    """The Expander protocol over one snapshot of the variables."""

    def __init__(self, lexer: ShellLexer, variables: Mapping[str, str]) -> None:
        self.lexer = lexer
        self.variables = variables
        self.unmatched: set[str] = set()

    def word(self, text: str) -> str:
        result = self.lexer.expand(text, self.variables)
        self.unmatched |= result.unmatched
        return result.result

    def words(self, text: str) -> list[str]:
        result = self.lexer.expand(text, self.variables)
        self.unmatched |= result.unmatched
        return result.words

    def raw(self, text: str) -> str:
        # Heredoc bodies: `$X` expands, quotes stay, and the escape is always a backslash.
        result = ShellLexer("\\", skip_quotes=True).expand(text, self.variables)
        self.unmatched |= result.unmatched
        return result.result


class StageScope:
    """ARG/ENV state of one stage, applied instruction by instruction."""

    def __init__(self, *, global_args: Mapping[str, str], build_args: Mapping[str, str],
                 base_env: Mapping[str, str] | None = None, escape: str = "\\",
                 path: str = "Dockerfile") -> None:
        self.global_args = dict(global_args)
        self.build_args = dict(build_args)
        self.env: dict[str, str] = dict(base_env or {})  # ENV: base image config + this stage
        self.args: dict[str, str] = {}  # ARGs declared in this stage that have a value
        self.declared: list[ArgDefinition] = []  # every ARG of the stage, resolved, in order
        self.lexer = ShellLexer(escape)
        self.path = path

    def variables(self) -> dict[str, str]:
        """What `$NAME` means at this point of the stage: ARG values, then ENV on top."""
        return {**self.args, **self.env}

    def expander(self) -> _ScopeExpander:
        return _ScopeExpander(self.lexer, self.variables())

    def expand(self, word: str) -> str:
        return self.lexer.process_word(word, self.variables())

    def apply(self, instruction: InstructionT) -> InstructionT:
        """Expand an instruction's words with the current variables and record what it defines.

        Returns the expanded record, of the same type (ARG: with resolved values). Errors name the line.
        """
        try:
            if isinstance(instruction, Arg):
                return cast(InstructionT, self._declare(instruction))
            expanded = instruction.expanded(self.expander())
        except DockerfileError as e:
            raise e.located(path=self.path, line=instruction.line, end_line=instruction.end_line) from None
        except ValueError as e:  # a --mount value rejected after expansion
            raise DockerfileError(str(e), path=self.path, line=instruction.line,
                                  end_line=instruction.end_line) from None
        if isinstance(expanded, Env):
            for pair in expanded.pairs:
                self.env[pair.key] = pair.value
        return expanded

    def _declare(self, instruction: Arg) -> Arg:
        resolved: list[ArgDefinition] = []
        for definition in instruction.args:
            value = definition.value
            if definition.key in self.build_args:
                value = self.build_args[definition.key]  # used verbatim, not expanded
            elif value is not None:
                value = self.expand(value)
            elif definition.key in self.global_args:
                value = self.global_args[definition.key]  # `ARG NAME` re-declares a global
            if value is not None:
                self.args[definition.key] = value
            item = ArgDefinition(definition.key, value)
            resolved.append(item)
            self.declared.append(item)
        return replace(instruction, args=resolved)

    def run_environment(self) -> dict[str, str]:
        """The environment of a RUN step: ENV, then ARGs not shadowed, then proxy build args."""
        env = dict(self.env)
        for key, value in self.args.items():
            env.setdefault(key, value)
        for key in sorted(PREDEFINED_ARGS & self.build_args.keys()):
            env.setdefault(key, self.build_args[key])
        return env

    def image_env(self) -> dict[str, str]:
        """What the image config keeps: ENV only (ARG values never reach the image)."""
        return dict(self.env)
