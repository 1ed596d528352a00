"""The streaming half of layer unpacking: reading a tar stream, one header at a time.

`HashingSource` is a buffered reader over the decompressed stream that hashes every byte exactly
once.  `TarReader` is a strict streaming tar parser over it (ustar, GNU long names and links, PAX
extended headers) that yields `TarEntry` headers and never holds file data in memory.  Creating
the entries on disk is `tarsafe`'s job.

Everything here works on bytes names, so that names that are not UTF-8 survive unchanged.
"""

from __future__ import annotations

import hashlib
import os
import queue
import struct
import threading
from dataclasses import dataclass, field
from typing import Protocol

BLOCK = 512
CHUNK = 1 << 20
_ZERO_BLOCK = bytes(BLOCK)
_MAX_PAX = 1 << 20  # as Go's archive/tar (maxSpecialFileSize): docker reads nothing bigger either
_MAX_LONGNAME = 1 << 20


class LayerError(Exception):
    """A layer stream is hostile, corrupt or cannot be unpacked; the message is one human line."""


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def show(name: bytes) -> str:
    """A name for messages: undecodable bytes are escaped rather than lost."""
    return name.decode("utf-8", "backslashreplace")


# --------------------------------------------------------------------------- reading the stream


class HashingSource:
    """Buffered reader over the decompressed stream; every byte is hashed exactly once, as it is read.

    With `prefetch`, a thread reads (and so decompresses) and hashes up to that many chunks ahead:
    zlib, zstd and sha256 release the GIL, so this overlaps them with creating the files.  Call
    close() in every case: it stops the thread before the caller gets its stream back."""

    def __init__(self, raw: Readable, *, prefetch: int = 0) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self._buf = b""
        self._pos = 0
        self._total = 0
        self._eof = False
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(max(prefetch, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if prefetch:
            self._thread = threading.Thread(target=self._produce, name="layer-reader", daemon=True)
            self._thread.start()

    @property
    def offset(self) -> int:
        """Bytes handed to the consumer so far."""
        return self._total - (len(self._buf) - self._pos)

    def _read_chunk(self) -> bytes:
        chunk = self._raw.read(CHUNK)
        if chunk:
            self._hash.update(chunk)
        return chunk

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._read_chunk()
                self._put(chunk)
                if not chunk:
                    return
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                pass

    def _more(self) -> bytes:
        if self._eof:
            return b""
        if self._thread is None:
            chunk = self._read_chunk()
        else:
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            chunk = item
        self._eof = not chunk
        self._total += len(chunk)
        return chunk

    def close(self) -> None:
        """Stop the reader thread and wait for it, so that it no longer touches the stream."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __enter__(self) -> HashingSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, n: int) -> bytes:
        """n bytes, or fewer only at the end of the stream."""
        end = self._pos + n
        if end <= len(self._buf):
            data = self._buf[self._pos : end]
            self._pos = end
            return data
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        while have < n:
            chunk = self._more()
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        self._buf = b"".join(parts)
        self._pos = min(n, have)
        return self._buf[:n]

    def copy_to(self, fd: int, n: int) -> None:
        """Write the next n bytes to fd straight from the decompressed chunks (no extra copy)."""
        while n:
            if self._pos >= len(self._buf):
                self._buf, self._pos = self._more(), 0
                if not self._buf:
                    raise LayerError("truncated layer: the stream ends inside a file's data")
            take = min(n, len(self._buf) - self._pos)
            view = memoryview(self._buf)[self._pos : self._pos + take]
            while view:
                view = view[os.write(fd, view) :]
            self._pos += take
            n -= take

    def skip(self, n: int) -> None:
        while n:
            if self._pos >= len(self._buf):
                self._buf, self._pos = self._more(), 0
                if not self._buf:
                    raise LayerError("truncated layer: the stream ends inside an entry")
            take = min(n, len(self._buf) - self._pos)
            self._pos += take
            n -= take

    def drain(self) -> None:
        """Hash the rest of the stream (the end-of-archive blocks and any padding after them)."""
        self._buf, self._pos = b"", 0
        while self._more():
            pass

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


@dataclass(slots=True)
class TarEntry:
    name: bytes
    kind: bytes  # b"0" file, b"1" hardlink, b"2" symlink, b"3" char, b"4" block, b"5" dir, b"6" fifo
    mode: int
    uid: int
    gid: int
    size: int  # bytes of data that follow the header
    mtime_ns: int
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[bytes, bytes] = field(default_factory=dict)


_HEADER_ONLY = frozenset((b"1", b"2", b"3", b"4", b"5", b"6"))
_KINDS = _HEADER_ONLY | {b"0"}
_EXTENSIONS = frozenset((b"x", b"g", b"L", b"K"))
_OCTAL_DIGITS = b"01234567"


def _number(raw: bytes, what: str) -> int:
    """A numeric header field: octal text, or GNU base-256 when the high bit of the first byte is set."""
    if raw and raw[0] & 0x80:
        if raw[0] == 0xFF:
            return int.from_bytes(raw, "big", signed=True)
        return int.from_bytes(bytes((raw[0] & 0x7F,)) + raw[1:], "big")
    text = raw.strip(b" \0")
    if text.translate(None, _OCTAL_DIGITS):
        raise LayerError(f"corrupt tar header: bad {what} field {show(raw)!r}")
    return int(text, 8) if text else 0


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = _number(block[148:156], "checksum")
    except LayerError:
        return False
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    if stored == unsigned:
        return True
    # Some old tars summed signed chars; Go and tarfile accept both.
    signed = sum(struct.unpack_from("148b", block)) + sum(struct.unpack_from("356b", block, 156)) + 256
    return stored == signed


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """Parse `<len> <key>=<value>\\n` records; values are kept as raw bytes (xattrs are binary)."""
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0 and not data[pos:].strip(b"\0"):
            break  # NUL padding after the last record (some writers add it)
        space = data.find(b" ", pos, pos + 20)
        length_text = data[pos:space] if space > pos else b""
        if not length_text.isdigit():
            raise LayerError("corrupt PAX header: bad record length")
        end = pos + int(length_text)
        if end > len(data) or end <= space + 1 or data[end - 1] != 0x0A:
            raise LayerError("corrupt PAX header: record overruns the header")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise LayerError("corrupt PAX header: record without '='")
        records[key] = value
        pos = end
    return records


def _pax_int(pax: dict[bytes, bytes], key: bytes, default: int) -> int:
    """A PAX integer overrides the header field; empty means "keep the header's value" (as Go does)."""
    text = pax.get(key)
    if not text:
        return default
    if not text.isdigit() or len(text) > 20:
        raise LayerError(f"corrupt PAX header: bad {show(key)} {show(text[:40])!r}")
    return int(text)


def _pax_time_ns(text: bytes) -> int:
    """PAX times are decimal seconds with an optional fraction: keep nanoseconds exactly."""
    sign = -1 if text.startswith(b"-") else 1
    whole, _, frac = text.lstrip(b"-").partition(b".")
    if not whole.isdigit() or len(whole) > 20 or (frac and not frac.isdigit()):
        raise LayerError(f"corrupt PAX header: bad time {show(text)!r}")
    return sign * (int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, b"0")))


class TarReader:
    """Yields the entries of a tar stream, one header at a time, never holding file data in memory."""

    def __init__(self, src: HashingSource) -> None:
        self._src = src
        self._unread = 0  # data (plus padding) of the current entry not yet consumed
        self._entries = 0

    def next(self) -> TarEntry | None:
        """The next entry, or None at the end of the archive."""
        self._src.skip(self._unread)
        self._unread = 0
        pax: dict[bytes, bytes] = {}
        longname = longlink = None
        while True:
            block = self._header_block(pending=bool(pax) or longname is not None or longlink is not None)
            if block is None:
                return None
            flag = block[156:157]
            size = _number(block[124:136], "size")
            if flag not in _EXTENSIONS:
                size = _pax_int(pax, b"size", size)
            if size < 0:
                raise LayerError("corrupt tar header: negative size")
            if flag == b"x":
                pax.update(_pax_records(self._meta(size, _MAX_PAX)))
            elif flag == b"g":
                self._meta(size, _MAX_PAX)  # global headers are ignored, as docker does
            elif flag == b"L":
                longname = self._meta(size, _MAX_LONGNAME).split(b"\0", 1)[0]
            elif flag == b"K":
                longlink = self._meta(size, _MAX_LONGNAME).split(b"\0", 1)[0]
            else:
                entry = self._entry(block, flag, size, pax, longname, longlink)
                if entry.kind in _HEADER_ONLY:
                    entry.size = 0  # as Go's reader: these types never carry data, whatever the header says
                self._entries += 1
                self._unread = entry.size + (-entry.size % BLOCK)
                return entry

    def consume_data(self, fd: int, entry: TarEntry) -> None:
        """Copy the current regular file's data to fd."""
        self._src.copy_to(fd, entry.size)
        self._unread -= entry.size

    def _header_block(self, *, pending: bool) -> bytes | None:
        offset = self._src.offset
        block = self._src.read(BLOCK)
        if not block and self._entries == 0 and offset == 0:
            raise LayerError("not a tar archive: the stream is empty")
        if not block and not pending:
            return None  # end of stream at a header boundary: Go's reader accepts this too
        if len(block) < BLOCK:
            raise LayerError("truncated layer: the stream ends inside a tar header")
        if block == _ZERO_BLOCK and not pending:
            return None
        if not _checksum_ok(block):
            if offset == 0:
                raise LayerError("not a tar archive")
            raise LayerError(f"corrupt tar header at offset {offset}")
        return block

    def _meta(self, size: int, limit: int) -> bytes:
        if size > limit:
            raise LayerError(f"tar extension header of {size} bytes is larger than the {limit} allowed")
        data = self._src.read(size)
        if len(data) < size:
            raise LayerError("truncated layer: the stream ends inside a tar extension header")
        self._src.skip(-size % BLOCK)
        return data

    def _entry(
        self,
        block: bytes,
        flag: bytes,
        size: int,
        pax: dict[bytes, bytes],
        longname: bytes | None,
        longlink: bytes | None,
    ) -> TarEntry:
        name = longname if longname is not None else block[0:100].split(b"\0", 1)[0]
        if longname is None and block[257:263] == b"ustar\0":
            prefix = block[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        name = pax.get(b"path") or name
        linkname = pax.get(b"linkpath") or (
            longlink if longlink is not None else block[157:257].split(b"\0", 1)[0]
        )
        kind = _kind(flag, name)
        if kind == b"S" or any(key.startswith(b"GNU.sparse.") for key in pax):
            raise LayerError(f"layer entry '{show(name)}' is a sparse file, which is not supported")
        if kind not in _KINDS:
            raise LayerError(f"layer entry '{show(name)}' has the unsupported tar type {show(flag)!r}")
        uid = _pax_int(pax, b"uid", _number(block[108:116], "uid"))
        gid = _pax_int(pax, b"gid", _number(block[116:124], "gid"))
        if not (0 <= uid < 0xFFFFFFFF and 0 <= gid < 0xFFFFFFFF):
            raise LayerError(f"layer entry '{show(name)}' has an invalid owner {uid}:{gid}")
        if pax.get(b"mtime"):
            mtime_ns = _pax_time_ns(pax[b"mtime"])
        else:
            mtime_ns = _number(block[136:148], "mtime") * 1_000_000_000
        xattrs = {key[13:]: value for key, value in pax.items() if key.startswith(b"SCHILY.xattr.") and value}
        return TarEntry(
            name=name,
            kind=kind,
            mode=_number(block[100:108], "mode") & 0o7777,
            uid=uid,
            gid=gid,
            size=size,
            mtime_ns=mtime_ns,
            linkname=linkname,
            devmajor=_number(block[329:337], "devmajor") if kind in b"34" else 0,
            devminor=_number(block[337:345], "devminor") if kind in b"34" else 0,
            xattrs=xattrs,
        )


def _kind(flag: bytes, name: bytes) -> bytes:
    if flag == b"\0":
        return b"5" if name.endswith(b"/") else b"0"  # old V7 tars mark directories by the slash
    if flag == b"7":
        return b"0"  # contiguous file: a regular file everywhere that matters
    return flag
