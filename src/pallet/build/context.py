"""Content hashes of COPY/ADD sources in the build context, for the build cache key.

What goes into the hash, per selected entry (paths relative to the context, in name order):
its path, its type, the permission bits including setuid/setgid/sticky, its owner when the
copy keeps owners (no --chown), and the content: the bytes of a regular file, the target of a
symlink. Modification times, sizes on disk, inode numbers and the like never do, so touching
or re-checking-out a file leaves the key unchanged.

Sources are resolved as BuildKit resolves them: relative to the context root (a leading `/`
and `..` cannot leave it), wildcards matching one path component at a time (filepath.Match),
entries excluded by .dockerignore invisible, a symlink named directly as a source followed
(within the context), symlinks inside a copied directory kept as links.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator

from pallet.build.gocompat import clean_path
from pallet.build.ignore import ContextEntry, DockerIgnore, glob_component
from pallet.errors import NotFound

__all__ = ["hash_sources", "resolve_sources"]

_WILDCARDS = frozenset("*?[\\")
_CHUNK = 1 << 20


def _lexical(pattern: str) -> str:
    """The source path relative to the context root ("" for the root itself)."""
    return clean_path("/" + pattern.replace(os.sep, "/")).lstrip("/")


def _visible(root: str, rel: str, ignore: DockerIgnore) -> bool:
    if not ignore.matches(rel):
        return True
    # An excluded directory still shows when an exception re-includes something inside it.
    full = os.path.join(root, rel)
    return os.path.isdir(full) and not os.path.islink(full) and any(True for _ in ignore.walk(root, rel))


def _expand_wildcards(root: str, rel: str) -> list[str]:
    matches = [""]
    for part in rel.split("/"):
        if not (_WILDCARDS & set(part)):
            matches = [f"{m}/{part}" if m else part for m in matches
                       if os.path.lexists(os.path.join(root, m, part))]
            continue
        regex = glob_component(part)
        found = []
        for m in matches:
            directory = os.path.join(root, m)
            if not os.path.isdir(directory):
                continue
            for name in sorted(os.listdir(directory)):
                if regex.match(name):
                    found.append(f"{m}/{name}" if m else name)
        matches = found
    return matches


def resolve_sources(context_dir: str | os.PathLike[str], pattern: str,
                    ignore: DockerIgnore | None = None) -> list[str]:
    """Context-relative paths a COPY/ADD source names; NotFound when it names nothing."""
    root = os.fspath(context_dir)
    ignore = ignore or DockerIgnore()
    rel = _lexical(pattern)
    if rel == "":
        return [""]
    if _WILDCARDS & set(rel):
        candidates = _expand_wildcards(root, rel)
    else:
        candidates = [rel] if os.path.lexists(os.path.join(root, rel)) else []
    found = [c for c in candidates if _visible(root, c, ignore)]
    if not found:
        raise NotFound(f'"/{rel}": not found')
    return found


def _follow(root: str, rel: str) -> str:
    """A source that is a symlink stands for its target, which must stay inside the context."""
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([real_root, target]) != real_root or not os.path.lexists(target):
        raise NotFound(f'"/{rel}": not found')
    return os.path.relpath(target, real_root).replace(os.sep, "/") if target != real_root else ""


def _entries(root: str, rel: str, ignore: DockerIgnore) -> Iterator[ContextEntry]:
    if os.path.islink(os.path.join(root, rel)):
        rel = _follow(root, rel)
    full = os.path.join(root, rel) if rel else root
    info = os.lstat(full)
    yield ContextEntry(rel, full, info)
    if stat.S_ISDIR(info.st_mode):
        yield from ignore.walk(root, rel)


def _digest_entry(h: hashlib._Hash, entry: ContextEntry, include_owner: bool) -> None:
    st = entry.stat
    kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else \
        "f" if stat.S_ISREG(st.st_mode) else "o"
    owner = f"{st.st_uid}:{st.st_gid}" if include_owner else ""
    header = f"{entry.path}\0{kind}\0{stat.S_IMODE(st.st_mode):o}\0{owner}\0"
    h.update(header.encode("utf-8", "surrogateescape"))
    if kind == "f":
        file_hash = hashlib.sha256()
        with open(entry.abspath, "rb") as f:
            while chunk := f.read(_CHUNK):
                file_hash.update(chunk)
        h.update(file_hash.digest())
    elif kind == "l":
        h.update(os.readlink(entry.abspath).encode("utf-8", "surrogateescape"))
    elif kind == "o" and (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        h.update(f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}".encode())
    h.update(b"\n")


def hash_sources(context_dir: str | os.PathLike[str], patterns: Iterable[str],
                 ignore: DockerIgnore | None = None, *, include_owner: bool = True) -> str:
    """`sha256:<hex>` of everything the sources select; NotFound names a source that matches nothing.

    include_owner=False for a copy with --chown, where the files' own uid/gid do not matter.
    """
    root = os.fspath(context_dir)
    ignore = ignore or DockerIgnore()
    h = hashlib.sha256()
    for pattern in patterns:
        h.update(b"source\0" + _lexical(pattern).encode("utf-8", "surrogateescape") + b"\n")
        for rel in resolve_sources(root, pattern, ignore):
            for entry in _entries(root, rel, ignore):
                _digest_entry(h, entry, include_owner)
    return "sha256:" + h.hexdigest()
