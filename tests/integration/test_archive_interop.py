"""Archives between pallet and the real peers: skopeo writes what pallet loads, and skopeo and
podman read what pallet saves, with the same image ID (= config digest) on every side.

podman runs with a private --root/--runroot under the test's temp dir and a containers.conf of
its own (CONTAINERS_CONF), so nothing shared on the host is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pallet.images import archive
from pallet.images.bootstrap import bootstrap_busybox
from pallet.images.store import ImageStore
from pallet.state import db
from pallet.state.paths import StatePaths

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (podman's storage, layer owners)"),
    *[pytest.mark.skipif(shutil.which(tool) is None,
                         reason=f"{tool} is not installed (apt-get install {tool})")
      for tool in ("skopeo", "podman", "runc")],
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="busybox-static is not installed"),
]

# The host cannot grant podman's default rlimits (no CAP_SYS_RESOURCE): see PEERS.md.
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


@dataclass
class Podman:
    root: Path
    runroot: Path  # podman refuses a runroot longer than 50 characters
    env: dict[str, str]

    @property
    def storage_ref(self) -> str:
        return f"containers-storage:[overlay@{self.root}+{self.runroot}]"

    def __call__(self, *args: str) -> str:
        argv = ["podman", "--root", str(self.root), "--runroot", str(self.runroot), "--runtime", "runc",
                *args]
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=300)
        assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr}"
        return proc.stdout

    def skopeo(self, *args: str) -> str:
        proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, env=self.env, timeout=300)
        assert proc.returncode == 0, f"skopeo {' '.join(args)}: {proc.stderr}"
        return proc.stdout


def _unmount_below(path: Path) -> None:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    _unmount_below(tmp_path)  # podman's overlay driver leaves a private bind mount of its home
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def podman(work: Path) -> Iterator[Podman]:
    conf = work / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "TMPDIR": str(work)}
    runroot = Path(tempfile.mkdtemp(prefix="pallet-podman-", dir="/tmp"))
    yield Podman(work / "podman-storage", runroot, env)
    _unmount_below(runroot)
    shutil.rmtree(runroot, ignore_errors=True)


def make_store(root: Path) -> ImageStore:
    paths = StatePaths.resolve(str(root))
    paths.ensure()
    return ImageStore(paths, db.connect(paths.db))


@pytest.fixture
def store(work: Path) -> Iterator[ImageStore]:
    s = make_store(work / "pallet")
    yield s
    s.conn.close()


def config_digest(podman: Podman, transport_ref: str) -> str:
    digest: str = json.loads(podman.skopeo("inspect", "--raw", transport_ref))["config"]["digest"]
    return digest


def test_load_what_skopeo_writes(store: ImageStore, podman: Podman, work: Path) -> None:
    # A busybox rootfs tar: the layer of pallet's own bootstrapped busybox image.
    busybox = bootstrap_busybox(store)
    rootfs = store.content.path(store.config(busybox)["rootfs"]["diff_ids"][0])
    podman("import", "--change", 'CMD ["sh"]', str(rootfs), "busybox:latest")
    src = podman.storage_ref + "localhost/busybox:latest"
    docker_tar, oci_tar = work / "busybox.tar", work / "busybox-oci.tar"
    podman.skopeo("copy", "-q", src, f"docker-archive:{docker_tar}:busybox:latest")
    podman.skopeo("copy", "-q", src, f"oci-archive:{oci_tar}:docker.io/library/busybox:latest")
    expected = config_digest(podman, f"docker-archive:{docker_tar}")
    assert expected == config_digest(podman, f"oci-archive:{oci_tar}") != busybox

    for path, root in ((docker_tar, "from-docker-archive"), (oci_tar, "from-oci-archive")):
        target = make_store(work / root)
        with open(path, "rb") as f:
            assert archive.load(target, f) == ["Loaded image: busybox:latest"]
        rec = target.resolve("busybox:latest")
        assert rec.id == expected
        assert rec.tags == ["docker.io/library/busybox:latest"]
        target.conn.close()


def test_peers_read_what_pallet_saves(store: ImageStore, podman: Podman, work: Path) -> None:
    busybox = bootstrap_busybox(store)
    out = work / "pallet-save.tar"
    with open(out, "wb") as f:
        archive.save(store, ["busybox:latest"], f)
    inspected = json.loads(podman.skopeo("inspect", f"docker-archive:{out}"))
    assert inspected["Layers"] == store.config(busybox)["rootfs"]["diff_ids"]
    assert config_digest(podman, f"docker-archive:{out}") == busybox

    podman("load", "-q", "-i", str(out))
    assert podman("inspect", "--format", "{{.Id}}", busybox[7:]).strip() == busybox[7:]
    assert busybox[7:19] in podman("images", "--format", "{{.ID}}").split()

    oci = work / "pallet-save-oci.tar"
    with open(oci, "wb") as f:
        archive.save_oci(store, ["busybox:latest"], f)
    assert config_digest(podman, f"oci-archive:{oci}") == busybox
    loaded = podman("load", "-i", str(oci))
    assert "docker.io/library/busybox:latest" in loaded  # io.containerd.image.name is honoured


def test_oci_ref_name_forms(store: ImageStore, podman: Podman, work: Path) -> None:
    """A bare ref.name tag: podman takes it as a name (localhost/latest:latest); pallet does the same
    under docker's normalisation; a layout directory's bare tag goes with the directory's name."""
    busybox = bootstrap_busybox(store)
    src = f"oci-archive:{work / 'tmp-oci.tar'}"
    with open(work / "tmp-oci.tar", "wb") as f:
        archive.save_oci(store, ["busybox:latest"], f)
    bare = work / "bare.tar"
    podman.skopeo("copy", "-q", src, f"oci-archive:{bare}:v2")
    assert "localhost/v2:latest" in podman("load", "-i", str(bare))
    target = make_store(work / "bare-root")
    with open(bare, "rb") as f:
        assert archive.load(target, f) == ["Loaded image: v2:latest"]
    layout = work / "mylayout"
    podman.skopeo("copy", "-q", src, f"oci:{layout}:v3")
    assert archive.load_dir(target, layout) == ["Loaded image: mylayout:v3"]
    assert target.resolve("mylayout:v3").id == busybox
    target.conn.close()
