"""The hostile-input half of layer unpacking.

`TarReader` is a strict streaming tar parser (ustar, GNU long names, PAX) over a `HashingSource`
that hashes every byte of the decompressed stream exactly once.  `SafeTree` creates entries below
a destination directory using only dir-fd relative system calls: every parent component is opened
with O_NOFOLLOW|O_DIRECTORY, so nothing is ever created, written or removed outside the destination,
whatever symlinks, `..` components or hardlinks the layer contains.

Everything here works on bytes names, so that names that are not UTF-8 survive unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import shutil
import stat
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

BLOCK = 512
CHUNK = 1 << 20
_ZERO_BLOCK = bytes(BLOCK)
_MAX_PAX = 1 << 20  # as Go's archive/tar (maxSpecialFileSize): docker reads nothing bigger either
_MAX_LONGNAME = 1 << 20
_MAX_NAME = 4096  # PATH_MAX
# Real trees are a few dozen levels deep; deeper ones only serve to break recursive tree walks
# (Python 3.11's shutil.rmtree among them, which the caller uses to clean up after us).
_MAX_DEPTH = 256
_FD_CACHE = 256  # open directory fds kept between entries

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NODE_TYPES = {b"3": stat.S_IFCHR, b"4": stat.S_IFBLK, b"6": stat.S_IFIFO}
OPAQUE = b".wh..wh..opq"

T = TypeVar("T")


class LayerError(Exception):
    """A layer stream is hostile, corrupt or cannot be unpacked; the message is one human line."""


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def show(name: bytes) -> str:
    """A name for messages: undecodable bytes are escaped rather than lost."""
    return name.decode("utf-8", "backslashreplace")


def split_name(name: bytes) -> tuple[bytes, ...]:
    """Normalise a tar name to path components below the layer root.

    Leading slashes are dropped (docker treats "/etc/x" as "etc/x"); `.` components vanish; `..`
    is resolved lexically and rejected when it would climb above the root.  Nothing here looks at
    the filesystem, so `a/../b` is `b` whatever `a` is.
    """
    if len(name) > _MAX_NAME:
        raise LayerError(f"layer entry '{show(name[:64])}...' has a name longer than {_MAX_NAME} bytes")
    parts: list[bytes] = []
    for comp in name.split(b"/"):
        if comp == b".." and parts:
            parts.pop()
        elif comp == b"..":
            raise LayerError(f"layer entry '{show(name)}' escapes the layer directory")
        elif comp not in (b"", b"."):
            parts.append(comp)
    if len(parts) > _MAX_DEPTH:
        raise LayerError(f"layer entry '{show(name[:64])}...' is nested more than {_MAX_DEPTH} levels deep")
    return tuple(parts)


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


# --------------------------------------------------------------------------- writing the tree


@dataclass
class _DirTimes:
    """Deferred directory mtimes, as a trie so that removing a subtree forgets it in O(depth)."""

    mtime_ns: int | None = None
    children: dict[bytes, _DirTimes] = field(default_factory=dict)

    def set(self, parts: tuple[bytes, ...], mtime_ns: int) -> None:
        node = self
        for comp in parts:
            node = node.children.setdefault(comp, _DirTimes())
        node.mtime_ns = mtime_ns

    def forget(self, parts: tuple[bytes, ...]) -> None:
        node: _DirTimes | None = self
        for comp in parts[:-1]:
            node = node.children.get(comp) if node else None
        if node is not None:
            node.children.pop(parts[-1], None)

    def items(self) -> list[tuple[tuple[bytes, ...], int]]:
        out: list[tuple[tuple[bytes, ...], int]] = []
        stack: list[tuple[tuple[bytes, ...], _DirTimes]] = [((), self)]
        while stack:
            parts, node = stack.pop()
            if node.mtime_ns is not None:
                out.append((parts, node.mtime_ns))
            stack.extend((parts + (comp,), child) for comp, child in node.children.items())
        return out


class SafeTree:
    """Creates layer entries below `root` through directory fds; never follows a symlink."""

    def __init__(self, root: os.PathLike[str] | str) -> None:
        self._root = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fds: dict[tuple[bytes, ...], int] = {(): self._root}
        self._times = _DirTimes()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __enter__(self) -> SafeTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trim(self) -> None:
        """Bound the fd cache; called between entries, never while an entry holds cached fds."""
        if len(self._fds) > _FD_CACHE:
            self._drop_cache()

    def _drop_cache(self) -> None:
        for parts, fd in self._fds.items():
            if parts:
                os.close(fd)
        self._fds = {(): self._root}

    def dir_fd(self, parts: tuple[bytes, ...], name: bytes, *, create: bool = True) -> int:
        """An fd for directory `parts`, opening (and, if `create`, making) each component without
        following symlinks.  The fd is owned by the cache and valid until the next `trim`/removal."""
        i = len(parts)
        while i and parts[:i] not in self._fds:
            i -= 1
        fd = self._fds[parts[:i]]
        owned = False
        try:
            for j in range(i, len(parts)):
                child = self._open_dir(fd, parts[: j + 1], name, create)
                if owned:
                    os.close(fd)
                fd = child
                owned = j < len(parts) - 1 and len(self._fds) >= _FD_CACHE
                if not owned:
                    self._fds[parts[: j + 1]] = fd
        except BaseException:
            if owned:
                os.close(fd)
            raise
        return fd

    def _open_dir(self, parent: int, parts: tuple[bytes, ...], name: bytes, create: bool) -> int:
        comp = parts[-1]
        try:
            return os.open(comp, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise LayerError(
                    f"layer entry '{show(name)}' needs '{show(b'/'.join(parts))}', not in the layer"
                )
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            # Linux says ENOTDIR (not ELOOP) for a symlink opened O_NOFOLLOW|O_DIRECTORY: tell them apart.
            where = show(b"/".join(parts))
            if stat.S_ISLNK(os.lstat(comp, dir_fd=parent).st_mode):
                raise LayerError(f"layer entry '{show(name)}' goes through the symlink '{where}'")
            raise LayerError(f"layer entry '{show(name)}' goes through '{where}', which is not a directory")
        # A missing parent is made root-owned 0755, as docker does.
        os.mkdir(comp, 0o700, dir_fd=parent)
        fd = os.open(comp, _DIR_FLAGS, dir_fd=parent)
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o755)
        return fd

    def remove(self, parent: int, parts: tuple[bytes, ...]) -> None:
        """Remove whatever is at `parts` (a directory with its whole tree), without following symlinks.
        Invalidates cached fds, so callers must look their parent up again."""
        base = parts[-1]
        if stat.S_ISDIR(os.lstat(base, dir_fd=parent).st_mode):
            self._drop_cache_except(parts[:-1])
            self._times.forget(parts)
            shutil.rmtree(base, dir_fd=parent)  # the fd-based walk: safe against symlinks on Linux
        else:
            os.unlink(base, dir_fd=parent)

    def _drop_cache_except(self, keep: tuple[bytes, ...]) -> None:
        # Cached fds below the removed directory would point into a deleted tree; keep only `keep`'s chain.
        for parts in [p for p in self._fds if p and p != keep[: len(p)]]:
            os.close(self._fds.pop(parts))

    def create(self, parts: tuple[bytes, ...], name: bytes, make: Callable[[int, bytes], T]) -> tuple[int, T]:
        """Run make(parent_fd, basename); if the name exists, replace what is there (docker's rule)."""
        parent = self.dir_fd(parts[:-1], name)
        try:
            return parent, make(parent, parts[-1])
        except FileExistsError:
            self.remove(parent, parts)
            return parent, make(parent, parts[-1])

    def mkdir(self, parts: tuple[bytes, ...], name: bytes, mtime_ns: int) -> int:
        """Make (or keep: a directory over a directory merges) directory `parts`; returns its fd."""
        parent = self.dir_fd(parts[:-1], name)
        try:
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(parts[-1], dir_fd=parent).st_mode):
                self.remove(parent, parts)
                os.mkdir(parts[-1], 0o700, dir_fd=parent)
        self._times.set(parts, mtime_ns)
        return self.dir_fd(parts, name)

    def finish(self) -> None:
        """Set directory mtimes last, so that creating their children did not bump them."""
        for parts, mtime_ns in self._times.items():
            self.trim()
            os.utime(self.dir_fd(parts, b"/".join(parts), create=False), ns=(mtime_ns, mtime_ns))


