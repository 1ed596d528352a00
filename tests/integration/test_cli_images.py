"""Image commands through the real CLI: output shapes, flags and docker's rules for rmi."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from conftest import Pallet, needs_root

pytestmark = [needs_root(), pytest.mark.integration]


def _rootfs(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_images_table_and_quiet(busybox: Pallet) -> None:
    out = busybox.out("images")
    header, row = out.splitlines()[:2]
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert row.split()[:2] == ["busybox", "latest"]
    image_id = busybox.out("image", "inspect", "-f", "{{.Id}}", "busybox").strip()
    assert busybox.out("images", "-q").split() == [image_id[7:19]]
    assert busybox.out("images", "-q", "--no-trunc").split() == [image_id]
    assert busybox.out("images", "--format", "{{.Repository}}:{{.Tag}}") == "busybox:latest\n"
    digests = busybox.out("images", "--digests").splitlines()[0].split()
    assert "DIGEST" in digests


def test_tag_filter_and_rmi_rules(busybox: Pallet) -> None:
    busybox("tag", "busybox", "example.com/team/app:v1")
    busybox("tag", "busybox", "localhost:5000/b:2")
    names = busybox.out("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert sorted(names) == ["busybox:latest", "example.com/team/app:v1", "localhost:5000/b:2"]
    assert (
        busybox.out("images", "--filter", "reference=busybox", "--format", "{{.Repository}}") == "busybox\n"
    )
    assert busybox.out("images", "-f", "dangling=true", "-q") == ""
    # By ID while the image has several repositories: refused without -f.
    p = busybox("rmi", busybox.out("images", "-q").split()[0], check=False)
    assert p.returncode == 1 and b"referenced in multiple repositories" in p.stderr
    # By tag: only untags while other names remain.
    assert busybox.out("rmi", "localhost:5000/b:2") == "Untagged: localhost:5000/b:2\n"
    tags = json.loads(busybox.out("image", "inspect", "busybox"))[0]["RepoTags"]
    assert tags == ["busybox:latest", "example.com/team/app:v1"]
    out = busybox.out("rmi", "-f", busybox.out("images", "-q").split()[0])
    assert "Untagged: busybox:latest" in out and "Deleted: sha256:" in out
    assert busybox.out("images", "-q") == ""
    assert list((busybox.root / "layers").glob("[0-9a-f]" * 8 + "*")) == []
    assert list((busybox.root / "content/blobs/sha256").iterdir()) == []


def test_rmi_refuses_image_used_by_container(busybox: Pallet) -> None:
    busybox("create", "--name", "user", "busybox", "true")
    p = busybox("rmi", "busybox", check=False)
    assert p.returncode == 1 and b"container" in p.stderr and b"must force" in p.stderr
    busybox("rm", "user")
    busybox("rmi", "busybox")


def test_inspect_history_and_errors(busybox: Pallet, tmp_path: Path) -> None:
    info = json.loads(busybox.out("image", "inspect", "busybox"))[0]
    for key in ("Id", "RepoTags", "RepoDigests", "Created", "Config", "RootFS", "Size", "Architecture", "Os"):
        assert key in info
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 1
    hist = busybox.out("history", "busybox").splitlines()
    assert hist[0].split()[:2] == ["IMAGE", "CREATED"]
    p = busybox("image", "inspect", "nosuch", check=False)
    assert p.returncode == 1 and b"No such image: nosuch" in p.stderr
    p = busybox("tag", "busybox", "Bad:Name", check=False)
    assert p.returncode != 0 and b"invalid reference format" in p.stderr
    p = busybox("rmi", "nosuch:1", check=False)
    assert p.returncode == 1 and p.stderr.count(b"\n") == 1


def test_import_with_changes_and_run(busybox: Pallet, tmp_path: Path) -> None:
    busybox_root = busybox.out("image", "inspect", "-f", "{{.Id}}", "busybox").strip()
    assert busybox_root
    tar = _rootfs(tmp_path / "r.tar", {"hello.txt": b"hi there\n"})
    image_id = busybox.out(
        "import",
        "-m",
        "note",
        "-c",
        "ENV A=1",
        "-c",
        'CMD ["/x"]',
        "-c",
        "WORKDIR /srv",
        "-c",
        "EXPOSE 80",
        str(tar),
        "imp:1",
    ).strip()
    info = json.loads(busybox.out("image", "inspect", "imp:1"))[0]
    assert info["Id"] == image_id
    assert info["Config"]["Env"] == ["A=1"] and info["Config"]["Cmd"] == ["/x"]
    assert info["Config"]["WorkingDir"] == "/srv" and info["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert info["Comment"] == "note"
    p = busybox("import", "-c", "FROB x", str(tar), check=False)
    assert p.returncode != 0 and b"unknown instruction" in p.stderr


def test_image_prune(busybox: Pallet, tmp_path: Path) -> None:
    tar = _rootfs(tmp_path / "r.tar", {"a": b"1"})
    busybox("import", str(tar), "p:1")
    tar2 = _rootfs(tmp_path / "r2.tar", {"a": b"2"})
    busybox("import", str(tar2), "p:1")  # the first image loses its tag: dangling
    assert len(busybox.out("images", "-f", "dangling=true", "-q").split()) == 1
    out = busybox.out("image", "prune", "-f")
    assert "deleted: sha256:" in out and "Total reclaimed space:" in out
    assert busybox.out("images", "-f", "dangling=true", "-q") == ""
    out = busybox.out("image", "prune", "-a", "-f")
    assert busybox.out("images", "-q") == ""


def test_full_disk_fails_cleanly(pallet: Pallet, busybox_archive: Path, tmp_path: Path) -> None:
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        p = Pallet(small / "root")
        r = p("load", "-i", str(busybox_archive), check=False)
        assert r.returncode != 0
        assert r.stderr.decode().count("\n") == 1 and b"no space left on device" in r.stderr.lower()
        assert p.out("images", "-q") == ""
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
