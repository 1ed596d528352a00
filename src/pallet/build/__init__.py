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

from pallet.build.context import hash_sources, resolve_sources
from pallet.build.dockerfile import Dockerfile, Stage, parse_dockerfile, parse_trigger
from pallet.build.errors import BuildPlanError, DockerfileError, ExpansionError
from pallet.build.ignore import ContextEntry, DockerIgnore
from pallet.build.platforms import Platform
from pallet.build.scope import StageScope
from pallet.build.shell import ShellLexer, expand, expand_words
from pallet.build.stages import BuildPlan, PlannedStage, resolve_stages

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
