"""Layer unpacking and writing: round trips, compression sniffing, and hostile archives.

Unpacking sets owners, makes device nodes and sets trusted.* xattrs, so most tests need root
(we are root here and in CI); they skip with a reason otherwise.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
import zstandard

from pallet.images.layers import (
    LayerError,
    UnpackResult,
    chain_ids,
    open_decompressed,
    unpack_layer,
    write_layer_tar,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking sets owners and makes device nodes")

Member = tuple[tarfile.TarInfo, bytes | None]
MTIME = 1_600_000_000


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


# --------------------------------------------------------------------------- helpers


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, **attrs: Any) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = MTIME
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    return info, data


def regular(name: str, data: bytes = b"", **attrs: Any) -> Member:
    return entry(name, tarfile.REGTYPE, data, **attrs)


def directory(name: str, **attrs: Any) -> Member:
    return entry(name, tarfile.DIRTYPE, **attrs)


def symlink(name: str, target: str) -> Member:
    return entry(name, tarfile.SYMTYPE, linkname=target)


def hardlink(name: str, target: str) -> Member:
    return entry(name, tarfile.LNKTYPE, linkname=target)


def make_tar(*members: Member, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> UnpackResult:
    return unpack_layer(io.BytesIO(data), dest)


def snapshot(root: Path, *, skip: Path | None = None) -> dict[str, tuple[Any, ...]]:
    """Everything about a tree that a layer round trip must keep (mtimes in whole seconds)."""
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        if skip is not None and Path(os.fsdecode(dirpath)) == skip:
            dirnames[:] = []
            continue
        dirnames.sort()
        for name in sorted(dirnames + filenames):  # sorted, so that hardlink groups get the same first name
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.fsdecode(os.path.relpath(path, os.fsencode(root)))
            content: Any = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(Path(os.fsdecode(path)).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            try:
                xattrs = {
                    key: os.getxattr(path, key, follow_symlinks=False)
                    for key in sorted(os.listxattr(path, follow_symlinks=False))
                    if key != "security.selinux"
                }
            except OSError:
                xattrs = {}
            link = (
                inodes.setdefault(st.st_ino, rel)
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode)
                else None
            )
            out[rel] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                st.st_mtime_ns // 1_000_000_000,
                st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else None,
                content,
                xattrs,
                link,
            )
    return out


class Sandbox:
    """tmp/outside/sentinel plus tmp/dest; hostile tests check that nothing outside dest changed."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.outside = tmp / "outside"
        self.outside.mkdir()
        self.sentinel = self.outside / "sentinel"
        self.sentinel.write_bytes(os.urandom(64))
        self.dest = tmp / "dest"
        self.dest.mkdir()
        self.before = snapshot(tmp, skip=self.dest)
        self.sentinel_bytes = self.sentinel.read_bytes()

    def assert_outside_untouched(self) -> None:
        assert self.sentinel.read_bytes() == self.sentinel_bytes
        assert snapshot(self.tmp, skip=self.dest) == self.before

    def rejects(self, data: bytes, match: str) -> None:
        with pytest.raises(LayerError, match=match):
            unpack(data, self.dest)
        self.assert_outside_untouched()


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


# --------------------------------------------------------------------------- round trip


