"""Errors of the Dockerfile frontend, each one naming the file and line it is about."""

from __future__ import annotations

from pallet.errors import PalletError


class DockerfileError(PalletError):
    """A Dockerfile that docker would reject; printed as `Dockerfile:3: unknown instruction: FROB`."""

    def __init__(self, message: str, *, path: str = "Dockerfile", line: int | None = None,
                 end_line: int | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.end_line = end_line if end_line is not None else line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}: {self.message}"
        return f"{self.path}: {self.message}"

    def located(self, *, path: str, line: int | None, end_line: int | None = None) -> DockerfileError:
        """The same error placed at a location, unless it already has one."""
        if self.line:
            if self.path != path:
                return type(self)(self.message, path=path, line=self.line, end_line=self.end_line)
            return self
        return type(self)(self.message, path=path, line=line, end_line=end_line)


class ExpansionError(DockerfileError):
    """A word that shell-style variable expansion cannot process (bad `${…}`, unmatched quote, `${X:?}`)."""


class BuildPlanError(DockerfileError):
    """The stages cannot be arranged into a build: missing target, cycle, blank base name."""
