"""The build memo: a rebuild whose inputs did not change replays the last result without parsing.

After every successful build (without ADD URLs and without --no-cache) pallet records, under a key
over the Dockerfile's bytes, the .dockerignore files, the context's path and the options that
decide the result (build args, target, labels, platform, network, --cache-from):

- the base and --from images by name and ID,
- an lstat signature (type, mode, owner, size, mtime, ctime, inode) of every context entry the
  build read, and of the directories a wildcard source was matched in,
- the cache records of its steps, the image ID, and the progress lines it printed.

`replay` checks all of that with a few lstat calls and one query per table, and when nothing moved
tags the same image again and prints the steps as CACHED, as BuildKit does for a fully cached
build. It imports nothing of pallet.build (whose parser costs more to import than the whole
replay takes). Any difference (a touched file, a retagged base image, a pruned cache) falls back to
the full build, which still finds every unchanged step in the build cache: the memo only skips
work, it never decides what a step produces.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pallet.build.context_source import BuildContext
    from pallet.build.executor import ResolvedImage
    from pallet.build.progress import Progress
    from pallet.build.stages import BuildPlan
    from pallet.engine.build import BuildOptions
    from pallet.engine.core import Engine
    from pallet.state.paths import StatePaths

__all__ = ["memo_key", "remember", "replay"]

_VERSION = 1


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def memo_key(options: BuildOptions) -> str | None:
    """None when the Dockerfile cannot be read here (the full build reports why)."""
    context = os.path.abspath(options.context)
    candidates = [os.path.abspath(options.dockerfile)] if options.dockerfile else []
    candidates.append(os.path.join(context, options.dockerfile or "Dockerfile"))
    dockerfile = next((p for p in candidates if os.path.isfile(p)), None)
    if dockerfile is None:
        return None
    parts = [
        _VERSION, context, dockerfile, _read(dockerfile), _read(dockerfile + ".dockerignore"),
        _read(os.path.join(context, ".dockerignore")), sorted(options.build_args.items()), options.target,
        sorted(options.labels.items()), options.platform, options.network, options.cache_from,
    ]
    return hashlib.sha256(json.dumps(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


# ---- replay -------------------------------------------------------------------------------------

def replay(paths: StatePaths, options: BuildOptions, tags: list[str]) -> str | None:
    """The image ID if the memo holds this build and none of its inputs changed; else None."""
    from pallet.state import db

    key = memo_key(options)
    if key is None or not paths.db.exists():
        return None
    conn = db.connect(paths.db)
    try:
        row = conn.execute("SELECT image_id, inputs FROM build_memo WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        image_id, inputs = row[0], json.loads(row[1])
        if not _unchanged(conn, image_id, inputs):
            return None
        now = time.time()
        with db.write(conn) as c:
            # The image store's own tag statement (ImageStore.tag), without loading the store.
            c.executemany("INSERT OR REPLACE INTO tags(name, image_id) VALUES (?,?)",
                          [(t, image_id) for t in tags])
            c.executemany("UPDATE build_cache SET last_used=?, usage_count=usage_count+1 WHERE key=?",
                          [(now, k) for k in inputs["keys"]])
            c.execute("UPDATE build_memo SET last_used=? WHERE key=?", (now, key))
    finally:
        conn.close()
    if options.iidfile:
        from pallet.engine.build import write_iidfile

        write_iidfile(options.iidfile, image_id)
    if not options.quiet:
        _print(options, inputs["vertices"], image_id, tags)
    return str(image_id)


def _unchanged(conn: Any, image_id: str, inputs: dict[str, Any]) -> bool:
    if conn.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is None:
        return False
    for name, wanted in inputs["images"].items():
        row = conn.execute("SELECT image_id FROM tags WHERE name=?", (name,)).fetchone()
        if row is None or row[0] != wanted:
            return False
    keys = inputs["keys"]
    if keys:
        found = conn.execute(f"SELECT COUNT(*) FROM build_cache WHERE key IN ({','.join('?' * len(keys))})",
                             keys).fetchone()[0]
        if found != len(set(keys)):
            return False
    root = inputs["context"]
    for rel, signature in inputs["entries"]:
        try:
            st = os.lstat(os.path.join(root, rel) if rel else root)
        except OSError:
            return False
        if _signature(st) != signature:
            return False
    return True


def _print(options: BuildOptions, vertices: list[list[str]], image_id: str, tags: list[str]) -> None:
    """The steps as a fully cached BuildKit build shows them."""
    out = options.stderr or sys.stderr
    steps = [*vertices, ["exporting to image", "done"]]
    if options.progress == "tty" or (options.progress == "auto" and out.isatty()):
        width = 80
        lines = [f"[+] Building 0.0s ({len(steps)}/{len(steps)}) FINISHED"]
        for name, state in steps:
            label = f" => {'CACHED ' if state == 'cached' else ''}{name}"
            lines.append(f"{label[:width - 6]:<{width - 6}} 0.0s")
        out.write("\n".join(lines) + "\n")
        out.flush()
        return
    text = ['#0 building with "default" instance using pallet driver\n\n']
    for n, (name, state) in enumerate(steps, 1):
        text.append(f"#{n} {name}\n")
        if n == len(steps):
            text.append(f"#{n} exporting layers done\n#{n} writing image {image_id} done\n")
            text += [f"#{n} naming to {t} done\n" for t in tags]
        text.append(f"#{n} CACHED\n\n" if state == "cached" else f"#{n} DONE 0.0s\n\n")
    out.write("".join(text))
    out.flush()


# ---- recording ----------------------------------------------------------------------------------

def remember(engine: Engine, options: BuildOptions, plan: BuildPlan, context: BuildContext,
             images: dict[str, ResolvedImage], image_id: str, progress: Progress,
             context_reads: list[list[str]], keys: list[str], replayable: bool) -> None:
    """Record a successful build for `replay` (best effort: a failure here only costs speed)."""
    from pallet.state import db

    if not replayable or options.no_cache or options.context == "-" or options.dockerfile == "-":
        return
    key = memo_key(options)
    if key is None:
        return
    try:
        entries = _context_entries(context, context_reads)
    except OSError:
        return
    vertices = [[v.name, "cached" if v.step else "done"] for v in progress.vertices
                if v.name != "exporting to image"]
    inputs = {
        "images": {image.name: image.id for image in images.values()},
        "context": str(context.dir), "entries": entries, "keys": sorted(set(keys)), "vertices": vertices,
    }
    with db.write(engine.conn) as c:
        c.execute("INSERT OR REPLACE INTO build_memo(key, image_id, inputs, last_used) VALUES (?,?,?,?)",
                  (key, image_id, json.dumps(inputs), time.time()))


def _context_entries(context: BuildContext, reads: list[list[str]]) -> list[list[Any]]:
    """Signatures of what the build read from the context (see the module docstring)."""
    from pallet.build.context import resolve_sources

    root = str(context.dir)
    found: dict[str, list[int]] = {}

    def add(rel: str) -> None:
        if rel not in found:
            found[rel] = _signature(os.lstat(os.path.join(root, rel) if rel else root))

    for patterns in reads:
        for pattern in patterns:
            wildcard = any(ch in pattern for ch in "*?[\\")
            for rel in resolve_sources(root, pattern, context.ignore):
                parts = rel.split("/") if rel else []
                if wildcard:
                    add("")
                    for i in range(1, len(parts)):
                        add("/".join(parts[:i]))
                add(rel)
                full = os.path.join(root, rel) if rel else root
                if os.path.islink(full):
                    rel = os.path.relpath(os.path.realpath(full), os.path.realpath(root))
                    rel = "" if rel == "." else rel
                    add(rel)
                    full = os.path.join(root, rel) if rel else root
                if os.path.isdir(full):
                    for entry in context.ignore.walk(root, rel):
                        add(entry.path)
    return [[rel, sig] for rel, sig in found.items()]
