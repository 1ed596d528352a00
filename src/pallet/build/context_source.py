"""Where a build's files come from: the context (a directory, or a tar on stdin) and the Dockerfile.

- `build PATH`: the directory; `build -`: stdin is either a tar of the context (plain, gzip, bzip2,
  xz or zstd; unpacked into a temp dir with the same safety rules as layers) or a bare
  Dockerfile, and then there is no context at all.
- `-f FILE`: relative to the current directory (BuildKit's buildx rule), else to the context; it may
  lie outside the context. `-f -` reads the Dockerfile from stdin.
- .dockerignore: `<Dockerfile>.dockerignore` beside the Dockerfile wins (BuildKit), else the
  context's `.dockerignore`.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pallet.build.ignore import DockerIgnore
from pallet.errors import PalletError

__all__ = ["BuildContext", "ContextError", "open_context"]

_TAR_MAGIC_OFFSET = 257


class ContextError(PalletError):
    pass


@dataclass
class BuildContext:
    dir: Path  # absolute; an empty temp dir when the build has no context
    dockerfile_text: str
    dockerfile_name: str  # as the progress names it ("Dockerfile", "-", a path)
    ignore: DockerIgnore = field(default_factory=DockerIgnore)
    _temp: Path | None = None
    ignore_size: int = 0  # bytes of the .dockerignore read (for the progress line)

    def close(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None


def _read_all(stream: BinaryIO) -> bytes:
    return stream.read()


def _is_tar(data: bytes) -> bool:
    return data[_TAR_MAGIC_OFFSET:_TAR_MAGIC_OFFSET + 5] == b"ustar"


def _decompressed(data: bytes) -> bytes | None:
    """The tar bytes of a (possibly compressed) archive, or None when stdin is not an archive."""
    if data[:2] == b"\x1f\x8b":
        import gzip

        return gzip.decompress(data)
    if data[:3] == b"BZh":
        import bz2

        return bz2.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        import lzma

        return lzma.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data if _is_tar(data) else None


def _unpack(tar: bytes, dest: Path) -> None:
    from pallet.images.tarsafe import HashingSource, LayerError, SafeTree, TarReader, apply_entry

    try:
        with SafeTree(dest) as tree, HashingSource(io.BytesIO(tar)) as source:
            reader = TarReader(source)
            while (entry := reader.next()) is not None:
                tree.trim()
                apply_entry(tree, reader, entry)
            tree.finish()
    except LayerError as e:
        raise ContextError(f"invalid build context archive: {e}") from None


def _dockerfile_path(given: str, context: Path | None) -> Path:
    candidates = [Path(given).absolute()]
    if context is not None and not os.path.isabs(given):
        candidates.append(context / given)
    for path in candidates:
        if path.is_file():
            return path
    shown = given if os.path.isabs(given) or context is None else str(candidates[-1])
    raise ContextError(f"failed to read dockerfile: open {shown}: no such file or directory")


def _ignore_file(dockerfile: Path | None, context: Path | None) -> Path | None:
    if dockerfile is not None:
        beside = dockerfile.with_name(dockerfile.name + ".dockerignore")
        if beside.is_file():
            return beside
    if context is not None and (context / ".dockerignore").is_file():
        return context / ".dockerignore"
    return None


def _context(directory: Path, text: bytes, name: str, dockerfile: Path | None,
             temp: Path | None = None) -> BuildContext:
    ignore_file = _ignore_file(dockerfile, directory)
    ignore = DockerIgnore.from_file(ignore_file) if ignore_file is not None else DockerIgnore()
    size = ignore_file.stat().st_size if ignore_file is not None else 0
    return BuildContext(directory, _decode(text), name, ignore, temp, size)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def open_context(path: str, dockerfile: str | None, stdin: BinaryIO, tmp_dir: Path) -> BuildContext:
    """Resolve the context and read the Dockerfile. Close the result when the build is over."""
    temp: Path | None = None
    try:
        if path == "-":
            if dockerfile == "-":
                raise ContextError("invalid argument: can't use stdin for both build context and dockerfile")
            data = _read_all(stdin)
            temp = Path(tempfile.mkdtemp(prefix="build-context-", dir=tmp_dir))
            tar = _decompressed(data)
            if tar is None:  # a bare Dockerfile: no context
                return BuildContext(temp, _decode(data), "-", DockerIgnore(), temp)
            _unpack(tar, temp)
            name = dockerfile or "Dockerfile"
            df_path = (temp / name.lstrip("/")).resolve()
            if not df_path.is_relative_to(temp.resolve()) or not df_path.is_file():
                raise ContextError(f"failed to read dockerfile: open {name}: no such file or directory")
            return _context(temp, df_path.read_bytes(), name, df_path, temp)
        context = Path(path).absolute()
        if not context.is_dir():
            if context.exists():
                raise ContextError(f"unable to prepare context: path {path!r} is not a directory")
            raise ContextError(f"unable to prepare context: path {path!r} not found")
        if dockerfile == "-":
            return _context(context, _read_all(stdin), "-", None)
        df_path = _dockerfile_path(dockerfile, context) if dockerfile else context / "Dockerfile"
        if not df_path.is_file():
            raise ContextError(f"failed to read dockerfile: open {df_path}: no such file or directory")
        name = dockerfile or "Dockerfile"
        return _context(context, df_path.read_bytes(), name, df_path)
    except BaseException:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        raise
