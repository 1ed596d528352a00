"""Recognising a stream's compression from its first bytes, without losing those bytes."""

from __future__ import annotations

import io
from typing import Any, BinaryIO, cast

_MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))


def compression_of(head: bytes) -> str:
    """The compression the first bytes announce: "gzip", "zstd", "bzip2", "xz", or "" for none."""
    return next((name for magic, name in _MAGIC if head.startswith(magic)), "")


def peek(stream: BinaryIO, n: int = 6) -> tuple[bytes, BinaryIO]:
    """Read the first n bytes of a stream that may not seek; return them and an equivalent stream."""
    head = stream.read(n)
    return head, cast(BinaryIO, Prefixed(head, stream))


class Prefixed(io.RawIOBase):
    """A stream with the bytes already read from it put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head = head
        self.stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if not self.head:
            return self.stream.read(-1 if size is None else size)
        if size is None or size < 0:
            out, self.head = self.head + self.stream.read(), b""
        else:
            out, self.head = self.head[:size], self.head[size:]
        return out

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)
