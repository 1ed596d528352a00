"""`build`: a Dockerfile and a context become an image, as `docker build` (BuildKit) makes it.

The verb wires the pieces of pallet.build together: the context and Dockerfile
(build/context_source.py), the parser and stage plan (the front half of pallet.build), the
executor (build/executor.py: stages in parallel, the content-addressed cache), and the export:
the target stage's config and layers registered as one image, then tagged. Nothing is written
under a tag until the whole build succeeded, so a failed build leaves the previous image under
that tag as it was.

A fully cached rebuild first tries the build memo (engine/build_memo.py), which answers
without parsing anything when none of the build's inputs changed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from pallet.errors import PalletError

if TYPE_CHECKING:
    from pallet.build.config import ImageState
    from pallet.build.executor import ResolvedImage
    from pallet.build.progress import Progress
    from pallet.engine.core import Engine
    from pallet.state.paths import StatePaths

__all__ = ["BuildFailed", "BuildInputError", "BuildOptions", "build", "replay"]


class BuildFailed(PalletError):
    """The build failed; the progress output already showed where. `message` is the one-line cause."""


class BuildInputError(PalletError):
    """The build could not start: a bad tag, a missing context or Dockerfile."""


@dataclass
class BuildOptions:
    context: str = "."
    dockerfile: str | None = None  # -f; "-" reads it from stdin
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    quiet: bool = False
    iidfile: str | None = None
    secrets: dict[str, bytes] = field(default_factory=dict)  # id -> content
    progress: str = "auto"  # auto | plain | tty
    network: str = "default"
    cache_from: list[str] = field(default_factory=list)
    platform: str | None = None
    stdin: BinaryIO | None = None
    stderr: TextIO | None = None
    memo: bool = True  # try the build memo first (the CLI does so itself, before loading the engine)


def _normalized_tags(tags: list[str]) -> list[str]:
    from pallet.oci import reference as refs

    out = []
    for tag in tags:
        try:
            ref = refs.parse_normalized(tag)
        except refs.ReferenceError as e:
            raise BuildInputError(f'invalid tag "{tag}": {e}') from None
        if ref.digest:
            raise BuildInputError(f'invalid tag "{tag}": a tag cannot contain a digest')
        out.append(str(ref))
    return out


def build(engine: Engine, options: BuildOptions) -> str:
    """Build and tag the image; returns its ID. Raises BuildFailed (already reported on the progress)."""
    tags = _normalized_tags(options.tags)
    if options.memo:
        image_id = replay(engine.paths, options, tags)
        if image_id is not None:
            return image_id
    return _full_build(engine, options, tags)


def replay(paths: StatePaths, options: BuildOptions, tags: list[str] | None = None) -> str | None:
    """The memo's answer for an unchanged rebuild, or None (see engine/build_memo.py)."""
    if options.no_cache or options.context == "-" or options.dockerfile == "-":
        return None
    from pallet.engine import build_memo

    return build_memo.replay(paths, options, _normalized_tags(options.tags) if tags is None else tags)


def _full_build(engine: Engine, options: BuildOptions, tags: list[str]) -> str:
    from pallet.build.context_source import open_context
    from pallet.build.progress import make_progress

    progress = make_progress(options.progress, quiet=options.quiet, out=options.stderr)
    engine.paths.ensure()
    context = open_context(options.context, options.dockerfile, options.stdin or sys.stdin.buffer,
                           engine.paths.tmp)  # ContextError (a PalletError) when there is none
    try:
        progress.start()
        return _run(engine, options, tags, context, progress)
    finally:
        progress.stop()
        context.close()


