"""Image layers: unpacking layer streams into overlay diff directories, and writing them back.

`unpack_layer` turns a (possibly compressed) tar stream into an overlayfs lower directory, with OCI
whiteouts turned into overlay whiteouts; `write_layer_tar` does the reverse for an upper directory.
Unpacking is hostile-input work: the checks live in `tarsafe`, which never lets an entry write
outside the destination.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import zstandard

from pallet.images.tarsafe import (
    BLOCK,
    CHUNK,
    OPAQUE,
    HashingSource,
    LayerError,
    Readable,
    SafeTree,
    TarReader,
    apply_entry,
    show,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["LayerError", "UnpackResult", "chain_ids", "open_decompressed", "unpack_layer", "write_layer_tar"]

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_IN_CHUNK = 256 << 10  # compressed bytes per read: amortises calls, stays in cache
_OVERLAY_XATTR_PREFIX = "trusted.overlay."
_PREFETCH = 4  # decompressed chunks read ahead by the reader thread


@dataclass
class UnpackResult:
    diff_id: str  # "sha256:<hex>" of the uncompressed tar stream
    size: int  # bytes of regular file content unpacked


# --------------------------------------------------------------------------- decompression


class _RawReader(io.RawIOBase):
    """Base for the stream adapters: subclasses implement read(); readinto serves io.BufferedReader."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        return self._read(size) if size else b""

    def _read(self, size: int) -> bytes:
        raise NotImplementedError


class _Prefixed(_RawReader):
    """The sniffed bytes, then the rest of the underlying stream."""

    def __init__(self, head: bytes, stream: Readable) -> None:
        self._head = head
        self._stream = stream

    def _read(self, size: int) -> bytes:
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._stream.read(size)


class _GzipReader(_RawReader):
    """zlib inflate with big reads (much faster than gzip.GzipFile); handles multi-member files."""

    def __init__(self, src: Readable) -> None:
        self._src = src
        self._z = zlib.decompressobj(31)
        self._in = b""
        self._done = False

    def _read(self, size: int) -> bytes:
        while not self._done:
            at_end = False
            if not self._in:
                self._in = self._src.read(_IN_CHUNK)
                at_end = not self._in
            try:
                out = self._z.decompress(self._in, size)  # bounded output: a gzip bomb cannot fill memory
            except zlib.error as exc:
                raise LayerError(f"corrupt gzip stream: {exc}")
            self._in = self._z.unconsumed_tail
            if self._z.eof:
                self._next_member()
            if out:
                return out
            if at_end and not self._done:
                raise LayerError("truncated layer: the gzip stream ends early")
        return b""

    def _next_member(self) -> None:
        rest = self._z.unused_data
        while len(rest.lstrip(b"\0")) < 2:  # zero padding after a member is tolerated, as gzip(1) does
            more = self._src.read(_IN_CHUNK)
            if not more:
                if rest.strip(b"\0"):
                    raise LayerError("corrupt gzip stream: trailing garbage")
                self._done = True
                return
            rest += more
        rest = rest.lstrip(b"\0")
        if not rest.startswith(_GZIP_MAGIC):
            raise LayerError("corrupt gzip stream: trailing garbage")
        self._z = zlib.decompressobj(31)
        self._in = rest


class _ZstdFrames:
    """Follows zstd frame boundaries in the compressed bytes.  The zstandard stream reader silently
    stops at the end of its input, so this is how a stream cut short inside a frame is noticed."""

    def __init__(self) -> None:
        self._state = "magic"
        self._want = 4  # header bytes the state needs
        self._acc = b""
        self._skip = 0  # block payload bytes to pass over
        self._checksum = False
        self._frames = 0

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                continue
            take = min(self._want - len(self._acc), end - pos)
            self._acc += data[pos : pos + take]
            pos += take
            if len(self._acc) == self._want:
                header, self._acc = self._acc, b""
                self._step(header)

    def _step(self, header: bytes) -> None:
        value = int.from_bytes(header, "little")
        state = self._state
        if state == "magic" and value == 0xFD2FB528:
            self._state, self._want = "descriptor", 1
        elif state == "magic" and value & 0xFFFFFFF0 == 0x184D2A50:
            self._state, self._want = "skippable", 4
        elif state == "magic":
            raise LayerError("corrupt zstd stream: bad frame magic")
        elif state == "skippable":
            self._skip = value
            self._state, self._want = "magic", 4
        elif state == "descriptor":
            single = value >> 5 & 1
            self._checksum = bool(value >> 2 & 1)
            rest = (1 - single) + (0, 1, 2, 4)[value & 3] + (single, 2, 4, 8)[value >> 6]
            self._state, self._want = ("frame-header", rest) if rest else ("block", 3)
        elif state == "frame-header":
            self._state, self._want = "block", 3
        elif state == "block":
            kind = value >> 1 & 3
            if kind == 3:
                raise LayerError("corrupt zstd stream: reserved block type")
            self._skip = 1 if kind == 1 else value >> 3  # RLE blocks carry one byte
            if value & 1 and self._checksum:
                self._state, self._want = "checksum", 4
            elif value & 1:
                self._end_frame()
        else:  # the checksum after the last block
            self._end_frame()

    def _end_frame(self) -> None:
        self._state, self._want = "magic", 4
        self._frames += 1

    def check_complete(self) -> None:
        if self._state != "magic" or self._acc or self._skip or not self._frames:
            raise LayerError("truncated layer: the zstd stream ends inside a frame")


