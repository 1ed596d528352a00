"""The front half of `pallet build`: Dockerfile syntax, variables, stages, .dockerignore, context hashes.

Pure logic, no containers. The executor uses:

- `parse_dockerfile(text, path=…)` -> `Dockerfile` (directives, global ARGs, `Stage`s of typed
  instructions with their line numbers);
- `resolve_stages(df, build_args, target)` -> `BuildPlan` (the stages the target needs, in order,
  with expanded base names, dependency edges and `levels()` for parallel execution);
- `plan.scope(base_env)` -> `StageScope`, to expand each instruction with the ARG/ENV values in
  scope while dispatching a stage (`scope.apply(instruction)`, `scope.run_environment()`);
- `parse_trigger(expression)` for the ONBUILD triggers a base image carries;
- `expand(word, env)` / `expand_words(word, env)` for docker's shell-word expansion;
- `DockerIgnore.from_file(path)`, `.matches(relpath)`, `.walk(context_dir)`;
- `hash_sources(context_dir, patterns, ignore)` for COPY/ADD cache keys.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pallet.build.context import hash_sources, resolve_sources
    from pallet.build.dockerfile import Dockerfile, Stage, parse_dockerfile, parse_trigger
    from pallet.build.errors import BuildPlanError, DockerfileError, ExpansionError
    from pallet.build.ignore import ContextEntry, DockerIgnore
    from pallet.build.platforms import Platform
    from pallet.build.scope import StageScope
    from pallet.build.shell import ShellLexer, expand, expand_words
    from pallet.build.stages import BuildPlan, PlannedStage, resolve_stages

# Importing the package must stay cheap (a fully cached build never parses a Dockerfile), so
# each name is loaded from its module on first use (PEP 562).
_HOMES = {
    "hash_sources": "pallet.build.context",
    "resolve_sources": "pallet.build.context",
    "Dockerfile": "pallet.build.dockerfile",
    "Stage": "pallet.build.dockerfile",
    "parse_dockerfile": "pallet.build.dockerfile",
    "parse_trigger": "pallet.build.dockerfile",
    "BuildPlanError": "pallet.build.errors",
    "DockerfileError": "pallet.build.errors",
    "ExpansionError": "pallet.build.errors",
    "ContextEntry": "pallet.build.ignore",
    "DockerIgnore": "pallet.build.ignore",
    "Platform": "pallet.build.platforms",
    "StageScope": "pallet.build.scope",
    "ShellLexer": "pallet.build.shell",
    "expand": "pallet.build.shell",
    "expand_words": "pallet.build.shell",
    "BuildPlan": "pallet.build.stages",
    "PlannedStage": "pallet.build.stages",
    "resolve_stages": "pallet.build.stages",
}


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'pallet.build' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BuildPlan",
    "BuildPlanError",
    "ContextEntry",
    "DockerIgnore",
    "Dockerfile",
    "DockerfileError",
    "ExpansionError",
    "PlannedStage",
    "Platform",
    "ShellLexer",
    "Stage",
    "StageScope",
    "expand",
    "expand_words",
    "hash_sources",
    "parse_dockerfile",
    "parse_trigger",
    "resolve_sources",
    "resolve_stages",
]
