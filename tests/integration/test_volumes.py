"""Volume commands and the local driver (tmpfs and bind options mount for real)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Pallet, mounts_under, needs_root

pytestmark = [needs_root(), pytest.mark.integration]


def test_create_ls_inspect_rm(pallet: Pallet) -> None:
    assert pallet.out("volume", "create", "--label", "team=a", "data1") == "data1\n"
    assert pallet.out("volume", "create", "data1") == "data1\n"  # idempotent, as docker
    anon = pallet.out("volume", "create").strip()
    assert len(anon) == 64
    info = json.loads(pallet.out("volume", "inspect", "data1"))[0]
    assert info["Name"] == "data1" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"team": "a"}
    assert Path(info["Mountpoint"]).is_dir() and info["Mountpoint"].endswith("/volumes/data1/_data")
    lines = pallet.out("volume", "ls").splitlines()
    assert lines[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert sorted(pallet.out("volume", "ls", "-q").split()) == sorted(["data1", anon])
    assert pallet.out("volume", "ls", "-q", "--filter", "label=team=a") == "data1\n"
    assert pallet.out("volume", "ls", "-q", "--filter", "name=dat") == "data1\n"
    assert (
        pallet.out("volume", "ls", "--format", "{{.Name}} {{.Driver}}", "-f", "dangling=true").count("local")
        == 2
    )
    assert pallet.out("volume", "rm", "data1") == "data1\n"
    assert not Path(info["Mountpoint"]).exists()
    p = pallet("volume", "inspect", "data1", check=False)
    assert p.returncode == 1 and b"no such volume" in p.stderr


def test_prune_removes_anonymous_only_unless_all(pallet: Pallet) -> None:
    pallet("volume", "create", "named")
    anon = pallet.out("volume", "create").strip()
    out = pallet.out("volume", "prune", "-f")
    assert anon in out and "named" not in out and "Total reclaimed space" in out
    assert pallet.out("volume", "ls", "-q") == "named\n"
    pallet("volume", "prune", "-a", "-f")
    assert pallet.out("volume", "ls", "-q") == ""


def test_tmpfs_and_bind_options_mount_for_real(pallet: Pallet, tmp_path: Path) -> None:
    from pallet.engine.core import Engine
    from pallet.state.paths import StatePaths
    from pallet.volumes import local
    from pallet.volumes import store as volumes

    pallet("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", "scratch")
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    (host_dir / "hello").write_text("from host")
    pallet("volume", "create", "-o", "type=none", "-o", f"device={host_dir}", "-o", "o=bind", "hb")
    engine = Engine(StatePaths.resolve(str(pallet.root)))
    try:
        for name in ("scratch", "hb"):
            rec = volumes.get(engine.conn, name)
            local.mount(engine.paths.volumes, rec)
        assert (engine.paths.volumes / "hb/_data/hello").read_text() == "from host"
        assert len([m for m in mounts_under(pallet.root) if "/volumes/" in m]) == 2
    finally:
        engine.close()
    pallet("volume", "rm", "scratch", "hb")
    assert [m for m in mounts_under(pallet.root) if "/volumes/" in m] == []
    assert (host_dir / "hello").read_text() == "from host"  # removing the volume never touches its source


def test_bad_input(pallet: Pallet) -> None:
    p = pallet("volume", "create", "bad/name", check=False)
    assert p.returncode != 0 and b"includes invalid characters" in p.stderr
    p = pallet("volume", "create", "-o", "bogus=1", "vv", check=False)
    assert p.returncode != 0 and b'invalid option key: "bogus"' in p.stderr
    p = pallet("volume", "create", "-d", "nfsplugin", "vv", check=False)
    assert p.returncode != 0 and b"not found" in p.stderr
    assert pallet.out("volume", "ls", "-q") == ""
    p = pallet("volume", "rm", "nosuch", check=False)
    assert p.returncode == 1
    assert pallet("volume", "rm", "-f", "nosuch").returncode == 0
