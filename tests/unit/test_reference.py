"""Image reference parsing: behaviour of distribution/reference's ParseNormalizedNamed."""

from __future__ import annotations

import pytest

from pallet.oci.reference import (
    Reference,
    ReferenceError,
    is_image_id_prefix,
    parse,
    parse_normalized,
)

HEX = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"
DIGEST = f"sha256:{HEX}"


# (input, domain, path, tag, digest) -- parse() applies no default tag.
PARSE_CASES = [
    ("busybox", "docker.io", "library/busybox", None, None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("library/busybox", "docker.io", "library/busybox", None, None),
    ("docker.io/busybox", "docker.io", "library/busybox", None, None),
    ("docker.io/library/busybox", "docker.io", "library/busybox", None, None),
    ("index.docker.io/library/busybox", "docker.io", "library/busybox", None, None),
    ("index.docker.io/busybox", "docker.io", "library/busybox", None, None),
    ("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", None),
    ("user/app", "docker.io", "user/app", None, None),
    ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", None),
    ("localhost/x", "localhost", "x", None, None),
    ("example.com/a/b/c", "example.com", "a/b/c", None, None),
    (f"name@{DIGEST}", "docker.io", "library/name", None, DIGEST),
    (f"name:tag@{DIGEST}", "docker.io", "library/name", "tag", DIGEST),
    ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", None, None),
    ("[::1]:5000/x", "[::1]:5000", "x", None, None),
    ("[2001:db8::1]/repo:tag", "[2001:db8::1]", "repo", "tag", None),
    ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000", "library/debian", None, None),
    ("test.com:8080/foo", "test.com:8080", "foo", None, None),
    ("test-com:8080/foo", "test-com:8080", "foo", None, None),
    ("test_com/foo", "docker.io", "test_com/foo", None, None),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", None, None),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", None, None),
    ("store/foo/bar", "docker.io", "store/foo/bar", None, None),
    # An upper-case first component without dot or colon is taken for a registry host.
    ("Foo/bar", "Foo", "bar", None, None),
    ("FOO/bar", "FOO", "bar", None, None),
    ("lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", None),
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app",
     "test.example.com", None),
    ("docker---rules/docker", "docker.io", "docker---rules/docker", None, None),
    ("dock__er/docker", "docker.io", "dock__er/docker", None, None),
    ("d/docker", "docker.io", "d/docker", None, None),
    ("192.168.0.1:8/debian", "192.168.0.1:8", "debian", None, None),
    # 64 chars but not hex: a valid name.
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io",
     "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", None, None),
    # With a domain, 64 hex chars are unambiguous and allowed.
    (f"docker.io/{HEX}", "docker.io", f"library/{HEX}", None, None),
    # A 63-char hex string is a name.
    (HEX[:63], "docker.io", f"library/{HEX[:63]}", None, None),
    ("busybox:" + "t" * 128, "docker.io", "library/busybox", "t" * 128, None),
    ("busybox:_under.score-Tag", "docker.io", "library/busybox", "_under.score-Tag", None),
]  # fmt: skip


@pytest.mark.parametrize(("ref", "domain", "path", "tag", "digest"), PARSE_CASES)
def test_parse(ref: str, domain: str, path: str, tag: str | None, digest: str | None) -> None:
    assert parse(ref) == Reference(domain=domain, path=path, tag=tag, digest=digest)