def build_tree(root: Path) -> None:
    """A tree with every kind of entry a layer carries, including overlay whiteouts."""
    (root / "bin").mkdir()
    (root / "bin" / "su").write_bytes(b"\x7fELF" + os.urandom(5000))
    os.chmod(root / "bin" / "su", 0o4755)
    os.link(root / "bin" / "su", root / "bin" / "su2")
    (root / "etc").mkdir()
    (root / "etc" / "shadow").write_bytes(b"root:*:1::::::\n")
    os.chown(root / "etc" / "shadow", 1234, 5678)
    os.chmod(root / "etc" / "shadow", 0o640)
    os.setxattr(root / "etc" / "shadow", "user.foo", b"bar")
    os.setxattr(root / "etc" / "shadow", "trusted.bin", b"\x00\xff\x80binary")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "shared").mkdir()
    os.chmod(root / "shared", 0o2775)
    os.chown(root / "shared", 0, 50)
    os.symlink("usr/lib", root / "lib")
    os.symlink("/nonexistent/target", root / "dangling")
    os.chown(root / "dangling", 42, 43, follow_symlinks=False)
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "dev" / "fifo", stat.S_IFIFO | 0o600)
    os.mknod(root / "gone", stat.S_IFCHR, os.makedev(0, 0))  # overlay whiteout
    (root / "opq").mkdir()
    (root / "opq" / "kept").write_bytes(b"kept\n")
    os.setxattr(root / "opq", "trusted.overlay.opaque", b"y")
    (root / os.fsdecode(b"caf\xe9")).write_bytes(b"latin-1 name\n")
    deep = root / ("x" * 60) / ("y" * 60)
    deep.mkdir(parents=True)
    (deep / ("z" * 80)).write_bytes(b"long name\n")
    (root / "big").write_bytes(os.urandom(3 << 20))
    (root / "empty").write_bytes(b"")
    # mtimes last, deepest first, so that nothing bumps them afterwards
    paths = sorted((Path(d) / n for d, ds, fs in os.walk(root) for n in ds + fs), key=lambda p: -len(p.parts))
    for i, path in enumerate(paths):
        os.utime(path, ns=((MTIME - i) * 10**9,) * 2, follow_symlinks=False)


