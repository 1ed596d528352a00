"""Volumes, binds and tmpfs in containers, end to end through the CLI: data outlives its container,
`volume rm` refuses a volume in use, anonymous volumes (image VOLUME, -v /path) go with `rm -v` and
--rm, copy-up from the image (and volume-nocopy), binds (made for -v, required for --mount), tmpfs,
--volumes-from, bad input that creates nothing."""

from __future__ import annotations

import re
from pathlib import Path

import net_helpers
from net_helpers import inspect

from conftest import Pallet, mounts_under

pytestmark = net_helpers.pytestmark
net = net_helpers.net  # fixture

ANON = re.compile(r"^[0-9a-f]{64}$")


def volumes(p: Pallet) -> list[str]:
    return sorted(p.out("volume", "ls", "-q").split())


def test_named_volume_outlives_its_container(net: Pallet) -> None:
    p = net
    p("run", "--name", "writer", "-v", "data:/data", "busybox", "sh", "-c", "echo persisted > /data/f")
    [info] = inspect(p, "writer")
    cid = info["Id"]
    [mount] = info["Mounts"]
    assert mount == {
        "Type": "volume",
        "Name": "data",
        "Source": str(p.root / "volumes/data/_data"),
        "Destination": "/data",
        "Driver": "local",
        "Mode": "z",
        "RW": True,
        "Propagation": "",
    }
    proc = p("volume", "rm", "data", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == f"Error: remove data: volume is in use - [{cid}]\n"
    p("rm", "writer")
    assert p.out("run", "--rm", "-v", "data:/data:ro", "busybox", "cat", "/data/f") == "persisted\n"
    proc = p("run", "--rm", "-v", "data:/data:ro", "busybox", "touch", "/data/g", check=False)
    assert proc.returncode != 0 and b"Read-only file system" in proc.stderr
    p("volume", "rm", "data")
    assert volumes(p) == []


def test_anonymous_volumes_go_with_rm_v_and_rm(net: Pallet, tmp_path: Path) -> None:
    p = net
    p("create", "--name", "base", "busybox", "true")
    rootfs = tmp_path / "rootfs.tar"
    with open(rootfs, "wb") as f:
        f.write(p("export", "base").stdout)
    p("import", "--change", 'VOLUME ["/vol"]', "--change", 'CMD ["sh"]', str(rootfs), "withvol:latest")
    p("run", "--name", "ca", "-v", "keep:/keep", "-v", "/scratch", "withvol", "sh", "-c", "echo x > /vol/y")
    anon = [v for v in volumes(p) if ANON.match(v)]
    assert len(anon) == 2 and "keep" in volumes(p)
    mounts = {m["Destination"]: m for m in inspect(p, "ca")[0]["Mounts"]}
    assert set(mounts) == {"/keep", "/scratch", "/vol"} and mounts["/vol"]["Name"] in anon
    assert inspect(p, "ca")[0]["Config"]["Volumes"] == {"/vol": {}, "/scratch": {}}
    p("rm", "-v", "ca")
    assert volumes(p) == ["keep"]  # named volumes stay
    p("run", "--rm", "-v", "/tmpdata", "busybox", "true")
    assert volumes(p) == ["keep"]  # --rm takes its anonymous volumes along, as docker
    p("run", "--name", "cb", "-v", "/other", "busybox", "true")
    p("rm", "cb")
    assert len(volumes(p)) == 2  # without -v the anonymous volume stays (dangling)
    assert p.out("volume", "ls", "-q", "-f", "dangling=true").strip() != "keep"


def test_copy_up_and_nocopy(net: Pallet) -> None:
    p = net
    out = p.out("run", "--rm", "-v", "bins:/usr/bin", "busybox", "sh", "-c", "ls /usr/bin | wc -l")
    assert int(out) > 10  # filled from the image on first use
    assert len(list((p.root / "volumes/bins/_data").iterdir())) == int(out)
    out = p.out(
        "run",
        "--rm",
        "--mount",
        "type=volume,source=empty,target=/usr/bin,volume-nocopy",
        "busybox",
        "sh",
        "-c",
        "ls /usr/bin | wc -l",
    )
    assert int(out) == 0
    # an existing volume is never filled again
    p("run", "--rm", "-v", "bins:/usr/bin", "busybox", "sh", "-c", "rm /usr/bin/wc")
    assert not (p.root / "volumes/bins/_data/wc").exists()


def test_binds_and_tmpfs(net: Pallet, tmp_path: Path) -> None:
    p = net
    made = tmp_path / "made" / "by" / "run"
    p("run", "--rm", "-v", f"{made}:/h", "busybox", "sh", "-c", "echo from-container > /h/x")
    assert (made / "x").read_text() == "from-container\n"  # docker makes a missing -v source
    proc = p("run", "--rm", "-v", f"{made}:/h:ro", "busybox", "touch", "/h/y", check=False)
    assert proc.returncode != 0 and not (made / "y").exists()
    out = p.out(
        "run", "--rm", "--mount", f"type=bind,source={made},target=/m,readonly", "busybox", "cat", "/m/x"
    )
    assert out == "from-container\n"
    out = p.out(
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770",
        "busybox",
        "sh",
        "-c",
        "grep ' /t ' /proc/mounts; stat -c %a /t",
    )
    assert "tmpfs /t tmpfs rw,nosuid,nodev,noexec" in out and "size=1024k" in out and out.endswith("1770\n")


def test_volumes_from(net: Pallet) -> None:
    p = net
    p("run", "--name", "src", "-v", "shared:/s", "busybox", "sh", "-c", "echo shared > /s/f")
    assert p.out("run", "--rm", "--volumes-from", "src", "busybox", "cat", "/s/f") == "shared\n"
    proc = p("run", "--rm", "--volumes-from", "src:ro", "busybox", "touch", "/s/g", check=False)
    assert proc.returncode != 0 and b"Read-only file system" in proc.stderr
    proc = p("run", "--rm", "--volumes-from", "nosuch", "busybox", "true", check=False)
    assert proc.returncode == 125 and b"No such container: nosuch" in proc.stderr


def test_volume_with_its_own_filesystem_is_unmounted_after_exit(net: Pallet) -> None:
    p = net
    p("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", "scratch")
    p("run", "-d", "--name", "holder", "-v", "scratch:/s", "busybox", "sleep", "60")
    assert any(m.endswith("/volumes/scratch/_data") for m in mounts_under(p.root))
    assert p.out("run", "--rm", "-v", "scratch:/s", "busybox", "sh", "-c", "echo a > /s/a; cat /s/a") == "a\n"
    assert any(m.endswith("/volumes/scratch/_data") for m in mounts_under(p.root))  # holder still uses it
    p("stop", "-t", "0", "holder")
    assert not any("/volumes/" in m for m in mounts_under(p.root))


def test_bad_input_creates_nothing(net: Pallet) -> None:
    p = net
    cases = [
        (["-v", "bad@name:/x"], b'"bad@name" includes invalid characters for a local volume name'),
        (
            ["-v", "ok:/x", "--mount", "type=bind,source=/nonexistent-pallet,target=/y"],
            b'invalid mount config for type "bind": bind source path does not exist: /nonexistent-pallet',
        ),
        (["-v", "ok:relative"], b"mount path must be absolute"),
        (["-v", "ok:/x", "-v", "other:/x"], b"Duplicate mount point: /x"),
        (["--mount", "type=tmpfs,source=x,target=/t"], b"field Source must be empty"),
        (["--mount", "type=volume"], b"target is required"),
    ]
    for args, message in cases:
        proc = p("run", "--rm", *args, "busybox", "true", check=False)
        assert proc.returncode == 125, args
        assert message in proc.stderr, (args, proc.stderr)
    assert p.out("ps", "-aq") == ""
    assert volumes(p) == []


def test_volume_rm_force(net: Pallet) -> None:
    p = net
    p("run", "-d", "--name", "live", "-v", "busy:/b", "busybox", "sleep", "60")
    proc = p("volume", "rm", "-f", "busy", check=False)
    assert proc.returncode == 1 and b"in use by a running container" in proc.stderr
    p("stop", "-t", "0", "live")
    assert p("volume", "rm", "busy", check=False).returncode == 1  # a stopped user still counts
    p("volume", "rm", "-f", "busy")  # ... unless forced
    assert volumes(p) == []
    p("start", "live")  # its volume is made again, empty
    assert volumes(p) == ["busy"]
