"""Errors every layer may raise; front ends print the message as one line."""

from __future__ import annotations


class PalletError(Exception):
    """A failure the user should see as one clear line. `exit_code` follows docker's CLI."""

    exit_code = 1


class NotFound(PalletError):
    pass


class Conflict(PalletError):
    pass


class InvalidArgument(PalletError):
    exit_code = 125
