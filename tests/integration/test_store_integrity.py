"""The image store under concurrency and crashes: it stays consistent, nothing half-written
ever carries a digest name."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sqlite3
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import PALLET, Pallet, needs_root

pytestmark = [needs_root(), pytest.mark.integration]


def _rootfs_tar(path: Path, payload: bytes) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in (("bin/marker", payload), ("etc/hostname", b"x\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def check_consistent(root: Path) -> None:
    conn = sqlite3.connect(root / "pallet.db")
    images = {r[0] for r in conn.execute("SELECT id FROM images")}
    assert {r[0] for r in conn.execute("SELECT image_id FROM tags")} <= images, "dangling tag"
    layer_rows = {r[0] for r in conn.execute("SELECT chain_id FROM layers")}
    used_layers = {r[0] for r in conn.execute("SELECT chain_id FROM image_layers")}
    assert used_layers <= layer_rows
    on_disk_layers = {"sha256:" + n for n in os.listdir(root / "layers") if len(n) == 64}
    assert on_disk_layers == used_layers, "orphan or missing layer directory"
    used_blobs = {r[0] for r in conn.execute("SELECT digest FROM image_blobs")}
    blob_dir = root / "content/blobs/sha256"
    on_disk_blobs = {"sha256:" + n for n in os.listdir(blob_dir)}
    assert on_disk_blobs == used_blobs, "orphan or missing blob"
    for name in os.listdir(blob_dir):
        assert hashlib.sha256((blob_dir / name).read_bytes()).hexdigest() == name


def test_concurrent_load_tag_rmi_images(busybox: Pallet, tmp_path: Path, busybox_archive: Path) -> None:
    duration = float(os.environ.get("PALLET_STRESS_SECONDS", "30"))
    env = busybox.env

    def sh(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*PALLET, *args], capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=120
        )

    def worker(i: int) -> list[str]:
        errors: list[str] = []
        deadline = time.monotonic() + duration
        n = 0
        while time.monotonic() < deadline:
            n += 1
            tar = tmp_path / f"w{i}-{n}.tar"
            _rootfs_tar(tar, f"worker {i} round {n}".encode())
            steps = [
                ("load", "-i", str(busybox_archive)),
                ("import", str(tar), f"w{i}:{n}"),
                ("tag", f"w{i}:{n}", f"w{i}:{n}b"),
                ("images", "-q"),
                ("rmi", f"w{i}:{n}", f"w{i}:{n}b"),
            ]
            if n % 3 == 0:
                steps.append(("rmi", "busybox"))
            for step in steps:
                p = sh(*step)
                err = p.stderr.decode()
                if p.returncode != 0 and not (step[:2] == ("rmi", "busybox") and "No such image" in err):
                    errors.append(f"{step}: {err.strip()}")
                if "locked" in err:
                    errors.append(f"{step}: {err.strip()}")
            tar.unlink()
        return errors

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert [e for r in results for e in r] == []
    check_consistent(busybox.root)


def _big_archive(pallet: Pallet, tmp_path: Path) -> Path:
    tar = tmp_path / "big.tar"
    with tarfile.open(tar, "w") as tf:
        for k in range(4):
            data = os.urandom(64 << 20)
            info = tarfile.TarInfo(f"blob{k}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    pallet("import", str(tar), "big:1")
    archive = tmp_path / "big-archive.tar"
    pallet("save", "-o", str(archive), "big:1")
    pallet("rmi", "big:1")
    tar.unlink()
    return archive


def test_kill_9_during_load_leaves_no_partial_blob(pallet: Pallet, tmp_path: Path) -> None:
    archive = _big_archive(pallet, tmp_path)
    for delay in (0.15, 0.4, 0.8):
        proc = subprocess.Popen(
            [*PALLET, "load", "-i", str(archive)],
            env=pallet.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        blob_dir = pallet.root / "content/blobs/sha256"
        for name in os.listdir(blob_dir):
            assert hashlib.sha256((blob_dir / name).read_bytes()).hexdigest() == name
    out = pallet.out("load", "-i", str(archive))
    assert "Loaded image: big:1" in out
    assert pallet.out("images", "-q", "big:1").strip()
    pallet("rmi", "big:1")
    check_consistent(pallet.root)
