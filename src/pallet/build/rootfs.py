"""Filesystems for build steps: a writable overlay per step whose upper dir becomes the new layer,
and read-only views of a stage's or an image's layers (COPY --from, RUN --mount from=).

A step's upper dir lives under the state root's tmp (same filesystem as the layers), so that once
the step is done it is renamed into place as the layer's directory: an overlay upper dir already is
a layer directory in the store's format (overlay whiteouts, opaque markers). Its diff ID is the
digest of the tar `write_layer_tar` makes of it, streamed into a hash and nowhere else; nothing is
unpacked a second time. Overlay bookkeeping xattrs (origin, impure) are stripped first: a layer
dir holds content only.

Every mount here is undone and every temp dir removed on every path (errors, Ctrl-C); the mount
syscalls are serialised because mount_overlay changes the process's working directory.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from pallet.build.config import Layer
from pallet.images.store import ImageStore

__all__ = ["ReadonlyView", "StepRootfs", "place_layer"]

_MOUNT_LOCK = threading.Lock()  # mount_overlay chdir()s: one overlay mount at a time in this process
_OVERLAY_BOOKKEEPING = ("trusted.overlay.origin", "trusted.overlay.impure", "trusted.overlay.nlink",
                        "trusted.overlay.upper", "trusted.overlay.uuid")


class _NullSink:
    """Where the layer tar goes when only its digest is wanted."""

    def write(self, data: bytes | memoryview) -> int:
        return len(data)


def _unmount(target: Path) -> None:
    from pallet.runtime import rootfs

    rootfs.unmount(target)


class StepRootfs:
    """`merged`: the parent filesystem, writable; `commit()` turns the changes into a layer."""

    def __init__(self, store: ImageStore, chain: list[str]) -> None:
        self.store = store
        self.chain = list(chain)
        self.dir = Path(tempfile.mkdtemp(prefix="build-", dir=store.paths.tmp))
        self.upper = self.dir / "upper"
        self.work = self.dir / "work"
        self.merged = self.dir / "rootfs"
        self.mounted = False
        # Directories the step touched only to make mount points in, with their stat from before:
        # dropped from the layer when they come out unchanged (see steps_run's mount stubs).
        self.copied_up: list[tuple[str, os.stat_result]] = []

    def __enter__(self) -> StepRootfs:
        try:
            self.mount()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def mount(self) -> None:
        from pallet.runtime import rootfs

        for d in (self.upper, self.work, self.merged):
            d.mkdir(mode=0o755)
            os.chmod(d, 0o755)  # the upper dir's root is the container's "/": never the umask's 0700
        with _MOUNT_LOCK:
            rootfs.mount_overlay(self.store.paths.layers, self.chain, self.upper, self.work, self.merged)
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted:
            _unmount(self.merged)
            self.mounted = False

    def commit(self) -> tuple[Layer, bool]:
        """Unmount and make the upper dir a layer on the parent chain. Returns (layer, placed): placed
        is False when that very layer already existed (our copy is then discarded). Call inside the
        store's writing() lock, and record the layer before leaving it."""
        self.unmount()
        size = strip_bookkeeping(self.upper)
        _prune_copied_up(self.upper, self.copied_up)
        diff_id = layer_diff_id(self.upper)
        layer, placed = place_layer(self.store, self.upper, self.chain[-1] if self.chain else None,
                                    diff_id, size)
        return layer, placed

    def close(self) -> None:
        try:
            self.unmount()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _prune_copied_up(upper: Path, dirs: list[tuple[str, os.stat_result]]) -> None:
    """Remove (deepest first) upper dirs that are empty, not opaque and as they were below."""
    for rel, before in sorted(dirs, key=lambda d: d[0].count("/"), reverse=True):
        path = upper / rel
        try:
            st = os.lstat(path)
            if (not stat.S_ISDIR(st.st_mode) or os.listdir(path) or os.listxattr(path)
                    or (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
                    != (before.st_mode, before.st_uid, before.st_gid, before.st_mtime_ns)):
                continue
            os.rmdir(path)
        except OSError:
            continue


def layer_diff_id(directory: Path) -> str:
    from pallet.images.layers import write_layer_tar

    sink = _NullSink()
    return write_layer_tar(directory, sink)  # type: ignore[arg-type]


def strip_bookkeeping(directory: Path) -> int:
    """Remove overlay's own xattrs from an upper dir; returns the bytes of regular file content."""
    size = 0
    root = os.fsencode(directory)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                size += st.st_size
            if stat.S_ISLNK(st.st_mode):
                continue
            _strip(path)
    _strip(root)
    return size


def _strip(path: bytes) -> None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name in _OVERLAY_BOOKKEEPING:
            try:
                os.removexattr(path, name, follow_symlinks=False)
            except OSError:
                pass


def place_layer(store: ImageStore, directory: Path, parent_chain: str | None, diff_id: str,
                size: int) -> tuple[Layer, bool]:
    """Rename `directory` to be the layer `diff_id` on `parent_chain`. (layer, placed)."""
    from pallet.images.layers import chain_ids

    chain = chain_ids([parent_chain, diff_id])[1] if parent_chain else diff_id
    final = store.layer_dir(chain)
    layer = Layer(chain, diff_id, size)
    if final.exists():
        return layer, False
    os.chmod(directory, 0o755)
    try:
        os.rename(directory, final)
    except OSError as e:
        if final.exists():
            return layer, False  # placed by a concurrent build meanwhile: identical by content
        if e.errno != errno.EXDEV:
            raise
        shutil.copytree(directory, str(final) + ".tmp", symlinks=True)
        os.rename(str(final) + ".tmp", final)
    return layer, True


class ReadonlyView:
    """The merged, read-only filesystem of a layer chain at `path` (an overlay with no upper dir;
    an empty directory for an empty chain)."""

    def __init__(self, store: ImageStore, chain: list[str]) -> None:
        self.store = store
        self.chain = list(chain)
        self.dir = Path(tempfile.mkdtemp(prefix="build-view-", dir=store.paths.tmp))
        self.path = self.dir / "rootfs"
        self.mounted = False

    def __enter__(self) -> ReadonlyView:
        try:
            self.path.mkdir()
            if self.chain:
                self._mount()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _mount(self) -> None:
        from pallet.runtime import rootfs

        with _MOUNT_LOCK:
            rootfs.mount_readonly_overlay(self.store.paths.layers, self.chain, self.path)
        self.mounted = True

    def close(self) -> None:
        try:
            if self.mounted:
                _unmount(self.path)
                self.mounted = False
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
