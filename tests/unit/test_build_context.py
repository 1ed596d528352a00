"""Context hashing for COPY/ADD cache keys: what changes the key and what does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pallet.build import DockerIgnore, hash_sources, resolve_sources
from pallet.errors import NotFound


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "main.go").write_text("package main\n")
    (tmp_path / "src" / "pkg" / "a.go").write_text("package pkg\n")
    (tmp_path / "README.md").write_text("hello\n")
    (tmp_path / "notes.txt").write_text("n\n")
    (tmp_path / "secret.env").write_text("TOKEN=x\n")
    (tmp_path / "src" / "link").symlink_to("main.go")
    return tmp_path


def test_mtime_does_not_change_the_hash(ctx: Path) -> None:
    before = hash_sources(ctx, ["src"])
    os.utime(ctx / "src" / "main.go", (1, 1))
    assert hash_sources(ctx, ["src"]) == before


def test_content_mode_name_and_link_target_change_the_hash(ctx: Path) -> None:
    base = hash_sources(ctx, ["src"])
    (ctx / "src" / "main.go").write_text("package main // edited\n")
    edited = hash_sources(ctx, ["src"])
    assert edited != base
    os.chmod(ctx / "src" / "main.go", 0o755)
    chmodded = hash_sources(ctx, ["src"])
    assert chmodded != edited
    (ctx / "src" / "link").unlink()
    (ctx / "src" / "link").symlink_to("pkg")
    relinked = hash_sources(ctx, ["src"])
    assert relinked != chmodded
    (ctx / "src" / "pkg" / "a.go").rename(ctx / "src" / "pkg" / "b.go")
    assert hash_sources(ctx, ["src"]) != relinked


def test_owner_counts_only_without_chown(ctx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_owner = hash_sources(ctx, ["README.md"])
    without_owner = hash_sources(ctx, ["README.md"], include_owner=False)
    real_lstat = os.lstat

    class FakeStat:
        def __init__(self, st: os.stat_result) -> None:
            self._st = st

        def __getattr__(self, name: str) -> object:
            if name == "st_uid":
                return self._st.st_uid + 1000
            return getattr(self._st, name)

    monkeypatch.setattr("pallet.build.context.os.lstat", lambda p: FakeStat(real_lstat(p)))
    assert hash_sources(ctx, ["README.md"]) != with_owner
    assert hash_sources(ctx, ["README.md"], include_owner=False) == without_owner


def test_equivalent_spellings_hash_the_same(ctx: Path) -> None:
    assert hash_sources(ctx, ["src"]) == hash_sources(ctx, ["./src/"]) == hash_sources(ctx, ["/src"])
    assert hash_sources(ctx, ["../../src"]) == hash_sources(ctx, ["src"])  # cannot leave the context


def test_dockerignore_hides_files(ctx: Path) -> None:
    ignore = DockerIgnore(["*.env", "src/pkg"])
    everything = hash_sources(ctx, ["."], ignore)
    (ctx / "secret.env").write_text("TOKEN=changed\n")
    (ctx / "src" / "pkg" / "a.go").write_text("changed\n")
    assert hash_sources(ctx, ["."], ignore) == everything
    with pytest.raises(NotFound, match='"/secret.env": not found'):
        hash_sources(ctx, ["secret.env"], ignore)


def test_wildcards(ctx: Path) -> None:
    assert resolve_sources(ctx, "*.md") == ["README.md"]
    assert resolve_sources(ctx, "src/*.go") == ["src/main.go"]
    assert resolve_sources(ctx, "*/pkg") == ["src/pkg"]
    assert resolve_sources(ctx, "[nr]*") == ["notes.txt"]  # case-sensitive: README.md starts with R
    assert resolve_sources(ctx, "*", DockerIgnore(["*.env", "src"])) == ["README.md", "notes.txt"]
    with pytest.raises(NotFound, match='"/nothing\\*": not found'):
        resolve_sources(ctx, "nothing*")


def test_excluded_dir_with_reincluded_file_is_visible(ctx: Path) -> None:
    ignore = DockerIgnore(["src", "!src/main.go"])
    assert resolve_sources(ctx, "src", ignore) == ["src"]
    digest = hash_sources(ctx, ["src"], ignore)
    (ctx / "src" / "pkg" / "a.go").write_text("changed\n")
    assert hash_sources(ctx, ["src"], ignore) == digest


def test_source_symlink_is_followed_inside_the_context(ctx: Path,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    (ctx / "alias").symlink_to("src")
    before = hash_sources(ctx, ["alias"])
    (ctx / "src" / "pkg" / "a.go").write_text("changed\n")
    assert hash_sources(ctx, ["alias"]) != before  # the directory behind the link is hashed
    outside = tmp_path_factory.mktemp("outside")
    (ctx / "escape").symlink_to(outside)
    with pytest.raises(NotFound):
        hash_sources(ctx, ["escape"])


def test_order_of_sources_matters(ctx: Path) -> None:
    assert hash_sources(ctx, ["README.md", "notes.txt"]) != hash_sources(ctx, ["notes.txt", "README.md"])
    assert hash_sources(ctx, ["README.md"]).startswith("sha256:")