# --------------------------------------------------------------------------- one entry


def apply_entry(tree: SafeTree, reader: TarReader, entry: TarEntry) -> int:
    """Create one entry; returns the bytes of file content written."""
    parts = split_name(entry.name)
    if not parts:
        if entry.kind == b"5":
            return 0  # docker ignores the layer root's own entry
        raise LayerError(f"layer entry '{show(entry.name)}' would replace the layer root")
    if parts[-1].startswith(b".wh."):
        _whiteout(tree, parts, entry)
    elif entry.kind == b"0":
        _file(tree, reader, parts, entry)
        return entry.size
    elif entry.kind == b"5":
        fd = tree.mkdir(parts, entry.name, entry.mtime_ns)
        _set_fd_meta(fd, entry)
    elif entry.kind == b"2":
        target = entry.linkname  # stored as is: it resolves inside the container, never here
        parent, _ = tree.create(parts, entry.name, lambda fd, base: os.symlink(target, base, dir_fd=fd))
        _set_meta_at(parent, parts[-1], entry, symlink=True)
    elif entry.kind == b"1":
        _hardlink(tree, parts, entry)
    else:
        mode, dev = _NODE_TYPES[entry.kind] | 0o600, os.makedev(entry.devmajor, entry.devminor)
        parent, _ = tree.create(parts, entry.name, lambda fd, base: os.mknod(base, mode, dev, dir_fd=fd))
        _set_meta_at(parent, parts[-1], entry, symlink=False)
    return 0