@needs_root
def test_round_trip_keeps_everything_and_is_deterministic(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    build_tree(src)

    out = io.BytesIO()
    diff_id = write_layer_tar(src, out)
    data = out.getvalue()
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    again = io.BytesIO()
    assert write_layer_tar(src, again) == diff_id
    assert again.getvalue() == data

    result = unpack(data, dest)
    assert result.diff_id == diff_id
    files = {
        (st.st_ino, st.st_size) for st in (p.lstat() for p in src.rglob("*")) if stat.S_ISREG(st.st_mode)
    }
    assert result.size == sum(size for _, size in files)

    assert snapshot(dest) == snapshot(src)
    assert os.stat(dest / "bin" / "su").st_ino == os.stat(dest / "bin" / "su2").st_ino
    gone = os.lstat(dest / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    # ... and writing the unpacked tree gives the very same layer
    assert write_layer_tar(dest, io.BytesIO()) == diff_id


@needs_root
def test_written_tar_uses_oci_whiteouts_and_numeric_owners(tmp_path: Path) -> None:
    build_tree(tmp_path)
    out = io.BytesIO()
    write_layer_tar(tmp_path, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        members = {m.name: m for m in tf.getmembers()}
    names = list(members)
    assert names.index("bin") < names.index("bin/su") < names.index("bin/su2")
    assert "gone" not in members and ".wh.gone" in members
    assert members[".wh.gone"].isreg() and members[".wh.gone"].size == 0
    assert members["opq/.wh..wh..opq"].isreg()
    assert not any("trusted.overlay" in key for m in members.values() for key in m.pax_headers)
    assert members["bin/su2"].islnk() and members["bin/su2"].linkname == "bin/su"
    assert members["bin/su"].mode == 0o4755
    assert members["etc/shadow"].pax_headers["SCHILY.xattr.user.foo"] == "bar"
    assert (members["dangling"].uid, members["dangling"].gid) == (42, 43)
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    assert members["dev/null"].ischr() and (members["dev/null"].devmajor, members["dev/null"].devminor) == (
        1,
        3,
    )
    assert members["dev/fifo"].isfifo()


@needs_root
def test_mtime_is_clamped_for_reproducible_layers(tmp_path: Path) -> None:
    (tmp_path / "new").write_bytes(b"new")
    (tmp_path / "old").write_bytes(b"old")
    os.utime(tmp_path / "old", (100, 100))
    out = io.BytesIO()
    write_layer_tar(tmp_path, out, mtime=1000)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert {m.name: m.mtime for m in tf.getmembers()} == {"new": 1000, "old": 100}
    os.utime(tmp_path / "new", (5000, 5000))
    assert write_layer_tar(tmp_path, io.BytesIO(), mtime=1000) == write_layer_tar(
        tmp_path, io.BytesIO(), mtime=1000
    )


# --------------------------------------------------------------------------- streams and digests


def sample_tar() -> bytes:
    return make_tar(directory("d"), regular("d/f", os.urandom(200_000)), regular("g", b"x" * 1000))


@pytest.mark.parametrize(
    "compress",
    [
        lambda b: b,
        gzip.compress,
        zstd,
        lambda b: gzip.compress(b[:5000]) + gzip.compress(b[5000:]),  # multi-member gzip
        lambda b: zstd(b[:5000]) + zstd(b[5000:]),
    ],
    ids=["plain", "gzip", "zstd", "gzip-members", "zstd-frames"],
)
def test_open_decompressed_sniffs_the_format(compress: Any) -> None:
    data = sample_tar()
    assert open_decompressed(io.BytesIO(compress(data))).read() == data


@needs_root
@pytest.mark.parametrize("compress", [gzip.compress, zstd])
def test_diff_id_is_of_the_uncompressed_stream(tmp_path: Path, compress: Any) -> None:
    data = sample_tar() + bytes(4096)  # padding after the end-of-archive blocks is part of the diff_id
    result = unpack(compress(data), tmp_path)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.size == 201_000
    assert (tmp_path / "g").read_bytes() == b"x" * 1000


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(sample_tar())[:-30],
        zstd(sample_tar())[:-30],
        zstandard.ZstdCompressor(write_checksum=True).compress(sample_tar())[:-2],
    ],
    ids=["gzip", "zstd", "zstd-checksum"],
)
@needs_root
def test_truncated_compressed_stream(tmp_path: Path, blob: bytes) -> None:
    with pytest.raises(LayerError, match="truncated|corrupt"):
        unpack(blob, tmp_path)


@needs_root
def test_trailing_garbage_after_gzip(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="trailing garbage"):
        unpack(gzip.compress(sample_tar()) + b"garbage!", tmp_path)


@pytest.mark.parametrize("tail", [b"junk", bytes(10)], ids=["junk", "zeros"])
def test_trailing_garbage_after_zstd(tmp_path: Path, tail: bytes) -> None:
    with pytest.raises(LayerError, match="corrupt zstd"):
        open_decompressed(io.BytesIO(zstd(sample_tar()) + tail)).read()


def test_zstd_starting_with_a_skippable_frame() -> None:
    skippable = (0x184D2A50).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"index"
    data = sample_tar()
    assert open_decompressed(io.BytesIO(skippable + zstd(data))).read() == data


@needs_root
def test_reader_thread_is_stopped_after_an_error(tmp_path: Path) -> None:
    big = make_tar(*(regular(f"f{i}", os.urandom(300_000)) for i in range(20)), regular("../x", b"x"))
    with pytest.raises(LayerError, match="escapes"):
        unpack(gzip.compress(big, compresslevel=1), tmp_path)
    assert not [t for t in threading.enumerate() if t.name == "layer-reader"]


def test_chain_ids() -> None:
    a, b, c = ("sha256:" + hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c"))
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([a]) == [a]
    assert chain_ids([]) == []
    # the same values from `printf 'sha256:<a> sha256:<b>' | sha256sum`
    assert ab == "sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676"
    assert abc == "sha256:2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106"


# --------------------------------------------------------------------------- layer semantics


@needs_root
def test_unpack_keeps_metadata(tmp_path: Path) -> None:
    data = make_tar(
        directory("d", mode=0o700, uid=7, gid=8, mtime=1000),
        regular("d/setuid", b"#!", mode=0o6755, uid=0, gid=0, mtime=2000),
        regular("d/owned", b"o", uid=1000, gid=1001),
        entry("d/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        entry("d/fifo", tarfile.FIFOTYPE),
        symlink("d/ln", "/etc/passwd"),
        regular(
            "x",
            b"x",
            pax_headers={"SCHILY.xattr.user.foo": "bar", "SCHILY.xattr.trusted.overlay.opaque": "y"},
        ),
    )
    unpack(data, tmp_path)
    d = os.stat(tmp_path / "d")
    assert (stat.S_IMODE(d.st_mode), d.st_uid, d.st_gid, d.st_mtime) == (0o700, 7, 8, 1000)
    st = os.stat(tmp_path / "d" / "setuid")
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o6755, 2000)
    assert (os.stat(tmp_path / "d" / "owned").st_uid, os.stat(tmp_path / "d" / "owned").st_gid) == (
        1000,
        1001,
    )
    null = os.stat(tmp_path / "d" / "null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.stat(tmp_path / "d" / "fifo").st_mode)
    assert os.readlink(tmp_path / "d" / "ln") == "/etc/passwd"
    assert os.getxattr(tmp_path / "x", "user.foo") == b"bar"
    assert "trusted.overlay.opaque" not in os.listxattr(
        tmp_path / "x"
    )  # overlay metadata only from whiteouts


@needs_root
def test_whiteouts(tmp_path: Path) -> None:
    data = make_tar(
        directory("dir"),
        regular("dir/.wh..wh..opq"),
        regular("dir/.wh.gone", uid=5, gid=6),
        regular(".wh.never-existed"),
        regular("new/.wh.x"),  # parent created implicitly
        regular(".wh..wh.plnk"),  # aufs bookkeeping: dropped
    )
    unpack(data, tmp_path)
    assert os.getxattr(tmp_path / "dir", "trusted.overlay.opaque") == b"y"
    for path in (tmp_path / "dir" / "gone", tmp_path / "never-existed", tmp_path / "new" / "x"):
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (os.lstat(tmp_path / "dir" / "gone").st_uid, os.lstat(tmp_path / "dir" / "gone").st_gid) == (5, 6)
    assert sorted(os.listdir(tmp_path)) == ["dir", "never-existed", "new"]
    assert sorted(os.listdir(tmp_path / "dir")) == ["gone"]


@pytest.mark.parametrize("name", [".wh..", "d/.wh.", "d/.wh.."])
def test_whiteout_of_invalid_name(box: Sandbox, name: str) -> None:
    box.rejects(make_tar(regular(name)), "whiteout of an invalid name|escapes")


@needs_root
def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    data = make_tar(
        directory("d"),
        regular("d/sub/f", b"1"),
        regular("d", b"file now"),  # a file replaces a whole directory tree
        directory("f"),
        regular("f", b"file"),
        directory("f", mode=0o750),  # ... and a directory replaces a file
        regular("f/inside", b"i"),
        directory("m", mtime=5),
        regular("m/a", b"a"),
        directory("m", mode=0o711, mtime=7),  # directory over directory: metadata only
        symlink("s", "/etc/passwd"),
        regular("s", b"not through the link"),  # replaces the symlink, never writes through it
        regular("h1", b"shared"),
        hardlink("h2", "h1"),
        regular("h2", b"own"),  # unlinked first: h1 keeps its content
    )
    unpack(data, tmp_path)
    assert (tmp_path / "d").read_bytes() == b"file now"
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o750
    assert os.listdir(tmp_path / "f") == ["inside"]
    assert sorted(os.listdir(tmp_path / "m")) == ["a"]
    assert (stat.S_IMODE(os.stat(tmp_path / "m").st_mode), os.stat(tmp_path / "m").st_mtime) == (0o711, 7)
    assert not os.path.islink(tmp_path / "s") and (tmp_path / "s").read_bytes() == b"not through the link"
    assert (tmp_path / "h1").read_bytes() == b"shared" and (tmp_path / "h2").read_bytes() == b"own"


@needs_root
def test_replaced_directories_drop_cached_fds_and_times(tmp_path: Path) -> None:
    data = make_tar(
        directory("d", mtime=11),
        directory("d/e", mtime=12),
        regular("d/e/f", b"1"),
        regular("d", b"x"),
        directory("d", mtime=13),
        regular("d/e/g", b"2"),  # d/e is created again, implicitly: it has no recorded mtime any more
    )
    unpack(data, tmp_path)
    assert sorted(os.listdir(tmp_path / "d" / "e")) == ["g"]
    assert os.stat(tmp_path / "d").st_mtime == 13
    assert os.stat(tmp_path / "d" / "e").st_mtime != 12


@needs_root
def test_names_are_normalised(tmp_path: Path) -> None:
    data = make_tar(regular("/abs/file", b"a"), regular("./dot/./file", b"b"), regular("x/../y", b"c"))
    unpack(data, tmp_path)
    assert (tmp_path / "abs" / "file").read_bytes() == b"a"
    assert (tmp_path / "dot" / "file").read_bytes() == b"b"
    assert (tmp_path / "y").read_bytes() == b"c"
    assert not (tmp_path / "x").exists()


@needs_root
def test_root_entry_is_ignored_and_implicit_parents_are_root_0755(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o711)
    unpack(make_tar(directory(".", mode=0o700, uid=9), regular("a/b/c", b"c")), tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o711
    a = os.stat(tmp_path / "a")
    assert (stat.S_IMODE(a.st_mode), a.st_uid, a.st_gid) == (0o755, 0, 0)


@needs_root
def test_gnu_long_names_and_hardlinks(tmp_path: Path) -> None:
    long_dir = "d" * 120
    data = make_tar(
        regular(f"{long_dir}/{'f' * 150}", b"long"),
        hardlink("l" * 130, f"{long_dir}/{'f' * 150}"),
        symlink("s" * 110, "t" * 200),
        fmt=tarfile.GNU_FORMAT,
    )
    unpack(data, tmp_path)
    assert (tmp_path / ("l" * 130)).read_bytes() == b"long"
    assert os.stat(tmp_path / ("l" * 130)).st_nlink == 2
    assert os.readlink(tmp_path / ("s" * 110)) == "t" * 200


@needs_root
def test_many_and_deep_directories(tmp_path: Path) -> None:
    members = [directory(f"d{i:04}", mtime=1000 + i) for i in range(700)]
    members += [
        regular(f"d{i:04}/f", b"f") for i in range(0, 700, 3)
    ]  # revisit after the fd cache is trimmed
    deep = "/".join(["n"] * 255)  # the leaf below it is as deep as allowed
    members += [directory(deep, mtime=77), regular(deep + "/leaf", b"deep")]
    unpack(make_tar(*members), tmp_path)
    assert all(os.stat(tmp_path / f"d{i:04}").st_mtime == 1000 + i for i in range(700))
    assert (tmp_path / deep / "leaf").read_bytes() == b"deep"
    assert os.stat(tmp_path / deep).st_mtime == 77


# --------------------------------------------------------------------------- hostile archives


@needs_root
def test_dotdot_escape(box: Sandbox) -> None:
    box.rejects(make_tar(regular("../outside/sentinel", b"pwned")), "escapes the layer directory")
    box.rejects(make_tar(regular("a/../../outside/sentinel", b"pwned")), "escapes the layer directory")


@needs_root
def test_absolute_path_stays_inside(box: Sandbox) -> None:
    unpack(make_tar(regular(str(box.sentinel), b"pwned")), box.dest)
    box.assert_outside_untouched()
    assert (box.dest / str(box.sentinel).lstrip("/")).read_bytes() == b"pwned"


@needs_root
@pytest.mark.parametrize("target", ["ABS", "../outside", "..", "../.."])
def test_write_through_symlink(box: Sandbox, target: str) -> None:
    target = str(box.outside) if target == "ABS" else target
    inner = {"..": "outside/sentinel", "../..": f"{box.tmp.name}/outside/sentinel"}.get(target, "sentinel")
    box.rejects(
        make_tar(symlink("ln", target), regular(f"ln/{inner}", b"pwned")), "goes through the symlink 'ln'"
    )
    # a directory entry or a device through the link is refused the same way
    box.rejects(make_tar(symlink("ln", target), directory("ln/newdir")), "goes through the symlink")
    box.rejects(make_tar(symlink("ln", target), regular("ln/.wh.sentinel")), "goes through the symlink")
    box.rejects(make_tar(symlink("ln", target), symlink("ln/x", "y")), "goes through the symlink")
    assert not (box.outside / "newdir").exists() and not (box.outside / "x").exists()


@needs_root
def test_symlink_to_outside_may_exist(box: Sandbox) -> None:
    unpack(make_tar(symlink("ln", str(box.sentinel)), symlink("rel", "../outside/sentinel")), box.dest)
    box.assert_outside_untouched()
    assert os.readlink(box.dest / "ln") == str(box.sentinel)


@needs_root
@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("/etc/passwd", "not in the layer"),
        ("../outside/sentinel", "outside the layer"),
        ("ABS", "not in the layer"),
        ("ln/sentinel", "goes through the symlink 'ln'"),
        ("d", "Operation not permitted"),
    ],
)
def test_hardlink_escapes(box: Sandbox, target: str, match: str) -> None:
    target = str(box.sentinel) if target == "ABS" else target
    etc_passwd = os.stat("/etc/passwd")
    box.rejects(make_tar(symlink("ln", str(box.outside)), directory("d"), hardlink("h", target)), match)
    assert os.stat("/etc/passwd").st_nlink == etc_passwd.st_nlink
    assert os.stat(box.sentinel).st_nlink == 1


@needs_root
def test_hardlink_to_escaping_symlink_links_the_symlink_itself(box: Sandbox) -> None:
    unpack(make_tar(symlink("s", str(box.sentinel)), hardlink("h", "s"), regular("h2", b"x")), box.dest)
    box.assert_outside_untouched()
    assert os.path.islink(box.dest / "h") and os.readlink(box.dest / "h") == str(box.sentinel)
    assert os.stat(box.sentinel).st_nlink == 1


@needs_root
def test_symlink_loop(box: Sandbox) -> None:
    box.rejects(
        make_tar(symlink("a", "b"), symlink("b", "a"), regular("a/x", b"x")), "goes through the symlink 'a'"
    )
    box.rejects(make_tar(symlink("a", "a"), hardlink("h", "a/x")), "goes through the symlink 'a'")


@needs_root
def test_parent_that_is_a_file(box: Sandbox) -> None:
    box.rejects(
        make_tar(regular("f", b"f"), regular("f/x", b"x")), "goes through 'f', which is not a directory"
    )


@needs_root
def test_truncated_tar(box: Sandbox) -> None:
    data = make_tar(regular("big", os.urandom(100_000)))
    box.rejects(data[: 512 + 1000], "truncated layer")
    box.rejects(data[:300], "truncated layer")
    # a header that claims more than the stream has
    info, _ = regular("huge")
    info.size = 10**12
    box.rejects(info.tobuf(tarfile.PAX_FORMAT) + b"a" * 1000, "truncated layer")


@pytest.mark.parametrize(
    "blob",
    [b"", b"hello, world\n" * 100, os.urandom(10_000), b"\x1f\x8bnot gzip at all"],
    ids=["empty", "text", "random", "bad-gzip"],
)
def test_not_a_tar(tmp_path: Path, blob: bytes) -> None:
    with pytest.raises(LayerError, match="not a tar archive|corrupt gzip"):
        unpack(blob, tmp_path)
    assert os.listdir(tmp_path) == []


@needs_root
def test_corrupt_header_after_the_first(box: Sandbox) -> None:
    data = bytearray(make_tar(regular("a", b"a"), regular("b", b"b")))
    data[1024 + 10] ^= 0xFF  # inside the second header's name: the checksum no longer matches
    box.rejects(bytes(data), "corrupt tar header at offset 1024")


@needs_root
@pytest.mark.parametrize(
    ("member", "match"),
    [
        (entry("sp", tarfile.GNUTYPE_SPARSE, data=b""), "sparse"),
        (regular("p", b"", pax_headers={"GNU.sparse.major": "1"}), "sparse"),
        (entry("v", b"V", data=b""), "unsupported tar type"),
        (regular("bad\0name", b"x", pax_headers={"path": "bad\0name"}), "invalid"),
        (hardlink("self", "self"), "hardlink to 'self'"),
        (regular(".", b"x"), "would replace the layer root"),
    ],
    ids=["gnu-sparse", "pax-sparse", "volume", "nul", "self-link", "root"],
)
def test_rejected_entries(box: Sandbox, member: Member, match: str) -> None:
    box.rejects(make_tar(member), match)


@needs_root
def test_too_deep(box: Sandbox) -> None:
    box.rejects(make_tar(regular("/".join(["n"] * 257), b"x")), "nested more than 256 levels")


@needs_root
def test_oversized_pax_header(box: Sandbox) -> None:
    box.rejects(make_tar(regular("a", b"", pax_headers={"comment": "x" * (2 << 20)})), "larger than")
