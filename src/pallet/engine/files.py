"""Verbs on a container's filesystem: cp (both ways, tar streams through `-`), diff, export,
commit. Docker copies into and out of the container's mounted rootfs; so does this: a stopped
container's rootfs is mounted for the copy, under the container's lock, and unmounted after.
Container paths are resolved as if the rootfs were / (engine.rootpath): a symlink in a container
never leads a copy to the host's files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from pallet.engine import copy_paths, rootpath, treetar
from pallet.engine.containers import lookup
from pallet.engine.copy_paths import CopyError, CopyInfo
from pallet.engine.core import Engine
from pallet.engine.rwlayer import Change
from pallet.state.containers import ContainerRecord


@dataclass
class Rootfs:
    fd: int  # the container's / (a directory fd: stays usable even if its mount is detached)
    record: ContainerRecord


@contextmanager
def mounted_rootfs(engine: Engine, ref: str) -> Iterator[Rootfs]:
    """The container's merged root filesystem, mounted for as long as the caller needs it."""
    from pallet.engine.lifecycle import container_lock, refresh
    from pallet.runtime import rootfs

    rec = lookup(engine, ref)
    target = engine.paths.container_dir(rec.id) / "rootfs"
    with ExitStack() as locked:
        locked.enter_context(container_lock(engine, rec.id))
        rec = refresh(engine, rec)
        mounted = False
        if rec.state.get("Running"):
            if not (rootfs.is_mounted(target) or _copied(engine, rec)):
                # never mount a second overlay on the upper dir of a running container
                raise CopyError(f"the rootfs of running container {rec.short_id} is not mounted")
            fd = os.open(target, rootpath.DIR_FLAGS)
            # The fd keeps this mount usable even if the container exits meanwhile: unlock.
            locked.close()
        else:
            # A stopped container stays locked, so that `start` never runs on our mount.
            mounted = _mount(engine, rec)
            try:
                fd = os.open(target, rootpath.DIR_FLAGS)
            except BaseException:
                if mounted:
                    rootfs.unmount(target)
                raise
        try:
            yield Rootfs(fd, rec)
        finally:
            os.close(fd)
            if mounted:
                rootfs.unmount(target)


def _copied(engine: Engine, rec: ContainerRecord) -> bool:
    return (engine.paths.container_dir(rec.id) / ".copied").exists()


def _mount(engine: Engine, rec: ContainerRecord) -> bool:
    """Mount a stopped container's rootfs as `start` does; True when this call mounted it."""
    from pallet.engine.container_rootfs import mount_rootfs
    from pallet.runtime import rootfs

    target = engine.paths.container_dir(rec.id) / "rootfs"
    if rootfs.is_mounted(target):
        return False
    mount_rootfs(engine, rec)
    return rootfs.is_mounted(target)


# --------------------------------------------------------------------------- cp


def _container_source(fs: Rootfs, ref: str, path: str, follow_link: bool) -> rootpath.Location:
    path = "/" + path.lstrip("/")
    try:
        loc = rootpath.resolve(fs.fd, path, follow_last=follow_link or copy_paths.asserts_directory(path))
    except (FileNotFoundError, NotADirectoryError):
        raise CopyError(f"Could not find the file {path} in container {ref}") from None
    st = loc.lstat()
    if st is None:
        loc.close()
        raise CopyError(f"Could not find the file {path} in container {ref}")
    if copy_paths.asserts_directory(path) and not stat.S_ISDIR(st.st_mode):
        loc.close()
        raise CopyError(f"lstat {path}: not a directory")
    return loc


def copy_out(
    engine: Engine,
    ref: str,
    src: str,
    dest: str | BinaryIO,
    *,
    follow_link: bool = False,
    archive: bool = False,
) -> int:
    """`cp CONTAINER:SRC DEST`: DEST is a host path, or a stream that receives a tar. Returns the
    bytes of file content copied."""
    with mounted_rootfs(engine, ref) as fs:
        loc = _container_source(fs, ref, src, follow_link)
        try:
            st = loc.lstat()
            is_dir = st is not None and stat.S_ISDIR(st.st_mode)
            src_path = "/" + src.lstrip("/")
            if not isinstance(dest, str):
                entries = treetar.TreeReader().entries(
                    loc.dir_fd, loc.name, copy_paths.archive_name(src_path)
                )
                counted = _CountedEntries(entries)
                treetar.write_tar(counted, dest)
                return counted.total
            info = CopyInfo(src_path, True, is_dir)
            target = copy_paths.plan(info, copy_paths.host_destination(dest))
            entries = treetar.TreeReader().entries(loc.dir_fd, loc.name, target.top_name)
            return _extract_on_host(target.extract_dir, entries, keep_ids=archive)
        finally:
            loc.close()


def _extract_on_host(directory: str, entries: Iterator[treetar.Entry], *, keep_ids: bool) -> int:
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CopyError(f"stat {directory}: {(e.strerror or str(e)).lower()}") from None
    try:

        def shown(p: str) -> str:
            return directory.rstrip("/") + p if p != "/" else directory

        counted = _CountedEntries(entries)
        treetar.Extractor(dir_fd, "/", shown=shown, keep_ids=keep_ids).extract(counted)
        return counted.total
    finally:
        os.close(dir_fd)


