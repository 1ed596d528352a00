"""Platforms as `os/arch[/variant]` (containerd's specifiers) and BuildKit's automatic platform ARGs."""

from __future__ import annotations

import platform as _host
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Platform", "automatic_args", "host_platform"]

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""), "x86-64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""), "arm64": ("arm64", ""),
    "armhf": ("arm", "v7"), "armel": ("arm", "v6"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "i386": ("386", ""), "i686": ("386", ""), "386": ("386", ""),
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`linux/arm64`, `linux/arm/v7`, `arm64` (the host OS), normalised like containerd."""
        parts = text.strip().lower().split("/")
        if not all(parts) or len(parts) > 3:
            raise ValueError(f'"{text}": invalid platform specifier')
        if len(parts) == 1:
            if parts[0] in ("linux", "windows", "darwin", "freebsd"):
                return cls(parts[0], host_platform().architecture, host_platform().variant)
            arch, variant = _normalize_arch(parts[0], "")
            return cls(host_platform().os, arch, variant)
        arch, variant = _normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
        return cls("darwin" if parts[0] == "macos" else parts[0], arch, variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    base, implied = _ARCH_ALIASES.get(arch, (arch, ""))
    variant = variant or implied
    if base == "arm64" and variant in ("v8", "8"):
        variant = ""  # containerd drops the default arm64 variant
    if base == "arm" and variant == "":
        variant = "v7"
    if base == "arm" and variant.isdigit():
        variant = "v" + variant
    return base, variant


def host_platform() -> Platform:
    arch, variant = _normalize_arch(_host.machine().lower() or "amd64", "")
    return Platform("linux", arch, variant)


def automatic_args(build: Platform, target: Platform, target_stage: str,
                   overrides: Mapping[str, str]) -> dict[str, str]:
    """The ARGs BuildKit defines in the global scope; `--build-arg` may override each one."""
    values = {
        "BUILDPLATFORM": str(build),
        "BUILDOS": build.os,
        "BUILDOSVERSION": "",
        "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant,
        "TARGETPLATFORM": str(target),
        "TARGETOS": target.os,
        "TARGETOSVERSION": "",
        "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant,
        "TARGETSTAGE": target_stage or "default",
    }
    return {key: overrides.get(key, value) for key, value in values.items()}