# (input, str(), familiar()) after parse_normalized.
NORMALIZED_CASES = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("example.com/a/b/c", "example.com/a/b/c:latest", "example.com/a/b/c:latest"),
    (f"name@{DIGEST}", f"docker.io/library/name@{DIGEST}", f"name@{DIGEST}"),
    (f"name:tag@{DIGEST}", f"docker.io/library/name:tag@{DIGEST}", f"name:tag@{DIGEST}"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
    ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
    ("library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
    ("ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base:latest", "ubuntu-12.04-base:latest"),
    ("other/library", "docker.io/other/library:latest", "other/library:latest"),
]


@pytest.mark.parametrize(("ref", "full", "familiar"), NORMALIZED_CASES)
def test_parse_normalized_strings(ref: str, full: str, familiar: str) -> None:
    parsed = parse_normalized(ref)
    assert str(parsed) == full
    assert parsed.familiar() == familiar


@pytest.mark.parametrize(
    ("ref", "name", "familiar_name"),
    [
        ("busybox", "docker.io/library/busybox", "busybox"),
        ("fooo/bar", "docker.io/fooo/bar", "fooo/bar"),
        ("library/foo/bar", "docker.io/library/foo/bar", "library/foo/bar"),
        (
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000/private/moonbase",
        ),
        ("example.com:8000/privatebase", "example.com:8000/privatebase", "example.com:8000/privatebase"),
        ("localhost:5000/a/b", "localhost:5000/a/b", "localhost:5000/a/b"),
    ],
)
def test_name_and_familiar_name(ref: str, name: str, familiar_name: str) -> None:
    parsed = parse(ref)
    assert parsed.name == name
    assert parsed.familiar_name == familiar_name


def test_round_trip_of_full_and_familiar_forms() -> None:
    for ref, _, _ in NORMALIZED_CASES:
        parsed = parse_normalized(ref)
        assert parse_normalized(str(parsed)) == parsed
        assert parse_normalized(parsed.familiar()) == parsed


INVALID_CASES = [
    ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ("Busybox:Latest", "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ("docker/Docker", "invalid reference format: repository name (docker/Docker) must be lowercase"),
    (
        "docker.io/docker/Docker",
        "invalid reference format: repository name (docker/Docker) must be lowercase",
    ),
    ("Example.com/Foo", "invalid reference format: repository name (Foo) must be lowercase"),
    ("busy box", "invalid reference format"),
    (":tag", "invalid reference format"),
    ("a:", "invalid reference format"),
    ("a@sha256:short", "invalid reference format"),
    ("-a", "invalid reference format"),
    ("-docker/docker", "invalid reference format"),
    ("docker-/docker", "invalid reference format"),
    ("a/", "invalid reference format"),
    ("docker///docker", "invalid reference format"),
    ("____/____", "invalid reference format"),
    ("dock..er/docker", "invalid reference format"),
    ("dock_.er/docker", "invalid reference format"),
    ("dock-.er/docker", "invalid reference format"),
    ("https://github.com/docker/docker", "invalid reference format"),
    ("[fc00::1]:5000", "invalid reference format"),
    ("fc00::1:5000/debian", "invalid reference format"),
    ("[fe80::1%eth0]:5000/debian", "invalid reference format"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid reference format"),
    ("", "invalid reference format"),
    ("busybox\n", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("busybox:-tag", "invalid reference format"),
    (HEX, f"invalid repository name ({HEX}), cannot specify 64-byte hexadecimal strings"),
    ("a/" + "b" * 254, "repository name must not be more than 255 characters"),
    (
        "_".join(["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"] * 4) + "/docker",
        "repository name must not be more than 255 characters",
    ),
    ("a@sha256:" + "a" * 32, "invalid checksum digest format"),
    ("a@sha256:" + HEX.upper(), "invalid checksum digest format"),
    ("a@sha512:" + HEX, "invalid checksum digest format"),
    ("a@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("validname@invaliddigest:" + "f" * 64, "unsupported digest algorithm"),
]


@pytest.mark.parametrize(("ref", "message"), INVALID_CASES)
def test_invalid(ref: str, message: str) -> None:
    with pytest.raises(ReferenceError) as excinfo:
        parse(ref)
    assert str(excinfo.value) == message


def test_reference_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse("Busybox")


def test_name_length_excludes_domain() -> None:
    assert parse("example.com/" + "a" * 255).path == "a" * 255
    assert parse("a/" + "b" * 253).path == "a/" + "b" * 253  # docker.io/a/bbb... is 255 long
    with pytest.raises(ReferenceError):
        parse("example.com/" + "a" * 256)


def test_other_digest_algorithms() -> None:
    sha512 = "sha512:" + "f" * 128
    assert parse(f"xn--7o8h.com/myimage:xn--7o8h.com@{sha512}").digest == sha512
    assert parse("a@sha384:" + "0" * 96).digest == "sha384:" + "0" * 96


def test_parse_does_not_add_tag() -> None:
    assert parse("busybox").tag is None
    assert str(parse("busybox")) == "docker.io/library/busybox"
    assert parse("busybox").familiar() == "busybox"


def test_parse_normalized_default_tag() -> None:
    assert parse_normalized("busybox").tag == "latest"
    assert parse_normalized("busybox", default_tag="stable").tag == "stable"
    assert parse_normalized("busybox", default_tag=None).tag is None
    # A digest alone is complete: no tag is added.
    assert parse_normalized(f"busybox@{DIGEST}").tag is None
    assert parse_normalized("busybox:1").tag == "1"


def test_parse_normalized_rejects_bad_default_tag() -> None:
    with pytest.raises(ReferenceError, match="invalid tag format"):
        parse_normalized("busybox", default_tag="-bad")


def test_with_tag() -> None:
    ref = parse("busybox:1")
    assert str(ref.with_tag("2")) == "docker.io/library/busybox:2"
    assert str(parse(f"busybox@{DIGEST}").with_tag("x")) == f"docker.io/library/busybox:x@{DIGEST}"
    assert ref.with_tag("TAG5").familiar() == "busybox:TAG5"
    assert ref.tag == "1"  # immutable


@pytest.mark.parametrize("tag", ["", "-foo", ".foo", "a" * 129, "a b", "a:b", "é"])
def test_with_tag_invalid(tag: str) -> None:
    with pytest.raises(ReferenceError, match="^invalid tag format$"):
        parse("busybox").with_tag(tag)


def test_reference_is_frozen_and_hashable() -> None:
    ref = parse_normalized("busybox")
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]
    assert {ref, parse_normalized("docker.io/library/busybox:latest")} == {ref}


def test_str_without_domain() -> None:
    # "foo_bar.com" has a dot, so it is split off as a domain, but it is not a valid
    # host name: reference.Parse then sees a plain path, as Docker does.
    ref = parse("foo_bar.com/x")
    assert (ref.domain, ref.path) == ("", "foo_bar.com/x")
    assert str(ref) == ref.familiar() == "foo_bar.com/x"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a", True),
        ("0", True),
        ("abc123", True),
        (HEX, True),
        (f"sha256:{HEX}", True),
        ("sha256:abc", True),
        ("", False),
        ("sha256:", False),
        (HEX + "0", False),
        ("ABC", False),
        ("xyz", False),
        ("sha512:abc", False),
        ("busybox", False),
        ("abc\n", False),
    ],
)
def test_is_image_id_prefix(value: str, expected: bool) -> None:
    assert is_image_id_prefix(value) is expected