class _ZstdTap:
    """Hands compressed bytes to zstandard while the frame tracker watches them go past."""

    def __init__(self, src: Readable, frames: _ZstdFrames) -> None:
        self._src = src
        self._frames = frames

    def read(self, size: int = -1) -> bytes:
        data = self._src.read(size)
        self._frames.feed(data)
        return data


class _ZstdReader(_RawReader):
    def __init__(self, src: Readable) -> None:
        self._frames = _ZstdFrames()
        self._tap = _ZstdTap(src, self._frames)
        tap = cast(BinaryIO, self._tap)  # zstandard only calls read()
        dctx = zstandard.ZstdDecompressor()
        self._reader = dctx.stream_reader(tap, read_size=_IN_CHUNK, read_across_frames=True, closefd=False)
        self._done = False

    def _read(self, size: int) -> bytes:
        if self._done:
            return b""
        try:
            out = self._reader.read(size)
        except zstandard.ZstdError as exc:
            raise LayerError(f"corrupt zstd stream: {exc}")
        if not out:
            while self._tap.read(_IN_CHUNK):  # anything after what zstandard consumed must be whole frames
                pass
            self._frames.check_complete()
            self._done = True
        return out


def _open_raw(stream: Readable) -> _RawReader:
    head = b""
    while len(head) < 4:
        more = stream.read(4 - len(head))
        if not more:
            break
        head += more
    src = _Prefixed(head, stream)
    if head.startswith(_GZIP_MAGIC):
        return _GzipReader(src)
    if head == _ZSTD_MAGIC or (len(head) == 4 and head[0] & 0xF0 == 0x50 and head[1:] == b"\x2a\x4d\x18"):
        return _ZstdReader(src)  # a zstd frame, or a zstd skippable frame (as in seekable/chunked zstd)
    return src


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """Sniff the first bytes: gzip (1f 8b), zstd (28 b5 2f fd), else plain tar.  Return a readable
    stream of the tar bytes; reading it raises LayerError on corrupt or truncated compressed data."""
    return io.BufferedReader(_open_raw(stream), CHUNK)


# --------------------------------------------------------------------------- unpacking


def unpack_layer(stream: BinaryIO, dest: Path) -> UnpackResult:
    """Unpack one layer stream (tar / tar+gzip / tar+zstd, sniffed) into the empty directory dest.

    The diff_id is computed from the decompressed bytes as they stream past, including whatever
    follows the end-of-archive blocks.  Raises LayerError on hostile or corrupt input; nothing is
    ever written outside dest (the caller removes dest after an error)."""
    size = 0
    with SafeTree(dest) as tree, HashingSource(_open_raw(stream), prefetch=_PREFETCH) as source:
        reader = TarReader(source)
        while (entry := reader.next()) is not None:
            tree.trim()
            try:
                size += apply_entry(tree, reader, entry)
            except OSError as exc:
                raise LayerError(f"cannot unpack layer entry '{show(entry.name)}': {exc.strerror or exc}")
            except (ValueError, OverflowError) as exc:  # e.g. a NUL inside a PAX name, an absurd mtime
                raise LayerError(f"layer entry '{show(entry.name)}' is invalid: {exc}")
        source.drain()
        tree.finish()
    return UnpackResult(diff_id=source.digest(), size=size)


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI ChainID per layer: chain[0] = diff[0]; chain[n] = sha256(chain[n-1] + " " + diff[n])."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if chain:
            diff_id = "sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest()
        chain.append(diff_id)
    return chain


