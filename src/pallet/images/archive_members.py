"""The files (members) of an image archive being loaded, kept until the archive has been read.

A docker-archive or OCI archive is read once, in order, from a stream that may not seek (stdin).
Its index (manifest.json / index.json) usually comes last, so every member is kept: small ones in
memory, big ones spooled straight into the content store's ingest area, hashed as they pass. An
OCI layout directory is read the same way, one file at a time, as the loader asks for it. Members
are looked up through the archive's symlinks and hardlinks, and checked against the digests their
descriptors and names give.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tarfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from pallet.images import layers as layerfs
from pallet.images.content import CHUNK, BlobWriter, ContentStore
from pallet.images.sniff import compression_of, peek
from pallet.images.store import ImageError
from pallet.images.tarstream import LayerError, Readable
from pallet.oci.digest import DigestError, hex_of

__all__ = ["SMALL", "ArchiveError", "ArchiveMembers", "Member"]

SMALL = 1 << 20  # members up to this size stay in memory: configs, manifests, index files


class ArchiveError(ImageError):
    """The archive is not one we can load: not a tar, truncated, incomplete or inconsistent."""


class Member:
    """One file of the archive: bytes in memory, or a spooled, not yet committed blob."""

    def __init__(self, name: str, data: bytes | None = None, writer: BlobWriter | None = None) -> None:
        self.name = name
        self.data = data
        self.writer = writer
        if writer is not None:
            writer.file.flush()
            self.digest, self.size = "sha256:" + writer.hash.hexdigest(), writer.size
        else:
            self.digest, self.size = "sha256:" + hashlib.sha256(data or b"").hexdigest(), len(data or b"")

    def open(self) -> BinaryIO:
        if self.writer is None:
            return io.BytesIO(self.data or b"")
        return open(self.writer.tmp, "rb")

    def read_bytes(self) -> bytes:
        with self.open() as f:
            return f.read()

    def head(self, n: int = 8) -> bytes:
        with self.open() as f:
            return f.read(n)


class ArchiveMembers:
    """The members of one archive tar (see read_tar) or OCI layout directory (`root`), by name."""

    def __init__(self, content: ContentStore, root: Path | None = None) -> None:
        self.content = content  # where big members are spooled
        self.root = root  # an OCI layout directory, instead of a tar stream
        self._members: dict[str, Member] = {}
        self._links: dict[str, str] = {}

    def read_tar(self, source: BinaryIO) -> None:
        try:
            with tarfile.open(fileobj=_maybe_zstd(source), mode="r|*", bufsize=CHUNK) as tf:
                for ti in tf:
                    name = _norm(ti.name)
                    if ti.issym():
                        self._links[name] = _norm(posixpath.join(posixpath.dirname(name), ti.linkname))
                    elif ti.islnk():
                        self._links[name] = _norm(ti.linkname)
                    elif ti.isreg() and name:
                        src = tf.extractfile(ti)
                        assert src is not None
                        self._add(name, src, ti.size)
        except ArchiveError:
            raise
        except (tarfile.TarError, EOFError, zlib.error, LayerError) as exc:
            raise ArchiveError(_tar_message(exc))

    def _add(self, name: str, src: Readable, size: int) -> None:
        old = self._members.pop(name, None)
        if old is not None and old.writer is not None:
            old.writer.abort()  # a later member of the same name replaces it, as tar does
        if size <= SMALL:
            data = src.read()
            if len(data) != size:
                raise ArchiveError("invalid archive: unexpected end of data (truncated?)")
            self._members[name] = Member(name, data=data)
            return
        writer = self.content.writer()
        try:
            while chunk := src.read(CHUNK):
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        self._members[name] = Member(name, writer=writer)
        if writer.size != size:
            raise ArchiveError("invalid archive: unexpected end of data (truncated?)")

    def get(self, path: str) -> Member:
        name = _norm(path)
        for _ in range(16):  # follow symlinks and hardlinks between members, boundedly
            if name in self._members:
                return self._members[name]
            if name in self._links:
                name = self._links[name]
                continue
            if self.root is not None:
                return self._from_dir(name)
            break
        raise ArchiveError(f"invalid archive: {path} is missing")

    def _from_dir(self, name: str) -> Member:
        base = self.root
        assert base is not None
        file = base / name
        real = os.path.realpath(file)
        if not real.startswith(os.path.realpath(base) + os.sep) or not os.path.isfile(real):
            raise ArchiveError(f"invalid OCI layout {base}: {name} is missing")
        with open(real, "rb") as f:
            self._add(name, f, os.fstat(f.fileno()).st_size)
        return self._members[name]

    def has(self, name: str) -> bool:
        try:
            self.get(name)
        except ArchiveError:
            return False
        return True

    def json(self, path: str) -> Any:
        try:
            return json.loads(self.get(path).read_bytes())
        except ValueError as exc:
            raise ArchiveError(f"invalid archive: failed to decode {path}: {exc}")

    def blob(self, desc: Any) -> Member:
        """The member a descriptor points at, with its digest and size checked."""
        if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
            raise ArchiveError("invalid archive: malformed descriptor")
        try:
            path = "blobs/sha256/" + hex_of(desc["digest"])
        except DigestError as exc:
            raise ArchiveError(f"invalid archive: {exc}")
        member = self.get(path)
        self.check(member, desc["digest"])
        if isinstance(desc.get("size"), int) and desc["size"] != member.size:
            raise ArchiveError(f"invalid archive: {path}: size {member.size}, expected {desc['size']}")
        return member

    def check(self, member: Member, expected: str) -> None:
        if member.digest != expected:
            raise ArchiveError(
                f"invalid archive: {member.name}: digest mismatch: expected {expected}, got {member.digest}"
            )

    def discard(self) -> None:
        """Remove the spools of members that were not committed to the content store."""
        for member in self._members.values():
            if member.writer is not None:
                member.writer.abort()


def _norm(name: str) -> str:
    name = posixpath.normpath("/" + name).lstrip("/")
    return "" if name == "." else name


def _maybe_zstd(source: BinaryIO) -> BinaryIO:
    """tarfile sniffs gzip, bzip2 and xz itself; a zstd-compressed archive needs help."""
    head, rest = peek(source)
    return layerfs.open_decompressed(rest) if compression_of(head) == "zstd" else rest


def _tar_message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    not_tar = any(w in text for w in ("empty", "invalid header", "bad checksum", "not a"))
    if isinstance(exc, tarfile.ReadError) and not_tar and "unexpected end" not in text:
        return "invalid archive: not a tar archive"
    if isinstance(exc, EOFError) or "unexpected end" in text or "truncated" in text:
        return "invalid archive: unexpected end of data (truncated?)"
    return f"invalid archive: {text}"
