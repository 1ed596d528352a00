"""docker cp's path rules (pkg/archive/copy.go and the CLI's cp.go): what a source names, where a
destination sends it, and under which name the copied entry lands there.

A source is archived under its base name ("." for `DIR/.`, meaning "the contents"); the plan says
which directory to extract into and whether the top entry is renamed there:

- a file to an existing file, or to a missing path: renamed to the destination's base name;
- a directory to an existing directory: extracted inside it (`DIR/.`: its contents merge in);
- a directory to a missing path: created under the destination's name;
- a directory to an existing file, or anything to a missing `PATH/`: an error.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass

from pallet.errors import PalletError


class CopyError(PalletError):
    """A copy docker would refuse; the message is docker's."""


@dataclass
class CopyInfo:
    path: str
    exists: bool = False
    is_dir: bool = False
    rebase_name: str = ""  # the name the top entry takes (a followed symlink keeps the link's name)


@dataclass
class CopyPlan:
    extract_dir: str
    top_name: str  # the archive's top entry is named this where it is extracted


def go_base(path: str) -> str:
    """Go's filepath.Base: trailing slashes dropped, "" -> ".", all slashes -> "/"."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    return posixpath.basename(stripped)


def specifies_current_dir(path: str) -> bool:
    return go_base(path) == "."


def asserts_directory(path: str) -> bool:
    return path.endswith("/") or specifies_current_dir(path)


def split_dir_entry(path: str) -> tuple[str, str]:
    """SplitPathDirEntry: ("/etc/.") -> ("/etc", "."), ("/etc/") -> ("/", "etc")."""
    cleaned = posixpath.normpath(path) if path else "."
    if specifies_current_dir(path):
        cleaned = cleaned.rstrip("/") + "/."
    return posixpath.dirname(cleaned) or ".", go_base(cleaned)


def archive_name(path: str) -> str:
    """The name docker gives a source's top entry: its base, "." for `DIR/.` (and for `/`)."""
    base = go_base(path)
    return "." if base == "/" else base


def plan(src: CopyInfo, dst: CopyInfo) -> CopyPlan:
    """PrepareArchiveCopy."""
    top = src.rebase_name or archive_name(src.path)
    dst_dir, dst_base = split_dir_entry(dst.path)
    if dst.exists and dst.is_dir:
        return CopyPlan(dst.path, top)
    if dst.exists and src.is_dir:
        raise CopyError("cannot copy directory")
    if dst.exists or src.is_dir:
        return CopyPlan(dst_dir, dst_base)
    if asserts_directory(dst.path):
        raise CopyError("no such directory")
    return CopyPlan(dst_dir, dst_base)


def rebase(path: str, resolved: str) -> tuple[str, str]:
    """GetRebaseName: keep a trailing "/." or "/" on the resolved path, and name the entry after
    the requested path when following a symlink changed its last component."""
    if specifies_current_dir(path) and not specifies_current_dir(resolved):
        resolved = resolved.rstrip("/") + "/."
    if path.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    return resolved, go_base(path) if go_base(path) != go_base(resolved) else ""


# --------------------------------------------------------------------------- the host's side


def host_source(path: str, *, follow_link: bool) -> CopyInfo:
    """CopyInfoSourcePath: parents' symlinks resolved; the last one too with -L."""
    path = _absolute(path)
    if follow_link:
        try:
            resolved = os.path.realpath(path, strict=True)
        except OSError as e:
            raise CopyError(f"lstat {path}: {_reason(e)}") from None
        resolved, rebase_name = rebase(path, resolved)
    else:
        head, base = path.rsplit("/", 1)
        resolved = os.path.realpath(head or "/").rstrip("/") + "/" + base
        rebase_name = go_base(path) if path.endswith("/") and go_base(path) != go_base(resolved) else ""
    try:
        st = os.lstat(resolved)
    except OSError as e:
        raise CopyError(f"lstat {resolved}: {_reason(e)}") from None
    return CopyInfo(resolved, True, stat.S_ISDIR(st.st_mode), rebase_name)


def host_destination(path: str) -> CopyInfo:
    """ValidateOutputPath then CopyInfoDestinationPath: a symlink at the destination is followed
    (a dangling one names the file to create); a missing destination needs an existing parent."""
    path = _absolute(path)
    parent = posixpath.dirname(posixpath.normpath(path))
    if not os.path.exists(parent):
        raise CopyError(f'invalid output path: directory "{parent}" does not exist')
    try:
        st = os.stat(path)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise CopyError(f'invalid output path: "{path}" must be a directory or a regular file')
    except FileNotFoundError:
        pass
    except OSError as e:
        raise CopyError(f"stat {path}: {_reason(e)}") from None
    for _ in range(11):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return CopyInfo(path)
        if not stat.S_ISLNK(st.st_mode):
            return CopyInfo(path, True, stat.S_ISDIR(st.st_mode))
        target = os.readlink(path)
        path = target if target.startswith("/") else posixpath.join(split_dir_entry(path)[0], target)
    raise CopyError(f"too many symlinks in {path}")


def _absolute(path: str) -> str:
    """An absolute path that keeps a trailing "/" or "/." (they carry meaning here)."""
    if path.startswith("/"):
        return path
    tail = "/." if specifies_current_dir(path) else "/" if path.endswith("/") else ""
    return os.path.abspath(path).rstrip("/") + tail


def _reason(e: OSError) -> str:
    return (e.strerror or str(e)).lower()