def copy_in(
    engine: Engine,
    ref: str,
    src: str | BinaryIO,
    dest: str,
    *,
    follow_link: bool = False,
    archive: bool = False,
) -> int:
    """`cp SRC CONTAINER:DEST`: SRC is a host path, or a stream holding a tar to unpack into the
    directory DEST. Copied files belong to root unless `archive` keeps their owners."""
    dest = "/" + dest.lstrip("/")
    with mounted_rootfs(engine, ref) as fs:
        if fs.record.config["HostConfig"].get("ReadonlyRootfs"):
            raise CopyError("container rootfs is marked read-only")
        dst = _container_destination(fs, ref, dest)
        if not isinstance(src, str):
            if not dst.is_dir:
                raise CopyError(f'destination "{ref}:{dest}" must be a directory')
            return _extract_in_container(fs, ref, dst.path, treetar.tar_entries(src), archive)
        info = copy_paths.host_source(src, follow_link=follow_link)
        target = copy_paths.plan(info, dst)
        parent, base = copy_paths.split_dir_entry(info.path)
        dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            entries = treetar.TreeReader().entries(dir_fd, "" if base == "." else base, target.top_name)
            return _extract_in_container(fs, ref, target.extract_dir, entries, archive)
        finally:
            os.close(dir_fd)


def _container_destination(fs: Rootfs, ref: str, dest: str) -> CopyInfo:
    """The destination as the CLI stats it: a symlink is followed (inside the container)."""
    try:
        loc = rootpath.resolve(fs.fd, dest, follow_last=True)
    except OSError:
        return CopyInfo(dest)  # a missing or non-directory parent: the extraction reports it
    try:
        st = loc.lstat()
        if st is None:
            return CopyInfo(loc.path if not dest.endswith("/") else dest)
        if copy_paths.asserts_directory(dest) and not stat.S_ISDIR(st.st_mode):
            return CopyInfo(dest)  # `FILE/` does not exist as docker stats it (ENOTDIR)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise CopyError(f'destination "{ref}:{dest}" must be a directory or a regular file')
        return CopyInfo(loc.path, True, stat.S_ISDIR(st.st_mode))
    finally:
        loc.close()


def _extract_in_container(
    fs: Rootfs, ref: str, directory: str, entries: Iterator[treetar.Entry], keep_ids: bool
) -> int:
    try:
        loc = rootpath.resolve(fs.fd, directory, follow_last=True)
    except (FileNotFoundError, NotADirectoryError):
        raise CopyError(f"Could not find the file {directory} in container {ref}") from None
    try:
        st = loc.lstat()
        if st is None:
            raise CopyError(f"Could not find the file {directory} in container {ref}")
        if not stat.S_ISDIR(st.st_mode):
            raise CopyError("extraction point is not a directory")
        counted = _CountedEntries(entries)
        extractor = treetar.Extractor(
            fs.fd, loc.path, shown=lambda p: p, ids=None if keep_ids else (0, 0), keep_ids=keep_ids
        )
        extractor.extract(counted)
        return counted.total
    finally:
        loc.close()


class _CountedEntries(Iterator[treetar.Entry]):
    """Passes entries through, adding up the bytes of file content (for "Successfully copied")."""

    def __init__(self, entries: Iterator[treetar.Entry]) -> None:
        self.entries = entries
        self.total = 0

    def __next__(self) -> treetar.Entry:
        entry = next(self.entries)
        if entry.info.isreg():
            self.total += entry.info.size
        return entry


# --------------------------------------------------------------------------- diff, export, commit


def diff(engine: Engine, ref: str) -> list[Change]:
    from pallet.engine import rwlayer

    rec = lookup(engine, ref)
    _require_upper(engine, rec, "diff")
    chains = engine.images.get(rec.image_id).chain_ids if rec.image_id else []
    layers = [engine.images.layer_dir(c) for c in chains]
    return rwlayer.changes(engine.paths.container_dir(rec.id) / "upper", layers)


def _require_upper(engine: Engine, rec: ContainerRecord, verb: str) -> None:
    if _copied(engine, rec):
        raise CopyError(
            f"cannot {verb} container {rec.short_id}: its rootfs is a plain copy (no overlay "
            "upper dir to read changes from; PALLET_NO_OVERLAY or no overlayfs here)"
        )


def export(engine: Engine, ref: str, out: BinaryIO) -> None:
    """The container's whole merged filesystem as one tar (security.capability kept, as docker)."""
    with mounted_rootfs(engine, ref) as fs:
        treetar.write_tar(treetar.TreeReader().entries(fs.fd, "", "", with_top=False), out)


def commit(
    engine: Engine,
    ref: str,
    *,
    reference: str | None = None,
    changes: list[str] | None = None,
    message: str = "",
    author: str = "",
    pause: bool = True,
) -> str:
    """A new image: the container's image plus one layer of its changes, with its config. Returns
    the image ID. `pause` freezes a running container meanwhile when pausing is available."""
    from pallet.engine import commit_image

    rec = lookup(engine, ref)
    _require_upper(engine, rec, "commit")
    return commit_image.commit(
        engine, rec, reference=reference, changes=changes or [], message=message, author=author, pause=pause
    )
