"""Detach keys: docker's `--detach-keys` format ("ctrl-p,ctrl-q", "ctrl-a,x", "DEL") and a filter that
spots the sequence in what the user types."""

from __future__ import annotations

from pallet.errors import InvalidArgument

DEFAULT = "ctrl-p,ctrl-q"
# moby/term's table: ctrl-@ is 0, ctrl-a..ctrl-z are 1..26, then ctrl-[ \ ] ^ _ are 27..31.
_CTRL = {f"ctrl-{c}": i for i, c in enumerate("@abcdefghijklmnopqrstuvwxyz[\\]^_")}


def parse(keys: str | None) -> bytes:
    """The byte sequence for a `--detach-keys` value; empty or None is the default (as docker's)."""
    codes = bytearray()
    for key in (keys or DEFAULT).split(","):
        if len(key) == 1:
            codes += key.encode("latin-1", errors="replace")[:1]
        elif key in _CTRL:
            codes.append(_CTRL[key])
        elif key == "DEL":
            codes.append(127)
        else:
            raise InvalidArgument(f"Invalid detach keys ({keys}) provided")
    return bytes(codes)


class DetachKeyFilter:
    """Feed it what the user types; it passes everything on except the detach sequence, holding back
    a partial match until it either completes (detach) or breaks (then the held bytes go on)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, whether the sequence was typed); bytes after the sequence are dropped."""
        out = bytearray()
        for byte in data:
            self.held += bytes((byte,))
            while self.held and not self.keys.startswith(self.held):
                out += self.held[:1]
                self.held = self.held[1:]
            if self.held and self.held == self.keys:
                self.held = b""
                return bytes(out), True
        return bytes(out), False
