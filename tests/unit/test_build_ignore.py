""".dockerignore: reading, docker's pattern matching, and the context walker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pallet.build.ignore import DockerIgnore, read_patterns


def test_read_patterns_normalises_like_docker() -> None:
    text = "\ufeff# comment\n  *.log  \n\n!/keep.log\n/abs/../x//y/\n ! spaced\n#!not\n./z\n/\r\n"
    assert read_patterns(text) == ["*.log", "!keep.log", "x/y", "!spaced", "z", "/"]


@pytest.mark.parametrize(("pattern", "path", "excluded"), [
    ("**", "file", True), ("**/", "file", True), ("**", "dir/file", True), ("**/**", "dir/file", True),
    ("dir/**", "dir/file", True), ("dir/**", "dir/dir2/file", True), ("**/dir", "dir", True),
    ("**/dir", "dir/file", True), ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**file", "file", True), ("**file", "dir/file", True), ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True), ("**/file*txt", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True), ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True), ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True), ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False), ("a/*.txt", "a/file.txt", True), ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True), ("a[b-d]e", "aae", False), ("a[^b-d]e", "aze", True),
    (".*", ".foo", True), (".*", "foo", False), ("abc.def", "abcdef", False), ("abc.def", "abc.def", True),
    ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False), ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True), ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False), ("abc/**", "abc/def/ghi", True), ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False), ("a(b)c/def", "a(b)c/def", True), ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-any.whl", True),
    ("a\\*b", "a*b", True), ("a\\*b", "ab", False), ("a?b", "a☺b", True), ("a?b", "a/b", False),
    ("a*b", "a/b", False), ("[\\]a]", "]", True), ("[\\-]", "-", True),
    ("docs", "docs/sub/README.md", True), ("docs/", "docs/README.md", True), ("*", "anything/deep", True),
])
def test_single_pattern(pattern: str, path: str, excluded: bool) -> None:
    assert DockerIgnore([pattern]).matches(path) is excluded


@pytest.mark.parametrize(("patterns", "path", "excluded"), [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/*.whl"], "dist/proxy.whl", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
])
def test_pattern_order(patterns: list[str], path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).matches(path) is excluded


def test_root_is_never_excluded() -> None:
    assert not DockerIgnore(["*"]).matches(".")


@pytest.mark.parametrize("pattern", ["!", "[", "a[", "[]a]", "a\\", "[z-a]"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(ValueError):
        DockerIgnore([pattern])


def make_tree(root: Path, files: list[str]) -> None:
    for name in files:
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(name)


def walked(root: Path, patterns: list[str]) -> list[str]:
    return [e.path + ("/" if e.is_dir else "") for e in DockerIgnore(patterns).walk(root)]


def test_walk_excludes_and_reincludes(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.txt", "b.log", "docs/README.md", "docs/guide.md", "node_modules/x/y.js",
                         "src/main.go", "src/main_test.go", "empty/"])
    assert walked(tmp_path, ["*.log", "docs", "!docs/README.md", "**/*_test.go", "node_modules"]) == [
        "a.txt", "docs/", "docs/README.md", "empty/", "src/", "src/main.go"]


def test_walk_does_not_descend_into_excluded_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path, ["keep/a", "node_modules/deep/x", "build/out/y", "build/keep.txt"])
    seen: list[str] = []
    real = os.scandir

    def spy(path: str) -> object:
        seen.append(os.path.relpath(path, tmp_path))
        return real(path)

    monkeypatch.setattr("pallet.build.ignore.os.scandir", spy)
    assert walked(tmp_path, ["node_modules", "build", "!build/keep.txt"]) == [
        "build/", "build/keep.txt", "keep/", "keep/a"]
    assert "node_modules" not in seen and "build/out" not in seen and "build" in seen


def test_walk_with_double_star_exception_descends(tmp_path: Path) -> None:
    make_tree(tmp_path, ["x/y/z.keep", "x/y/z.drop", "w.drop"])
    assert walked(tmp_path, ["*", "!**/*.keep"]) == ["x/", "x/y/", "x/y/z.keep"]


def test_walk_does_not_follow_symlinks(tmp_path: Path) -> None:
    make_tree(tmp_path, ["real/f"])
    (tmp_path / "link").symlink_to("real")
    entries = list(DockerIgnore().walk(tmp_path))
    assert [(e.path, e.is_symlink) for e in entries] == [("link", True), ("real", False), ("real/f", False)]


def test_from_file(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("*.tmp\n!keep.tmp\n")
    ignore = DockerIgnore.from_file(tmp_path / ".dockerignore")
    assert ignore.matches("x.tmp") and not ignore.matches("keep.tmp")
    assert DockerIgnore.from_file(tmp_path / "missing").patterns == []
