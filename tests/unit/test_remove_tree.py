from __future__ import annotations

import os
from pathlib import Path

import pytest

from pallet.runtime.rootfs import remove_tree


def _tree(root: Path) -> None:
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "f").write_text("x")
    (root / "a" / "b" / "g").write_text("y")
    (root / "a" / "b" / "c" / "h").write_text("z")
    (root / "empty").mkdir()
    os.mkfifo(root / "fifo")


def test_removes_a_tree(tmp_path: Path) -> None:
    top = tmp_path / "top"
    _tree(top)
    remove_tree(top)
    assert not top.exists()
    remove_tree(top)  # missing: nothing to do
    remove_tree(str(top), ignore_errors=True)


def test_never_follows_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "d").mkdir(parents=True)
    (outside / "keep").write_text("k")
    top = tmp_path / "top"
    top.mkdir()
    (top / "to_dir").symlink_to(outside)
    (top / "to_file").symlink_to(outside / "keep")
    (top / "dangling").symlink_to(tmp_path / "nowhere")
    remove_tree(top)
    assert not top.exists()
    assert (outside / "keep").read_text() == "k" and (outside / "d").is_dir()


def test_a_symlink_given_as_the_top_is_removed_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    _tree(target)
    link = tmp_path / "link"
    link.symlink_to(target)
    remove_tree(link)
    assert not link.is_symlink() and (target / "a" / "f").exists()


def test_a_file_given_as_the_top_is_removed(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    remove_tree(f)
    assert not f.exists()


def test_errors_raise_unless_ignored(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root removes entries of read-only directories")
    top = tmp_path / "top"
    _tree(top)
    (top / "a" / "b").chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            remove_tree(top)
        remove_tree(top, ignore_errors=True)  # removes what it can, raises nothing
        assert (top / "a" / "b" / "g").exists() and not (top / "a" / "f").exists()
    finally:
        (top / "a" / "b").chmod(0o700)
    remove_tree(top)
    assert not top.exists()


def test_a_mount_point_inside_is_left_alone(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts a tmpfs)")
    from pallet.runtime import linux

    top = tmp_path / "top"
    mnt = top / "sub" / "mnt"
    mnt.mkdir(parents=True)
    (top / "f").write_text("x")
    linux.mount("tmpfs", str(mnt), "tmpfs", 0, "size=1m")
    try:
        (mnt / "precious").write_text("p")
        with pytest.raises(OSError):
            remove_tree(top)
        remove_tree(top, ignore_errors=True)
        assert (mnt / "precious").read_text() == "p" and not (top / "f").exists()
    finally:
        linux.umount2(str(mnt), linux.MNT_DETACH)
    remove_tree(top)
    assert not top.exists()
