"""Docker image references, parsed and normalised as distribution/reference does.

The grammar, the domain-detection heuristic of ``ParseNormalizedNamed`` and the
error texts follow github.com/distribution/reference (v0.6) and go-digest, so
that names are stored, compared and printed exactly as Docker does::

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [domain '/'] remote-name
    domain      := host [':' port-number]
    remote-name := path-component ['/' path-component]*

Only the standard library is imported: this module is on the CLI hot path.
"""

from __future__ import annotations

import re

from pallet.records import FrozenRecord

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "LEGACY_DEFAULT_DOMAIN",
    "NAME_TOTAL_LENGTH_MAX",
    "OFFICIAL_REPO_PREFIX",
    "Reference",
    "ReferenceError",
    "is_image_id_prefix",
    "parse",
    "parse_normalized",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255


class ReferenceError(ValueError):  # shadows the builtin on purpose: public API name
    """An image reference that Docker would reject; the message is Docker's."""


# --- grammar (regexp.go) -----------------------------------------------------
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"

# re.ASCII: Go's \w is ASCII-only.  Always used with fullmatch(), never "$",
# which in Python would also accept a trailing newline. Compiled on first use: most commands
# need one or two of them.
_PATTERNS = {
    "reference": rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?",
    "anchored_name": rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})",
    "tag": _TAG,
    "identifier": r"[a-f0-9]{64}",
    "go_digest": r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+",
    "image_id_prefix": r"(?:sha256:)?[a-f0-9]{1,64}",
}
_compiled: dict[str, re.Pattern[str]] = {}


def _re(name: str) -> re.Pattern[str]:
    pattern = _compiled.get(name)
    if pattern is None:
        pattern = _compiled[name] = re.compile(_PATTERNS[name], re.ASCII)
    return pattern


# go-digest's registered algorithms and the length of their lowercase hex.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}


class Reference(FrozenRecord):
    """A normalised named reference: ``domain/path[:tag][@digest]``."""

    __slots__ = ("domain", "path", "tag", "digest")
    domain: str
    path: str
    tag: str | None
    digest: str | None

    def __init__(self, domain: str, path: str, tag: str | None = None, digest: str | None = None) -> None:
        self._set(domain=domain, path=path, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """The fully-qualified repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """The name as Docker's UI shows it: ``busybox``, ``user/app``, ``localhost:5000/a/b``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_REPO_PREFIX):
            rest = path[len(OFFICIAL_REPO_PREFIX) :]
            # "library/a/b" keeps its prefix: only single-level official names shorten.
            if "/" not in rest:
                return rest
        return path

    def __str__(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        """FamiliarString: ``busybox:latest``, as ``docker images`` and RepoTags show it."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """Return a copy carrying ``tag`` (any digest is kept, as WithTag does)."""
        if not _re("tag").fullmatch(tag):
            raise ReferenceError("invalid tag format")
        return Reference(self.domain, self.path, tag, self.digest)

    def _suffix(self) -> str:
        suffix = f":{self.tag}" if self.tag is not None else ""
        if self.digest is not None:
            suffix += f"@{self.digest}"
        return suffix


def parse(ref: str) -> Reference:
    """ParseNormalizedNamed: normalise a familiar reference without adding a default tag."""
    if _re("identifier").fullmatch(ref):
        raise ReferenceError(f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(ref)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise ReferenceError(f"invalid reference format: repository name ({remote}) must be lowercase")
    return _parse_canonical(f"{domain}/{remainder}")


def parse_normalized(ref: str, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """parse() plus TagNameOnly: add ``default_tag`` when neither tag nor digest was given."""
    parsed = parse(ref)
    if parsed.tag is None and parsed.digest is None and default_tag is not None:
        return parsed.with_tag(default_tag)
    return parsed


def is_image_id_prefix(s: str) -> bool:
    """True for ``sha256:<hex>`` or bare lowercase hex of 1..64 chars (image-ID lookups)."""
    return _re("image_id_prefix").fullmatch(s) is not None


def _split_docker_domain(name: str) -> tuple[str, str]:
    """Split off the registry domain, defaulting to Docker Hub (splitDockerDomain)."""
    maybe_domain, sep, maybe_remote = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    # Order matters: "index.docker.io" also contains a dot.
    if maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, maybe_remote
    elif maybe_domain == "localhost" or any(c in maybe_domain for c in ".:"):
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain.lower() != maybe_domain:
        # Namespaces cannot be uppercase, so Docker takes such a component for a host.
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def _parse_canonical(s: str) -> Reference:
    """reference.Parse on an already domain-qualified string."""
    if not s:
        raise ReferenceError("repository name must have at least one component")
    match = _re("reference").fullmatch(s)
    if match is None:
        lowered = s.lower()
        if lowered != s and _re("reference").fullmatch(lowered):
            raise ReferenceError("repository name must be lowercase")
        raise ReferenceError("invalid reference format")
    name, tag, digest = match.group(1, 2, 3)
    name_match = _re("anchored_name").fullmatch(name)
    domain, path = (name_match.group(1) or "", name_match.group(2)) if name_match else ("", name)
    # Only the path counts towards the limit (distribution/reference v0.6).
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    if digest is not None:
        _validate_digest(digest)
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _validate_digest(digest: str) -> None:
    """go-digest's Digest.Validate for the registered sha2 algorithms."""
    algorithm, _, encoded = digest.partition(":")
    if not algorithm or not encoded:
        raise ReferenceError("invalid checksum digest format")
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        if not _re("go_digest").fullmatch(digest):
            raise ReferenceError("invalid checksum digest format")
        raise ReferenceError("unsupported digest algorithm")
    if len(encoded) != length or encoded.strip("0123456789abcdef"):
        raise ReferenceError("invalid checksum digest format")