def _run(engine: Engine, options: BuildOptions, tags: list[str], context: Any, progress: Progress) -> str:
    from pallet.build.cache import CacheStore
    from pallet.build.dockerfile import parse_dockerfile
    from pallet.build.errors import DockerfileError
    from pallet.build.executor import Executor
    from pallet.build.session import BuildError, BuildSession, Canceller, StepFailed
    from pallet.build.stages import resolve_stages

    v = progress.vertex(f"[internal] load build definition from {os.path.basename(context.dockerfile_name)}")
    v.log(f"transferring dockerfile: {len(context.dockerfile_text.encode())}B done")
    v.done()
    lines = context.dockerfile_text.splitlines()
    vertex_failed = None
    try:
        try:
            df = parse_dockerfile(context.dockerfile_text, path=os.path.basename(context.dockerfile_name))
            plan = resolve_stages(df, options.build_args, options.target, platform=options.platform)
        except ValueError as e:  # a malformed --platform
            raise BuildFailed(str(e)) from None
        _check_platform(plan)
        session = BuildSession(store=engine.images, cache=CacheStore(engine.conn), context=context,
                               progress=progress, canceller=Canceller(), secrets=dict(options.secrets),
                               network=options.network, no_cache=options.no_cache)
        images = _resolve_images(session, plan, progress)
        v = progress.vertex("[internal] load .dockerignore")
        v.log(f"transferring context: {context.ignore_size}B done")
        v.done()
        cache_from = _cache_from_images(session, options.cache_from)
        # A writer of the store for the whole build: garbage collection waits until the image is
        # registered, so no layer under a step's overlay or named by a new record is swept meanwhile.
        with engine.images.writing():
            state = Executor(session, plan, images, cache_from).run()
            session.cache.flush_used()
            image_id = _export(engine, state, tags, options, progress)
        from pallet.engine import build_memo

        build_memo.remember(engine, options, plan, context, images, image_id, progress, session.context_reads,
                            session.keys, session.replayable)
        for warning in plan.warnings:
            progress.note(warning)
        return image_id
    except DockerfileError as e:
        progress.failure(None, e.message, _excerpt(e.path, lines, e.line or 0, e.end_line or 0))
        raise BuildFailed(str(e)) from None
    except StepFailed as e:
        vertex_failed = next((v for v in reversed(progress.vertices) if v.state == "error"), None)
        progress.failure(vertex_failed, str(e), _excerpt(os.path.basename(context.dockerfile_name), lines,
                                                         e.line, e.end_line))
        raise BuildFailed(str(e)) from None
    except BuildError as e:
        raise BuildFailed(str(e)) from None


def _check_platform(plan: Any) -> None:
    from pallet.build.platforms import host_platform

    host = host_platform()
    wanted = [plan.target_platform, *(p.platform for p in plan.stages if p.platform is not None)]
    for p in wanted:
        if (p.os, p.architecture) != (host.os, host.architecture):
            raise BuildFailed(f"platform {p} is not supported: pallet builds for the host platform "
                              f"({host}) only")


def _resolve_images(session: Any, plan: Any, progress: Progress) -> dict[str, ResolvedImage]:
    from pallet.build.executor import resolve_image
    from pallet.build.instructions import Copy, Run

    wanted: dict[str, int] = {}
    for planned in plan.stages:
        if planned.base_stage is None and planned.base != "scratch":
            wanted.setdefault(planned.base, planned.stage.line)
        for source in planned.image_sources:  # named by the line that reads it
            readers = [i.line for i in planned.stage.instructions
                       if (isinstance(i, Copy) and i.from_ == source)
                       or (isinstance(i, Run) and any(m.from_ == source for m in i.mounts))]
            wanted.setdefault(source, readers[0] if readers else planned.stage.line)
    images = {}
    for name, line in wanted.items():
        image = resolve_image(session, name, line)
        v = progress.vertex(f"[internal] load metadata for {image.name}")
        v.done()
        images[name] = image
    return images


def _cache_from_images(session: Any, names: list[str]) -> list[dict[str, Any]]:
    """--cache-from: local images whose layers and history may stand in for steps (by history line)."""
    from pallet.build.executor import resolve_image
    from pallet.build.session import StepFailed

    out = []
    for name in names:
        try:
            image = resolve_image(session, name, 0)
        except StepFailed:
            session.progress.note(f"WARNING: --cache-from {name}: no such local image, ignored")
            continue
        out.append({"layers": image.layers, "history": list(image.config.get("history") or [])})
    return out


def _export(engine: Engine, state: ImageState, tags: list[str], options: BuildOptions,
            progress: Progress) -> str:
    from pallet.images.config import serialize
    from pallet.images.store import LayerRecord
    from pallet.oci.digest import sha256_digest

    v = progress.vertex("exporting to image")
    v.log("exporting layers done")
    raw = serialize(state.finished(options.labels))
    image_id = sha256_digest(raw)
    store = engine.images
    records = [LayerRecord(layer.chain_id, layer.diff_id, layer.size) for layer in state.layers]
    if engine.conn.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is not None:
        for tag in tags:  # the same image again (a cached rebuild): only the names move
            store.tag(image_id, tag)
    else:
        with store.writing():
            store.add_image(raw, records, tags=tags)
    v.log(f"writing image {image_id} done")
    for tag in tags:
        v.log(f"naming to {tag} done")
    v.done()
    if options.iidfile:
        write_iidfile(options.iidfile, image_id)
    return image_id


def write_iidfile(path: str, image_id: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(image_id)
    os.replace(tmp, path)


def _excerpt(path: str, lines: list[str], start: int, end: int) -> list[str]:
    """The Dockerfile lines around an error, marked as BuildKit prints them."""
    if not start or start > len(lines):
        return []
    end = max(end, start)
    first, last = max(1, start - 4), min(len(lines), end + 2)
    out = [f"{path}:{start}" if start == end else f"{path}:{start}-{end}", "-" * 20]
    for n in range(first, last + 1):
        mark = ">>>" if start <= n <= end else "   "
        out.append(f" {n:>3} | {mark} {lines[n - 1]}".rstrip())
    out.append("-" * 20)
    return out
