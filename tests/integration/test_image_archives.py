"""load / save / import / bootstrap through the images API, against a real store in a temp root.

Corrupt input must fail with one ImageError line and leave the store exactly as it was; what save
writes must validate against the OCI image-spec schemas.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from pallet.images import archive
from pallet.images.bootstrap import BootstrapError, bootstrap_busybox
from pallet.images.config import ChangeError
from pallet.images.importer import import_rootfs
from pallet.images.store import ImageError, ImageStore
from pallet.state import db
from pallet.state.paths import StatePaths

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (layer files owned by root)")]

SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "oci"


def make_store(root: Path) -> ImageStore:
    paths = StatePaths.resolve(str(root))
    paths.ensure()
    return ImageStore(paths, db.connect(paths.db))


def remove_root(root: Path) -> None:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    s = make_store(tmp_path / "root")
    yield s
    s.conn.close()
    remove_root(tmp_path / "root")


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[ImageStore]:
    """A second, empty store."""
    s = make_store(tmp_path / "root2")
    yield s
    s.conn.close()
    remove_root(tmp_path / "root2")


@pytest.fixture
def busybox(store: ImageStore) -> str:
    if not Path("/bin/busybox").exists():
        pytest.skip("busybox-static is not installed")
    return bootstrap_busybox(store)


def saved(store: ImageStore, *names: str, oci: bool = False) -> bytes:
    buf = io.BytesIO()
    (archive.save_oci if oci else archive.save)(store, list(names), buf)
    return buf.getvalue()


def members(data: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for ti in tf:
            f = tf.extractfile(ti)
            out[ti.name] = (ti, f.read() if f else b"")
    return out


def build_tar(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def snapshot(store: ImageStore) -> dict[str, Any]:
    """Everything a load could leave behind."""
    root = store.paths.root
    return {
        "blobs": sorted(os.listdir(store.paths.blobs)),
        "ingest": sorted(os.listdir(store.paths.ingest)),
        "layers": sorted(os.listdir(store.paths.layers)),
        "tmp": sorted(os.listdir(store.paths.tmp)),
        "db": {t: [tuple(r) for r in store.conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2")]
               for t in ("images", "tags", "layers", "image_layers", "image_blobs")},
        "root": sorted(os.listdir(root)),
    }


def stream(data: bytes, fail_after: int | None = None) -> io.BufferedReader:
    """Like stdin: read once, no seeking; optionally interrupted (Ctrl-C) part-way."""
    return io.BufferedReader(OneShot(data, fail_after))


class OneShot(io.RawIOBase):
    """A non-seekable stream (like stdin) that can stop with an exception after some bytes."""

    def __init__(self, data: bytes, fail_after: int | None = None,
                 exc: type[BaseException] = KeyboardInterrupt) -> None:
        self.data, self.pos, self.fail_after, self.exc = data, 0, fail_after, exc

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise self.exc()
        n = min(len(b), len(self.data) - self.pos, 65536)
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


# ---- bootstrap ----------------------------------------------------------------------------------

def test_bootstrap_busybox_is_reproducible(store: ImageStore, fresh: ImageStore, busybox: str) -> None:
    assert bootstrap_busybox(store) == busybox
    assert bootstrap_busybox(fresh) == busybox  # another root, another run: same bytes
    cfg = store.config(busybox)
    assert cfg["config"] == {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                             "Cmd": ["sh"]}
    assert cfg["os"] == "linux" and len(cfg["history"]) == 1
    assert cfg["created"] == cfg["history"][0]["created"]
    rec = store.resolve("busybox")
    assert rec.tags == ["docker.io/library/busybox:latest"]
    layer = store.layer_dir(rec.chain_ids[0])
    assert os.readlink(layer / "bin/sh") == "/bin/busybox"
    assert os.stat(layer / "tmp").st_mode & 0o7777 == 0o1777
    assert "nobody:x:65534:65534:" in (layer / "etc/passwd").read_text()
    listed = subprocess.run(["/bin/busybox", "--list-full"], capture_output=True, text=True).stdout.split()
    assert all((layer / p).is_symlink() for p in listed if p != "bin/busybox")
    assert (layer / "bin/busybox").is_file()


def test_bootstrap_busybox_names_the_missing_package(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(BootstrapError, match="busybox-static"):
        bootstrap_busybox(store, busybox=tmp_path / "no-busybox")


# ---- save ---------------------------------------------------------------------------------------

def _validator(schema_file: str) -> Any:
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    resources = []
    for path in SCHEMAS.glob("*.json"):
        resource = Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT4)
        for base in ("https://opencontainers.org/schema/", "https://opencontainers.org/schema/image/"):
            resources.append((base + path.name, resource))
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = json.loads((SCHEMAS / schema_file).read_text())
    return Draft4Validator(schema, registry=registry, format_checker=Draft4Validator.FORMAT_CHECKER)


def validate(doc: Any, schema_file: str) -> None:
    errors = list(_validator(schema_file).iter_errors(doc))
    assert not errors, [e.message for e in errors]


def test_schema_validator_rejects_bad_documents() -> None:
    with pytest.raises(AssertionError):
        validate({"schemaVersion": 2, "config": {"digest": "nope", "size": 1, "mediaType": "a/b"},
                  "layers": []}, "image-manifest-schema.json")
    with pytest.raises(AssertionError):
        validate({"imageLayoutVersion": "2.0.0"}, "image-layout-schema.json")


def check_written_documents(data: bytes, image_id: str) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    files = members(data)
    index = json.loads(files["index.json"][1])
    validate(index, "image-index-schema.json")
    validate(json.loads(files["oci-layout"][1]), "image-layout-schema.json")
    for desc in index["manifests"]:
        manifest_bytes = files["blobs/sha256/" + desc["digest"][7:]][1]
        assert hashlib.sha256(manifest_bytes).hexdigest() == desc["digest"][7:]
        manifest = json.loads(manifest_bytes)
        validate(manifest, "image-manifest-schema.json")
        config = files["blobs/sha256/" + manifest["config"]["digest"][7:]][1]
        validate(json.loads(config), "config-schema.json")
        for layer in manifest["layers"]:
            blob = files["blobs/sha256/" + layer["digest"][7:]][1]
            assert hashlib.sha256(blob).hexdigest() == layer["digest"][7:]
    assert any(d["digest"] for d in index["manifests"])
    assert "blobs/sha256/" + image_id[7:] in files
    return files


def test_save_writes_docker25_archive(store: ImageStore, busybox: str) -> None:
    data = saved(store, "busybox")
    assert data == saved(store, "busybox:latest")  # deterministic, byte for byte
    files = check_written_documents(data, busybox)
    names = list(files)
    assert names[:2] == ["blobs", "blobs/sha256"] and files["blobs"][0].isdir()  # tarfile drops the "/"
    assert names[-4:] == ["index.json", "manifest.json", "oci-layout", "repositories"]
    cfg = store.config(busybox)
    diff_id = cfg["rootfs"]["diff_ids"][0]
    manifest = json.loads(files["manifest.json"][1])
    assert manifest == [{"Config": "blobs/sha256/" + busybox[7:], "RepoTags": ["busybox:latest"],
                         "Layers": ["blobs/sha256/" + diff_id[7:]]}]
    assert json.loads(files["repositories"][1]) == {"busybox": {"latest": diff_id[7:]}}
    index = json.loads(files["index.json"][1])
    assert index["manifests"][0]["annotations"] == {
        "io.containerd.image.name": "docker.io/library/busybox:latest",
        "org.opencontainers.image.ref.name": "latest"}
    for name, (ti, _) in files.items():
        assert (ti.uid, ti.gid, ti.uname, ti.gname) == (0, 0, "", "")
        assert ti.mode == (0o755 if ti.isdir() else 0o644)
        blob = name.startswith("blobs/sha256/") and name[13:] in (busybox[7:], diff_id[7:])
        assert ti.mtime == (int(os.stat("/bin/busybox").st_mtime) if blob else 0), name


def test_save_several_images_writes_shared_blobs_once(store: ImageStore, busybox: str) -> None:
    store.tag("busybox", "example.com/team/bb:v1")
    rootfs = build_tar([("hello.txt", b"hello\n")])
    other = import_rootfs(store, io.BytesIO(gzip.compress(rootfs)), changes=[], message=None, tag="other:1")
    data = saved(store, "busybox", "example.com/team/bb:v1", other)
    files = check_written_documents(data, busybox)
    manifest = json.loads(files["manifest.json"][1])
    assert [m["RepoTags"] for m in manifest] == [["busybox:latest", "example.com/team/bb:v1"], None]
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        all_names = tf.getnames()
    assert len(all_names) == len(set(all_names))
    # the imported layer was stored gzip-compressed; the archive carries it plain (digest = diff_id)
    diff_id = store.config(other)["rootfs"]["diff_ids"][0]
    assert files["blobs/sha256/" + diff_id[7:]][1] == rootfs
    index = json.loads(files["index.json"][1])
    assert len(index["manifests"]) == 3 and "annotations" not in index["manifests"][2]


def test_save_oci_archive_validates_and_loads(store: ImageStore, fresh: ImageStore, busybox: str) -> None:
    data = saved(store, "busybox", oci=True)
    files = check_written_documents(data, busybox)
    assert "manifest.json" not in files
    assert archive.load(fresh, stream(data)) == ["Loaded image: busybox:latest"]
    assert fresh.resolve("busybox").id == busybox


# ---- load ---------------------------------------------------------------------------------------

def test_load_round_trip_from_a_stream(store: ImageStore, fresh: ImageStore, busybox: str) -> None:
    data = saved(store, "busybox")
    assert archive.load(fresh, stream(data)) == ["Loaded image: busybox:latest"]
    assert fresh.resolve("busybox:latest").id == busybox
    before = snapshot(fresh)
    assert archive.load(fresh, stream(gzip.compress(data))) == ["Loaded image: busybox:latest"]
    assert archive.load(fresh, stream(zstandard.ZstdCompressor().compress(data))) == [
        "Loaded image: busybox:latest"]
    after = snapshot(fresh)
    assert after["blobs"] == before["blobs"] and after["layers"] == before["layers"]
    assert saved(fresh, "busybox") == data  # what we load, we save again identically


def test_load_untagged_and_moved_tag(store: ImageStore, fresh: ImageStore, busybox: str) -> None:
    data = saved(store, busybox)
    assert archive.load(fresh, io.BytesIO(data)) == [f"Loaded image ID: {busybox}"]
    other = import_rootfs(fresh, io.BytesIO(build_tar([("a", b"a")])), changes=[], message=None,
                          tag="busybox:latest")
    lines = archive.load(fresh, io.BytesIO(saved(store, "busybox")))
    assert lines == [f"The image busybox:latest already exists, renaming the old one with ID {other} to "
                     "empty string", "Loaded image: busybox:latest"]


def test_load_classic_docker_archive_with_gzip_layer(store: ImageStore, fresh: ImageStore,
                                                     busybox: str) -> None:
    files = members(saved(store, "busybox"))
    config = files["blobs/sha256/" + busybox[7:]][1]
    layer = files["blobs/sha256/" + store.config(busybox)["rootfs"]["diff_ids"][0][7:]][1]
    data = build_tar([("abc/layer.tar", gzip.compress(layer)), (busybox[7:] + ".json", config),
                      ("manifest.json", json.dumps([{"Config": busybox[7:] + ".json", "RepoTags": ["bb:1"],
                                                     "Layers": ["abc/layer.tar"]}]).encode()),
                      ("repositories", b"{}")])
    assert archive.load(fresh, stream(data)) == ["Loaded image: bb:1"]
    assert fresh.resolve("bb:1").id == busybox
    assert saved(fresh, "bb:1") != b""  # the gzip blob decompresses back to the diff_id


def test_load_oci_layout_directory(store: ImageStore, fresh: ImageStore, busybox: str,
                                   tmp_path: Path) -> None:
    layout = tmp_path / "mylayout"
    layout.mkdir()
    with tarfile.open(fileobj=io.BytesIO(saved(store, "busybox", oci=True))) as tf:
        tf.extractall(layout)  # our own output: trusted
    index = json.loads((layout / "index.json").read_text())
    del index["manifests"][0]["annotations"]["io.containerd.image.name"]  # leave only ref.name=latest
    (layout / "index.json").write_text(json.dumps(index))
    assert archive.load_dir(fresh, layout) == ["Loaded image: mylayout:latest"]
    assert fresh.resolve("mylayout").id == busybox


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes(b ^ 0x5A for b in data[at:at + 64]) + data[at + 64:]


def _corrupt_cases(store: ImageStore, busybox: str) -> dict[str, bytes]:
    data = saved(store, "busybox")
    files = members(data)
    diff_id = store.config(busybox)["rootfs"]["diff_ids"][0]
    layer = files["blobs/sha256/" + diff_id[7:]][1]
    config = files["blobs/sha256/" + busybox[7:]][1]
    bad_layer = bytearray(layer)
    bad_layer[1024] ^= 0xFF
    entries = [(n, b) for n, (ti, b) in files.items() if ti.isfile()]
    tampered = [(n, bytes(bad_layer) if n.endswith(diff_id[7:]) else b) for n, b in entries]
    # a gzip layer whose content is fine but is not what the config's diff_id says: found only
    # after unpacking it, so the unpacked layer directory must be removed again
    other_config = json.loads(config)
    other_config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    other_bytes = json.dumps(other_config).encode()
    cfg_name = hashlib.sha256(other_bytes).hexdigest() + ".json"
    wrong_diff = build_tar([("l.tar.gz", gzip.compress(layer)), (cfg_name, other_bytes),
                            ("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": ["x:1"],
                                                           "Layers": ["l.tar.gz"]}]).encode())])
    return {
        "not a tar": b"this is not a tar archive\n" * 100,
        "empty": b"",
        "truncated mid-layer": data[: len(data) // 2],
        "wrong blob digest": build_tar(tampered),
        "wrong diff_id after unpack": wrong_diff,
        "missing manifest": build_tar([(n, b) for n, b in entries
                                       if n not in ("manifest.json", "index.json")]),
        "missing layer": build_tar([(n, b) for n, b in entries if not n.endswith(diff_id[7:])]),
        "corrupt gzip archive": _flip(gzip.compress(data), 1000),
    }


@pytest.mark.parametrize("case", ["not a tar", "empty", "truncated mid-layer", "wrong blob digest",
                                  "wrong diff_id after unpack", "missing manifest", "missing layer",
                                  "corrupt gzip archive"])
def test_load_bad_input_leaves_nothing(store: ImageStore, fresh: ImageStore, busybox: str, case: str) -> None:
    data = _corrupt_cases(store, busybox)[case]
    before = snapshot(fresh)
    with pytest.raises(ImageError) as err:
        archive.load(fresh, stream(data))
    message = str(err.value)
    assert message and "\n" not in message
    assert snapshot(fresh) == before, case


def test_load_interrupted_leaves_nothing(store: ImageStore, fresh: ImageStore, busybox: str) -> None:
    data = saved(store, "busybox")
    before = snapshot(fresh)
    for fail_after in (len(data) // 3, len(data) - 100_000):
        with pytest.raises(KeyboardInterrupt):
            archive.load(fresh, stream(data, fail_after=fail_after))
        assert snapshot(fresh) == before


# ---- import -------------------------------------------------------------------------------------

def test_import_with_changes(store: ImageStore) -> None:
    rootfs = build_tar([("bin/tool", b"#!/bin/sh\n"), ("etc/motd", b"hi\n")])
    image_id = import_rootfs(store, stream(zstandard.ZstdCompressor().compress(rootfs)),
                             changes=['CMD ["sh"]', "ENV A=1 B=two", "EXPOSE 80 53/udp", "WORKDIR /srv",
                                      "LABEL team=core"],
                             message=None, tag="imported:v1")
    cfg = store.config(image_id)
    assert cfg["config"] == {"Cmd": ["sh"], "Env": ["A=1", "B=two"],
                             "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
                             "WorkingDir": "/srv", "Labels": {"team": "core"}}
    assert cfg["history"] == [{"created": cfg["created"], "comment": "Imported from -"}]
    assert cfg["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(rootfs).hexdigest()]
    assert store.resolve("imported:v1").id == image_id
    assert (store.layer_dir(store.resolve(image_id).chain_ids[0]) / "etc/motd").read_bytes() == b"hi\n"
    again = import_rootfs(store, io.BytesIO(rootfs), changes=[], message="my message", tag=None)
    assert store.config(again)["history"][0]["comment"] == "my message"
    assert "config" in store.config(again) and store.config(again)["config"] == {}


def test_import_rejects_bad_change_and_bad_tar(store: ImageStore) -> None:
    before = snapshot(store)
    with pytest.raises(ChangeError, match="unknown instruction: FOO"):
        import_rootfs(store, io.BytesIO(b""), changes=["FOO bar"], message=None, tag=None)
    with pytest.raises(ImageError):
        import_rootfs(store, io.BytesIO(gzip.compress(b"not a tar" * 100)), changes=[], message=None,
                      tag=None)
    with pytest.raises(ImageError):
        import_rootfs(store, io.BytesIO(build_tar([("a", b"a")])), changes=[], message=None, tag="UPPER:case")
    assert snapshot(store) == before


def two_layer_archive(tag: str = "two:layers") -> tuple[bytes, list[str]]:
    """A classic docker-archive of a two-layer image (the second layer deletes a file)."""
    first = build_tar([("etc/keep", b"1\n"), ("etc/gone", b"2\n")])
    second = gzip.compress(build_tar([("etc/.wh.gone", b""), ("etc/new", b"3\n")]))
    diff_ids = ["sha256:" + hashlib.sha256(first).hexdigest(),
                "sha256:" + hashlib.sha256(gzip.decompress(second)).hexdigest()]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = [{"Config": "c.json", "RepoTags": [tag], "Layers": ["1/layer.tar", "2/layer.tar"]}]
    return build_tar([("1/layer.tar", first), ("2/layer.tar", second), ("c.json", config),
                      ("manifest.json", json.dumps(manifest).encode())]), diff_ids


def test_load_two_layers(fresh: ImageStore) -> None:
    data, diff_ids = two_layer_archive()
    assert archive.load(fresh, stream(data)) == ["Loaded image: two:layers"]
    rec = fresh.resolve("two:layers")
    assert rec.chain_ids[0] == diff_ids[0]
    assert rec.chain_ids[1] == "sha256:" + hashlib.sha256(f"{diff_ids[0]} {diff_ids[1]}".encode()).hexdigest()
    assert (fresh.layer_dir(rec.chain_ids[1]) / "etc/new").read_bytes() == b"3\n"
    files = members(saved(fresh, "two:layers"))
    manifest = json.loads(files["manifest.json"][1])
    assert manifest[0]["Layers"] == ["blobs/sha256/" + d[7:] for d in diff_ids]


def test_load_interrupted_while_unpacking_leaves_nothing(fresh: ImageStore,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = two_layer_archive()
    original = fresh.ingest_layer
    calls = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(fresh, "ingest_layer", interrupted)
    before = snapshot(fresh)
    with pytest.raises(KeyboardInterrupt):
        archive.load(fresh, stream(data))
    assert len(calls) == 2
    assert snapshot(fresh) == before  # the first layer, already placed, is gone again


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap is not installed")
def test_bootstrap_debian_is_cached(store: ImageStore, fresh: ImageStore,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The first run may take a minute (debootstrap, network to the Debian mirror); later runs
    reuse the cached rootfs tarball in the default cache and must not run debootstrap again."""
    from pallet.images import bootstrap

    first = bootstrap.bootstrap_debian(store)

    def no_debootstrap(*args: Any) -> None:
        raise AssertionError("debootstrap ran although the rootfs is cached")

    monkeypatch.setattr(bootstrap, "_run_debootstrap", no_debootstrap)
    assert bootstrap.bootstrap_debian(fresh) == first
    cfg = fresh.config(first)
    assert cfg["config"]["Cmd"] == ["bash"]
    layer = fresh.layer_dir(fresh.resolve("debian:bookworm").chain_ids[0])
    assert (layer / "etc/debian_version").exists()
    assert (layer / "etc/resolv.conf").read_text() == ""
    assert not list((layer / "var/cache/apt/archives").glob("*.deb"))
    assert not os.listdir(layer / "dev")
