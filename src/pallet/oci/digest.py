"""Digests as the OCI image-spec writes them: `sha256:<64 lowercase hex>`."""

from __future__ import annotations

import re

_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")


class DigestError(ValueError):
    pass


def sha256_digest(data: bytes) -> str:
    import hashlib  # not at import time: _hashlib (OpenSSL) costs ~2 ms, and `run` needs no hash

    return "sha256:" + hashlib.sha256(data).hexdigest()


def validate(digest: str) -> str:
    """Return the digest if it is a well-formed sha256 digest; only sha256 is stored."""
    if not _SHA256.match(digest):
        raise DigestError(f"invalid digest {digest!r}: expected sha256:<64 hex characters>")
    return digest


def hex_of(digest: str) -> str:
    return validate(digest)[7:]