# --------------------------------------------------------------------------- writing layers


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()

    def write(self, data: ReadableBuffer) -> None:
        self._hash.update(data)
        view = memoryview(data)
        while view:
            written = self._out.write(view)
            view = view[written:] if written is not None else view[len(view) :]

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def write_layer_tar(src: Path, out: BinaryIO, *, mtime: int | None = None) -> str:
    """Write directory `src` (an overlay upper dir or a plain rootfs) as a tar layer to `out`; returns
    the diff_id of the bytes written.

    Deterministic: depth-first, each directory's entries sorted by name; numeric owners only; PAX
    format; mtimes in whole seconds, clamped to `mtime` when given (reproducible builds).  Overlay
    whiteouts become OCI ones, hardlinks become link entries, xattrs go into SCHILY.xattr records."""
    sink = _HashingWriter(out)
    root = os.fsencode(src)
    links: dict[tuple[int, int], str] = {}
    buf = bytearray(CHUNK)
    for rel, st in _walk(root):
        _write_entry(sink, root + b"/" + rel, rel, st, mtime, links, buf)
    sink.write(bytes(2 * BLOCK))
    return sink.digest()


def _walk(root: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """(relative name, lstat) depth-first, a directory before its entries, siblings sorted by name."""
    stack = sorted(os.listdir(root), reverse=True)
    while stack:
        rel = stack.pop()
        st = os.lstat(root + b"/" + rel)
        yield rel, st
        if stat.S_ISDIR(st.st_mode):
            stack.extend(rel + b"/" + name for name in sorted(os.listdir(root + b"/" + rel), reverse=True))


def _write_entry(
    sink: _HashingWriter,
    path: bytes,
    rel: bytes,
    st: os.stat_result,
    mtime: int | None,
    links: dict[tuple[int, int], str],
    buf: bytearray,
) -> None:
    mode = st.st_mode
    info = _info(rel, st, mtime)
    if stat.S_ISCHR(mode) and st.st_rdev == 0:
        # An overlay whiteout (kernels may hardlink them all to one inode: check this first).
        head, slash, base = rel.rpartition(b"/")
        info.name = _text(head + slash + b".wh." + base)
        info.mode = 0o600
        sink.write(_header(info))
        return
    xattrs = _read_xattrs(path)
    opaque = xattrs.get("trusted.overlay.opaque") == b"y"
    info.pax_headers = {
        "SCHILY.xattr." + key: _text(value)
        for key, value in xattrs.items()
        if not key.startswith(_OVERLAY_XATTR_PREFIX)
    }
    key = (st.st_dev, st.st_ino)
    if not stat.S_ISDIR(mode) and st.st_nlink > 1:
        if key in links:
            info.type, info.linkname = tarfile.LNKTYPE, links[key]
            sink.write(_header(info))
            return
        links[key] = info.name
    if stat.S_ISREG(mode):
        info.size = st.st_size
        sink.write(_header(info))
        _copy_file(sink, path, st.st_size, buf)
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
        sink.write(_header(info))
        if opaque:
            marker = _info(rel + b"/" + OPAQUE, st, mtime)
            marker.mode = stat.S_IMODE(mode) & 0o777
            sink.write(_header(marker))
    elif stat.S_ISLNK(mode):
        info.type, info.linkname = tarfile.SYMTYPE, _text(os.readlink(path))
        sink.write(_header(info))
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        info.type = (
            tarfile.CHRTYPE
            if stat.S_ISCHR(mode)
            else tarfile.BLKTYPE
            if stat.S_ISBLK(mode)
            else tarfile.FIFOTYPE
        )
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        sink.write(_header(info))
    # sockets are skipped, as docker does


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")  # tarfile turns it back into the same bytes


def _info(rel: bytes, st: os.stat_result, mtime: int | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(_text(rel))
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid, info.uname, info.gname = st.st_uid, st.st_gid, "", ""
    seconds = st.st_mtime_ns // 1_000_000_000
    info.mtime = seconds if mtime is None else min(seconds, mtime)
    return info


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _read_xattrs(path: bytes) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
            return {}
        raise
    # SELinux labels are the host's policy, not image content (docker leaves them out too).
    return {
        name: os.getxattr(path, name, follow_symlinks=False)
        for name in sorted(names)
        if name != "security.selinux"
    }


def _copy_file(sink: _HashingWriter, path: bytes, size: int, buf: bytearray) -> None:
    view = memoryview(buf)
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb", buffering=0) as f:
        left = size
        while left:
            n = f.readinto(view[: min(left, len(view))])
            if not n:
                raise LayerError(f"'{show(path)}' shrank while it was being archived")
            sink.write(view[:n])
            left -= n
    sink.write(bytes(-size % BLOCK))
