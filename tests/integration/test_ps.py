"""`ps`: every filter, docker's columns and texts, `--format` tables and JSON, -n/-l/-q and -s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Pallet, needs_root

pytestmark = [needs_root(), pytest.mark.integration]


def names(p: Pallet, *args: str) -> list[str]:
    return p.out("ps", "--format", "{{.Names}}", *args).split()


@pytest.fixture
def four(busybox: Pallet) -> Pallet:
    """made (created, label tier=web), three (exited 3), zero (exited 0, tier=db), up (running)."""
    busybox("create", "--name", "made", "-l", "tier=web", "busybox", "true")
    assert busybox("run", "--name", "three", "busybox", "sh", "-c", "exit 3", check=False).returncode == 3
    busybox("run", "--name", "zero", "-l", "tier=db", "busybox", "true")
    busybox("run", "-d", "--name", "up", "busybox", "sleep", "600")
    return busybox


def test_filters(four: Pallet) -> None:
    p = four
    assert names(p) == ["up"]
    assert names(p, "-a") == ["up", "zero", "three", "made"]  # newest first
    assert names(p, "-f", "status=created") == ["made"]  # a status filter lists stopped ones too
    assert names(p, "-f", "status=running") == ["up"]
    assert names(p, "-f", "status=exited") == ["zero", "three"]
    assert names(p, "-f", "status=created", "-f", "status=running") == ["up", "made"]
    assert names(p, "-a", "-f", "name=^ze") == ["zero"]  # regular expressions, as docker
    assert names(p, "-a", "-f", "name=e") == ["zero", "three", "made"]
    assert names(p, "-a", "-f", "name=/made") == ["made"]
    assert names(p, "-a", "-f", "label=tier") == ["zero", "made"]
    assert names(p, "-a", "-f", "label=tier=db") == ["zero"]
    assert names(p, "-a", "-f", "label=tier", "-f", "label=tier=web") == ["made"]  # every label must match
    assert names(p, "-a", "-f", "exited=3") == ["three"]
    assert names(p, "-a", "-f", "exited=0") == ["zero"]  # never started is not "exited 0"
    assert names(p, "-f", "exited=0") == []  # stopped containers need -a
    up_id = p.out("inspect", "-f", "{{.Id}}", "up").strip()
    assert names(p, "-a", "-f", f"id={up_id[:8]}") == ["up"]
    assert names(p, "-a", "-f", "health=none") == ["up", "zero", "three", "made"]
    assert names(p, "-a", "-f", "network=bridge") == ["up", "zero", "three", "made"]  # docker's default
    assert names(p, "-a", "-f", "network=none") == []
    assert names(p, "-a", "-f", "network=host") == []
    assert names(p, "-a", "-f", "volume=/data") == []
    assert names(p, "-a", "-f", "before=three") == ["made"]
    assert names(p, "-a", "-f", "since=three") == ["up", "zero"]
    assert names(p, "-f", "since=three") == ["up"]


def test_ancestor_filter(four: Pallet) -> None:
    p = four
    everyone = ["up", "zero", "three", "made"]
    image_id = p.out("image", "inspect", "-f", "{{.Id}}", "busybox").strip()
    assert names(p, "-a", "-f", "ancestor=busybox") == everyone
    assert names(p, "-a", "-f", "ancestor=busybox:latest") == everyone
    assert names(p, "-a", "-f", f"ancestor={image_id[7:19]}") == everyone
    assert names(p, "-a", "-f", "ancestor=nosuch") == []  # an unknown image matches nothing, no error
    p("commit", "zero", "child:1")
    p("create", "--name", "kid", "child:1")
    assert names(p, "-a", "-f", "ancestor=busybox") == ["kid", *everyone]  # descendants count
    assert names(p, "-a", "-f", "ancestor=child:1") == ["kid"]


def test_bad_filters(four: Pallet) -> None:
    for flt, message in [
        ("status=bogus", "invalid filter 'status=bogus'"),
        ("bogus=1", "invalid filter 'bogus'"),
        ("exited=x", 'strconv.Atoi: parsing "x": invalid syntax'),
        ("health=x", "Unrecognised filter value for health: x"),
        ("before=nosuch", "No such container: nosuch"),
    ]:
        proc = four("ps", "-a", "-f", flt, check=False)
        assert proc.returncode == 1 and message in proc.stderr.decode(), (flt, proc.stderr)
    proc = four("ps", "-f", "novalue", check=False)
    assert proc.returncode == 125 and b"bad format of filter" in proc.stderr


def test_columns_formats_and_limits(four: Pallet) -> None:
    p = four
    lines = p.out("ps", "-a").splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    rows = {line.split()[-1]: line for line in lines[1:]}
    assert "\"sh -c 'exit 3'\"" in rows["three"] and "Exited (3) " in rows["three"]
    assert "Created" in rows["made"] and " Up " in rows["up"] and rows["up"].split()[1] == "busybox"
    table = p.out("ps", "-a", "--format", 'table {{.ID}}\t{{.Names}}\t{{.Label "tier"}}').splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "NAMES", "LABEL"]
    assert table[-1].split()[1:] == ["made", "web"]
    objects = [json.loads(line) for line in p.out("ps", "-a", "--format", "json").splitlines()]
    assert list(objects[0]) == [
        "Command",
        "CreatedAt",
        "ID",
        "Image",
        "Labels",
        "LocalVolumes",
        "Mounts",
        "Names",
        "Networks",
        "Ports",
        "RunningFor",
        "Size",
        "State",
        "Status",
    ]
    assert [o["State"] for o in objects] == ["running", "exited", "exited", "created"]
    assert objects[1]["Labels"] == "tier=db" and objects[1]["Networks"] == "bridge"
    assert [json.loads(x)["Names"] for x in p.out("ps", "-a", "--format", "{{json .}}").splitlines()] == [
        "up", "zero", "three", "made"]  # fmt: skip
    assert names(p, "-n", "2") == ["up", "zero"]  # -n and -l include stopped containers
    assert names(p, "-l") == ["up"]
    assert names(p, "-n", "1", "-f", "name=a") == ["made"]  # filters first, then the limit
    ids = p.out("ps", "-aq").split()
    assert len(ids) == 4 and all(len(i) == 12 for i in ids)
    assert all(len(i) == 64 for i in p.out("ps", "-aq", "--no-trunc").split())
    long_cmd = p.out("ps", "-a", "--no-trunc", "--format", "{{.Command}}", "-f", "name=three")
    assert long_cmd == "\"sh -c 'exit 3'\"\n"


def test_size(busybox: Pallet, tmp_path: Path) -> None:
    busybox("create", "--name", "c1", "busybox")
    (tmp_path / "blob").write_bytes(b"x" * 1000)
    busybox("cp", str(tmp_path / "blob"), "c1:/blob")
    image_size = int(busybox.out("image", "inspect", "-f", "{{.Size}}", "busybox"))
    from pallet.cli.units import human_size

    expected = f"1kB (virtual {human_size(1000 + image_size)})"
    lines = busybox.out("ps", "-a", "-s").splitlines()
    assert lines[0].split()[-1] == "SIZE" and lines[1].endswith(expected)
    assert busybox.out("ps", "-a", "--format", "{{.Size}}") == expected + "\n"  # .Size turns sizes on
    assert json.loads(busybox.out("ps", "-a", "--format", "json"))["Size"] == "0B"