def _file(tree: SafeTree, reader: TarReader, parts: tuple[bytes, ...], entry: TarEntry) -> None:
    # O_EXCL|O_NOFOLLOW: an existing name (even a symlink) is removed and replaced, never written through.
    _, fd = tree.create(
        parts, entry.name, lambda parent, base: os.open(base, _FILE_FLAGS, 0o600, dir_fd=parent)
    )
    try:
        reader.consume_data(fd, entry)
        _set_fd_meta(fd, entry)
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
    finally:
        os.close(fd)


def _hardlink(tree: SafeTree, parts: tuple[bytes, ...], entry: TarEntry) -> None:
    """A hardlink's target is a layer path (a leading / means the layer root, as in docker), reached
    through real directories only; the final component is linked itself, never followed."""
    what = f"layer entry '{show(entry.name)}' is a hardlink to '{show(entry.linkname)}'"
    try:
        target = split_name(entry.linkname)
    except LayerError:
        raise LayerError(f"{what}, outside the layer")
    if not target or target == parts:
        raise LayerError(what)

    def link(parent: int, base: bytes) -> None:
        src_dir = tree.dir_fd(target[:-1], entry.name, create=False)
        try:
            os.link(target[-1], base, src_dir_fd=src_dir, dst_dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(f"{what}, which is not in the layer")

    parent, _ = tree.create(parts, entry.name, link)
    is_symlink = stat.S_ISLNK(os.lstat(parts[-1], dir_fd=parent).st_mode)
    _set_meta_at(parent, parts[-1], entry, symlink=is_symlink)


def _whiteout(tree: SafeTree, parts: tuple[bytes, ...], entry: TarEntry) -> None:
    """OCI whiteouts become overlay ones: `.wh.x` a 0:0 char device `x`, `.wh..wh..opq` an opaque dir."""
    base = parts[-1]
    if base == OPAQUE:
        os.setxattr(tree.dir_fd(parts[:-1], entry.name), b"trusted.overlay.opaque", b"y")
        return
    if base.startswith(b".wh..wh."):
        return  # aufs bookkeeping (.wh..wh.plnk and friends), which docker drops too
    name = base[4:]
    if name in (b"", b".", b".."):
        raise LayerError(f"layer entry '{show(entry.name)}' is a whiteout of an invalid name")
    target = parts[:-1] + (name,)
    dev = os.makedev(0, 0)
    parent, _ = tree.create(target, entry.name, lambda fd, base: os.mknod(base, stat.S_IFCHR, dev, dir_fd=fd))
    os.chown(name, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
    os.utime(name, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)


def _set_fd_meta(fd: int, entry: TarEntry) -> None:
    os.fchown(fd, entry.uid, entry.gid)
    os.fchmod(fd, entry.mode)  # after chown, which clears setuid/setgid
    _set_xattrs(fd, entry.xattrs)  # after chown, which clears security.capability


def _set_meta_at(parent: int, base: bytes, entry: TarEntry, *, symlink: bool) -> None:
    """Metadata for entries we must not open (symlinks, devices, fifos, hardlinks to those)."""
    os.chown(base, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
    if not symlink:
        os.chmod(base, entry.mode, dir_fd=parent)  # we just made it, and it is not a symlink
    if entry.xattrs:
        _set_xattrs(b"/proc/self/fd/%d/%s" % (parent, base), entry.xattrs)  # the final name is not followed
    os.utime(base, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)


def _set_xattrs(target: int | bytes, xattrs: dict[bytes, bytes]) -> None:
    for key, value in xattrs.items():
        if key.startswith(b"trusted.overlay."):
            continue  # overlay metadata only ever comes from whiteouts, never from layer content
        try:
            if isinstance(target, int):
                os.setxattr(target, key, value)
            else:
                os.setxattr(target, key, value, follow_symlinks=False)
        except OSError as exc:
            # As moby: EPERM (e.g. user.* on a symlink), and security.* where the filesystem lacks it.
            if exc.errno != errno.EPERM and not (
                exc.errno == errno.EOPNOTSUPP and key.startswith(b"security.")
            ):
                raise
