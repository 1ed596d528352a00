"""`system df` (numbers consistent with the images and containers there are) and `system prune`
(stopped containers and dangling images go; running containers and used images stay)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from conftest import Pallet, needs_root

pytestmark = [needs_root(), pytest.mark.integration]


def df_rows(p: Pallet) -> dict[str, dict[str, str]]:
    rows = [json.loads(line) for line in p.out("system", "df", "--format", "json").splitlines()]
    return {r["Type"]: r for r in rows}


def small_tar(tmp_path: Path, name: str, data: bytes) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    path = tmp_path / f"{name}.tar"
    path.write_bytes(buf.getvalue())
    return path


def test_df_matches_images_and_containers(busybox: Pallet, tmp_path: Path) -> None:
    from pallet.cli.units import human_size

    image_size = int(busybox.out("image", "inspect", "-f", "{{.Size}}", "busybox"))
    rows = df_rows(busybox)
    assert [r["TotalCount"] for r in rows.values()] == ["1", "0", "0", "0"]
    assert rows["Images"]["Size"] == human_size(image_size, 4)
    assert rows["Images"]["Reclaimable"] == f"{human_size(image_size, 4)} (100%)"  # no container uses it
    busybox("create", "--name", "idle", "busybox")
    (tmp_path / "blob").write_bytes(b"x" * 1500)
    busybox("cp", str(tmp_path / "blob"), "idle:/blob")
    busybox("run", "-d", "--name", "up", "busybox", "sleep", "600")
    rows = df_rows(busybox)
    assert (rows["Images"]["TotalCount"], rows["Images"]["Active"]) == ("1", "1")
    assert rows["Images"]["Reclaimable"] == "0B (0%)"
    assert (rows["Containers"]["TotalCount"], rows["Containers"]["Active"]) == ("2", "1")
    assert rows["Containers"]["Size"] == "1.5kB" and rows["Containers"]["Reclaimable"] == "1.5kB (100%)"
    table = busybox.out("system", "df").splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split("  ")[0] for line in table[1:]] == [
        "Images",
        "Containers",
        "Local Volumes",
        "Build Cache",
    ]
    verbose = busybox.out("system", "df", "-v")
    for section in (
        "Images space usage:",
        "Containers space usage:",
        "Local Volumes space usage:",
        "Build cache usage: 0B",
    ):
        assert section in verbose
    image_line = next(line for line in verbose.splitlines() if line.startswith("busybox "))
    assert image_line.split()[-1] == "2"  # CONTAINERS
    idle_line = next(line for line in verbose.splitlines() if line.endswith(" idle"))
    assert " 1.5kB " in idle_line and "virtual" not in idle_line
    assert busybox.out("system", "df", "--format", "{{.Type}}:{{.TotalCount}}").splitlines() == [
        "Images:1", "Containers:2", "Local Volumes:0", "Build Cache:0"]  # fmt: skip


def test_prune_removes_stopped_containers_and_dangling_images(busybox: Pallet, tmp_path: Path) -> None:
    first = busybox.out("import", str(small_tar(tmp_path, "a", b"one")), "thing:1").strip()
    second = busybox.out(
        "import", str(small_tar(tmp_path, "b", b"two")), "thing:1"
    ).strip()  # `first` dangles
    unused = busybox.out("import", str(small_tar(tmp_path, "c", b"three")), "unused:1").strip()
    busybox("create", "--name", "idle", "busybox")
    busybox("run", "--name", "done", "busybox", "true")
    busybox("run", "-d", "--name", "up", "busybox", "sleep", "600")
    idle = busybox.out("inspect", "-f", "{{.Id}}", "idle").strip()
    done = busybox.out("inspect", "-f", "{{.Id}}", "done").strip()
    # without -f it asks, and "no" removes nothing
    asked = busybox("system", "prune", input=b"n\n")
    assert asked.stdout.decode().startswith("WARNING! This will remove:\n  - all stopped containers\n")
    assert "  - all dangling images\n" in asked.stdout.decode()
    assert len(busybox.out("ps", "-aq").split()) == 3
    out = busybox.out("system", "prune", "-f")
    assert out.startswith("Deleted Containers:\n")
    assert {done, idle} <= set(out.split("\n\n")[0].splitlines()[1:])
    assert f"Deleted Images:\ndeleted: {first}\n" in out
    assert out.splitlines()[-1].startswith("Total reclaimed space: ")
    assert busybox.out("ps", "-a", "--format", "{{.Names}}").split() == ["up"]
    images = busybox.out("images", "-q", "--no-trunc").split()
    assert first not in images and second in images and unused in images
    # -a: every image no container uses (busybox stays: `up` runs it)
    out = busybox.out("system", "prune", "-a", "-f", "--volumes")
    assert "untagged: thing:1" in out and f"deleted: {second}" in out and f"deleted: {unused}" in out
    assert busybox.out("images", "--format", "{{.Repository}}").split() == ["busybox"]
    assert busybox.out("system", "prune", "-f") == "Total reclaimed space: 0B\n"
