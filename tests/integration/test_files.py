"""cp (both ways, docker's path rules, ownership, -L, tar streams, stopped and running containers,
symlinks that point out of the container), diff, commit and export."""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
import time
from pathlib import Path

import pytest

from conftest import Pallet, mounts_under, needs_root

pytestmark = [needs_root(), pytest.mark.integration]


def tar_of(*entries: tuple[str, str, bytes | str]) -> bytes:
    """A tar stream of (name, kind, data-or-linkname) with kind 'f', 'd' or 'l'."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tf.addfile(info)
            else:
                raw = data if isinstance(data, bytes) else data.encode()
                info.size, info.mode = len(raw), 0o644
                tf.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def members(p: Pallet, src: str, *flags: str) -> dict[str, tarfile.TarInfo]:
    data = p("cp", *flags, src, "-").stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


def read_out(p: Pallet, src: str) -> bytes:
    data = p("cp", src, "-").stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        member = tf.getmembers()[0]
        f = tf.extractfile(member)
        assert f is not None
        return f.read()


def container_mounts(p: Pallet) -> list[str]:
    return [m for m in mounts_under(p.root) if "/containers/" in m]


def test_cp_out_follows_dockers_rules(busybox: Pallet, tmp_path: Path) -> None:
    busybox("create", "--name", "c1", "busybox")  # never started: its rootfs is mounted for the copy
    busybox("cp", "c1:/etc/passwd", str(tmp_path / "pw"))
    assert (tmp_path / "pw").read_text().startswith("root:x:0:0:")
    busybox("cp", "c1:/etc", str(tmp_path / "new"))  # a missing destination takes the directory's place
    assert (tmp_path / "new/passwd").is_file()
    (tmp_path / "there").mkdir()
    busybox("cp", "c1:/etc", str(tmp_path / "there"))  # an existing directory receives it
    assert (tmp_path / "there/etc/passwd").is_file()
    (tmp_path / "merge").mkdir()
    busybox("cp", "c1:/etc/.", str(tmp_path / "merge"))  # `/.`: the contents only
    assert (tmp_path / "merge/passwd").is_file() and not (tmp_path / "merge/etc").exists()
    busybox("cp", "c1:/etc/passwd", str(tmp_path / "there"))
    assert (tmp_path / "there/passwd").is_file()
    for src, dest, message in [
        ("c1:/nope", "x", "Could not find the file /nope in container c1"),
        ("c1:/etc/passwd", str(tmp_path / "nodir") + "/", "no such directory"),
        ("c1:/etc/passwd/", str(tmp_path / "y"), "not a directory"),
        ("c1:/etc", str(tmp_path / "pw"), "cannot copy directory"),
        ("nosuch:/etc", str(tmp_path), "No such container: nosuch"),
    ]:
        p = busybox("cp", src, dest, check=False)
        assert p.returncode == 1 and message in p.stderr.decode(), (src, dest, p.stderr)
    p = busybox("cp", str(tmp_path / "pw"), str(tmp_path / "pw2"), check=False)
    assert p.returncode == 1 and b"must specify at least one container source" in p.stderr
    assert container_mounts(busybox) == []  # the stopped container's rootfs was unmounted after each copy


def test_cp_in_ownership_and_directories(busybox: Pallet, tmp_path: Path) -> None:
    busybox("create", "--name", "c1", "busybox")
    src = tmp_path / "owned"
    src.write_text("data\n")
    os.chown(src, 1234, 5678)
    os.chmod(src, 0o640)
    busybox("cp", str(src), "c1:/tmp/plain")
    busybox("cp", "-a", str(src), "c1:/tmp/kept")
    got = members(busybox, "c1:/tmp")
    assert (got["tmp/plain"].uid, got["tmp/plain"].gid) == (0, 0)  # docker cp: root:root without -a
    assert (got["tmp/kept"].uid, got["tmp/kept"].gid) == (1234, 5678)
    assert got["tmp/plain"].mode == 0o640 and got["tmp"].mode == 0o1777  # /tmp keeps its own mode
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub/f").write_text("f\n")
    busybox("cp", str(tree), "c1:/tmp")  # into the existing directory
    busybox("cp", str(tree) + "/.", "c1:/srv")  # `/.` to a missing path: created with the contents
    busybox("cp", str(tree), "c1:/root/renamed")  # a missing destination takes the directory's name
    assert read_out(busybox, "c1:/tmp/tree/sub/f") == b"f\n"
    assert read_out(busybox, "c1:/srv/sub/f") == b"f\n"
    assert read_out(busybox, "c1:/root/renamed/sub/f") == b"f\n"
    for src_path, dest, message in [
        (str(src), "c1:/nodir/", "no such directory"),
        (str(src), "c1:/etc/passwd/", "no such directory"),
        (str(src), "c1:/nodir/sub/x", "Could not find the file /nodir/sub in container c1"),
        (str(tree), "c1:/etc/passwd", "cannot copy directory"),
        (str(tmp_path / "nope"), "c1:/tmp", "no such file or directory"),
    ]:
        p = busybox("cp", src_path, dest, check=False)
        assert p.returncode == 1 and message in p.stderr.decode(), (src_path, dest, p.stderr)
    assert container_mounts(busybox) == []


def test_cp_follow_link(busybox: Pallet, tmp_path: Path) -> None:
    busybox("create", "--name", "c1", "busybox")
    got = members(busybox, "c1:/bin/sh")
    assert got["sh"].issym()
    got = members(busybox, "c1:/bin/sh", "-L")
    assert got["sh"].isfile() and got["sh"].size > 100_000  # the busybox binary, named after the link
    (tmp_path / "target").write_text("t\n")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    busybox("cp", str(tmp_path / "link"), "c1:/tmp/as-link")
    busybox("cp", "-L", str(tmp_path / "link"), "c1:/tmp/as-file")
    got = members(busybox, "c1:/tmp")
    assert got["tmp/as-link"].issym() and got["tmp/as-file"].isfile()
    assert read_out(busybox, "c1:/tmp/as-file") == b"t\n"


def test_cp_tar_streams(busybox: Pallet) -> None:
    busybox("create", "--name", "c1", "busybox")
    stream = tar_of(("d", "d", b""), ("d/a", "f", "alpha\n"), ("top", "f", "top\n"), ("d/l", "l", "a"))
    busybox("cp", "-", "c1:/tmp", input=stream)
    got = members(busybox, "c1:/tmp/.")
    assert {"./d/a", "./top", "./d/l"} <= set(got) and got["./d/l"].linkname == "a"
    assert read_out(busybox, "c1:/tmp/d/a") == b"alpha\n"
    p = busybox("cp", "-", "c1:/etc/passwd", input=stream, check=False)
    assert p.returncode == 1 and b'destination "c1:/etc/passwd" must be a directory' in p.stderr
    p = busybox("cp", "-", "c1:/tmp", input=b"not a tar at all" * 64, check=False)
    assert p.returncode == 1 and b"Error" in p.stderr


def test_cp_never_reaches_the_hosts_files(busybox: Pallet, tmp_path: Path) -> None:
    """Symlinks inside the container resolve inside it, whichever way the copy goes."""
    hostile = tar_of(
        ("etc", "d", b""),
        ("etc/passwd", "f", "root:x:0:0:in the container:/root:/bin/sh\n"),
        ("tmp", "d", b""),
        ("evil", "l", "/etc"),
        ("up", "l", "../../../../../../../etc"),
    )
    (tmp_path / "hostile.tar").write_bytes(hostile)
    busybox("import", str(tmp_path / "hostile.tar"), "hostile:1")
    busybox("create", "--name", "c1", "hostile:1", "true")
    container_passwd = read_out(busybox, "c1:/etc/passwd")
    host_passwd = Path("/etc/passwd").read_bytes()
    assert container_passwd != host_passwd
    assert read_out(busybox, "c1:/evil/passwd") == container_passwd
    assert read_out(busybox, "c1:/up/passwd") == container_passwd
    marker = f"pallet-cp-test-{secrets.token_hex(4)}"
    (tmp_path / marker).write_text("m\n")
    try:
        busybox("cp", str(tmp_path / marker), "c1:/evil/")
        busybox("cp", str(tmp_path / marker), f"c1:/up/{marker}-2")
        busybox("cp", "-", "c1:/evil", input=tar_of((f"{marker}-3", "f", "x")))
        busybox("cp", "-", "c1:/tmp", input=tar_of(("esc", "l", "/"), (f"esc/etc/{marker}-4", "f", "x")))
        p = busybox("cp", "-", "c1:/tmp", input=tar_of((f"../../etc/{marker}-5", "f", "x")), check=False)
        assert p.returncode == 1 and b"outside of" in p.stderr
        for suffix in ("", "-2", "-3", "-4", "-5"):
            assert not Path(f"/etc/{marker}{suffix}").exists(), suffix
        got = members(busybox, "c1:/etc")
        assert {f"etc/{marker}", f"etc/{marker}-2", f"etc/{marker}-3", f"etc/{marker}-4"} <= set(got)
        # copying the escaping link itself out: docker refuses to create it
        p = busybox("cp", "c1:/up", str(tmp_path / "up"), check=False)
        assert p.returncode == 1 and b"invalid symlink" in p.stderr and not (tmp_path / "up").is_symlink()
    finally:
        for suffix in ("", "-2", "-3", "-4", "-5"):
            Path(f"/etc/{marker}{suffix}").unlink(missing_ok=True)


def test_cp_running_container(busybox: Pallet, tmp_path: Path) -> None:
    busybox("run", "-d", "--name", "r1", "busybox", "sleep", "600")
    (tmp_path / "in").write_text("into a running container\n")
    busybox("cp", str(tmp_path / "in"), "r1:/tmp/in")
    assert busybox.out("exec", "r1", "cat", "/tmp/in") == "into a running container\n"
    busybox("exec", "r1", "sh", "-c", "echo made inside > /tmp/out")
    busybox("cp", "r1:/tmp/out", str(tmp_path / "out"))
    assert (tmp_path / "out").read_text() == "made inside\n"
    busybox("rm", "-f", "r1")
    assert container_mounts(busybox) == []


def wait_exited(p: Pallet, name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if p.out("inspect", "-f", "{{.State.Status}}", name).strip() == "exited":
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not exit")


def test_diff(busybox: Pallet) -> None:
    busybox("create", "--name", "fresh", "busybox")
    assert busybox.out("diff", "fresh") == ""
    script = "echo new > /tmp/x; rm /bin/ls; mkdir -p /a/b; echo y >> /etc/passwd"
    busybox("run", "--name", "d1", "busybox", "sh", "-c", script)
    wait_exited(busybox, "d1")
    expected = ["A /a", "A /a/b", "C /bin", "D /bin/ls", "C /etc", "C /etc/passwd", "C /tmp", "A /tmp/x"]
    assert busybox.out("diff", "d1").splitlines() == expected  # the runtime's mount points are no changes
    p = busybox("diff", "nosuch", check=False)
    assert p.returncode == 1 and b"No such container: nosuch" in p.stderr


def test_commit_then_run(busybox: Pallet) -> None:
    busybox(
        "run",
        "--name",
        "src",
        "-e",
        "FOO=bar",
        "-w",
        "/work",
        "busybox",
        "sh",
        "-c",
        "echo committed > /work/file; rm /bin/ls",
    )
    wait_exited(busybox, "src")
    image_id = busybox.out(
        "commit",
        "-c",
        'CMD ["sh", "-c", "cat file; echo $FOO; ls /bin/ls || true"]',
        "-m",
        "a message",
        "-a",
        "me <me@example.com>",
        "src",
        "mine:1",
    ).strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    run = busybox("run", "--rm", "mine:1", check=False)
    assert run.stdout.decode().split("\n")[:2] == ["committed", "bar"] and b"No such file" in run.stderr
    [img] = json.loads(busybox.out("image", "inspect", "mine:1"))
    base = json.loads(busybox.out("image", "inspect", "busybox"))[0]
    assert img["Id"] == image_id and img["Parent"] == base["Id"]
    assert img["Author"] == "me <me@example.com>" and img["Comment"] == "a message"
    assert img["Config"]["WorkingDir"] == "/work" and "FOO=bar" in img["Config"]["Env"]
    assert img["Config"]["Cmd"] == ["sh", "-c", "cat file; echo $FOO; ls /bin/ls || true"]
    assert img["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"] and len(img["RootFS"]["Layers"]) == 2
    history = json.loads(
        busybox.out("history", "--no-trunc", "--format", "{{json .}}", "mine:1").splitlines()[0]
    )
    assert "echo committed > /work/file" in history["CreatedBy"] and history["Comment"] == "a message"
    # nothing changed: an empty layer, docker's way (no new diff, history marks it)
    busybox("create", "--name", "same", "busybox")
    [same] = json.loads(busybox.out("image", "inspect", busybox.out("commit", "same").strip()))
    assert same["RootFS"]["Layers"] == base["RootFS"]["Layers"] and same["RepoTags"] == []
    for args, message in [
        (["nosuch"], "No such container"),
        (["src", "UPPER"], "must be lowercase"),
        (["-c", "BOGUS x", "src"], "unknown instruction"),
    ]:
        p = busybox("commit", *args, check=False)
        assert p.returncode != 0 and message.encode() in p.stderr, (args, p.stderr)


def test_export(busybox: Pallet, tmp_path: Path) -> None:
    busybox("create", "--name", "c1", "busybox")
    busybox("cp", "-", "c1:/tmp", input=tar_of(("hello", "f", "exported\n")))
    busybox("export", "-o", str(tmp_path / "fs.tar"), "c1")
    with tarfile.open(tmp_path / "fs.tar") as tf:
        names = set(tf.getnames())
        f = tf.extractfile("tmp/hello")
        assert f is not None and f.read() == b"exported\n"
    assert {"bin/busybox", "etc/passwd", "tmp/hello"} <= names
    assert not any(n.startswith(("/", "./")) for n in names)
    streamed = busybox("export", "c1").stdout
    with tarfile.open(fileobj=io.BytesIO(streamed)) as tf:
        assert set(tf.getnames()) == names
    p = busybox("export", "-o", str(tmp_path / "no/such/dir.tar"), "c1", check=False)
    assert p.returncode == 1 and b"does not exist" in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["fs.tar"]  # nothing half-written left
    assert container_mounts(busybox) == []


def test_commit_running_container(busybox: Pallet) -> None:
    busybox("run", "-d", "--name", "live", "busybox", "sh", "-c", "echo live > /state; sleep 600")
    deadline = time.monotonic() + 30
    while busybox("exec", "live", "cat", "/state", check=False).stdout != b"live\n":
        assert time.monotonic() < deadline, "the container did not write /state"
        time.sleep(0.05)
    busybox("commit", "live", "snap:1")  # paused while its changes are read, then resumed
    assert busybox.out("inspect", "-f", "{{.State.Running}} {{.State.Paused}}", "live") == "true false\n"
    busybox("commit", "--pause=false", "live", "snap:2")
    for tag in ("snap:1", "snap:2"):
        assert busybox.out("run", "--rm", "--entrypoint", "cat", tag, "/state") == "live\n"
