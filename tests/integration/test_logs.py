"""The json-file log: the writer (entries, partial lines, rotation, compression, options) and
`logs` (streams, --tail, --since/--until, -t, --details, -f through rotations)."""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from pathlib import Path

import pytest
from monitor_helpers import cid_of, state, wait_for

from conftest import PALLET, Pallet, needs_root
from pallet.runtime import jsonlog

# ---- the writer (no containers) -------------------------------------------------------------------


def _entries(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_writer_entries_and_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    w = jsonlog.JsonLogWriter(str(log), jsonlog.LogOptions(-1, 1, False, {}))
    w.write("stdout", b"hel")
    w.write("stdout", b"lo\nwor")
    w.write("stderr", b"oops\n")
    w.write("stdout", b"x" * (jsonlog.PARTIAL_LINE_MAX + 10))
    w.close()
    got = _entries(log)
    assert [(e["stream"], e["log"]) for e in got] == [
        ("stdout", "hello\n"),
        ("stderr", "oops\n"),
        ("stdout", "wor" + "x" * (jsonlog.PARTIAL_LINE_MAX - 3)),  # cut at 16K, no newline
        ("stdout", "x" * 13),  # the rest, flushed at close
    ]
    assert all(e["time"].endswith("Z") and e["time"][10] == "T" for e in got)
    assert list(json.loads(log.read_text().splitlines()[0])) == ["log", "stream", "time"]  # docker's order


def test_writer_rotation_keeps_max_file_files(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    w = jsonlog.JsonLogWriter(str(log), jsonlog.LogOptions(1000, 3, False, {}))
    for i in range(300):
        w.write("stdout", f"line {i}\n".encode())
    w.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    for name in names[1:]:
        size = (tmp_path / name).stat().st_size
        assert 1000 <= size < 1100  # rotated once past max-size, by at most one entry
    lines = [e["log"] for n in ("c-json.log.2", "c-json.log.1", "c-json.log") for e in _entries(tmp_path / n)]
    assert lines == [f"line {i}\n" for i in range(300 - len(lines), 300)]  # in order, the newest kept


def test_writer_single_file_and_compression(tmp_path: Path) -> None:
    one = tmp_path / "one" / "c-json.log"
    one.parent.mkdir()
    w = jsonlog.JsonLogWriter(str(one), jsonlog.LogOptions(500, 1, False, {}))
    for i in range(100):
        w.write("stdout", f"{i}\n".encode())
    w.close()
    assert [p.name for p in one.parent.iterdir()] == ["c-json.log"] and one.stat().st_size < 600
    gz = tmp_path / "gz" / "c-json.log"
    gz.parent.mkdir()
    w = jsonlog.JsonLogWriter(str(gz), jsonlog.LogOptions(500, 3, True, {"tag": "t"}))
    for i in range(100):
        w.write("stdout", f"{i}\n".encode())
    w.close()
    assert sorted(p.name for p in gz.parent.iterdir()) == ["c-json.log", "c-json.log.1.gz", "c-json.log.2.gz"]
    first = json.loads(gzip.decompress((gz.parent / "c-json.log.1.gz").read_bytes()).splitlines()[0])
    assert first["attrs"] == {"tag": "t"} and list(first) == ["log", "stream", "attrs", "time"]


def test_reader_tail_across_rotated_and_gzipped_files(tmp_path: Path) -> None:
    from pallet.engine import logs as reader

    log = tmp_path / "c-json.log"
    w = jsonlog.JsonLogWriter(str(log), jsonlog.LogOptions(300, 4, True, {}))
    for i in range(40):
        w.write("stdout", f"n{i}\n".encode())
    w.close()
    with open(log, "ab") as f:
        f.write(b'{"log":"torn')  # an entry still being written is not a line yet
    files = reader._snapshot(str(log))
    assert len(files) == 4 and not files[0].seekable  # .3.gz, .2.gz, .1.gz, current
    every = [reader.parse_line(line) for f in files for line in f.read_lines()]
    texts = [e.data.decode() for e in every if e is not None]
    assert texts == [f"n{i}\n" for i in range(40 - len(texts), 40)]
    for n in (0, 1, 3, len(texts), 100):
        files = reader._snapshot(str(log))
        got = [reader.parse_line(line) for line in reader._last_lines(files, n)]
        assert [e.data.decode() for e in got if e] == (texts[-n:] if n else [])
        assert files[-1].partial == b'{"log":"torn'


def test_log_options() -> None:
    opts = jsonlog.options({"Type": "json-file", "Config": {}})
    assert opts is not None and (opts.max_size, opts.max_file) == (20_000_000, 5)  # pallet's default bound
    opts = jsonlog.options({"Type": "json-file", "Config": {"max-size": "10k"}})
    assert opts is not None and (opts.max_size, opts.max_file) == (10_000, 1)  # docker's meaning
    opts = jsonlog.options({"Type": "", "Config": {"max-size": "1.5m", "max-file": "3", "compress": "true"}})
    assert opts is not None and (opts.max_size, opts.max_file, opts.compress) == (1_500_000, 3, True)
    assert jsonlog.options({"Type": "none"}) is None
    info = {"ID": "ab" * 32, "Name": "/web", "Labels": {"app": "x", "tier": "db"}, "Env": ["A=1", "B=2"]}
    opts = jsonlog.options({"Config": {"labels": "app", "env": "B", "tag": "{{.Name}}/{{.ID}}"}}, info=info)
    assert opts is not None and opts.attrs == {"app": "x", "B": "2", "tag": "web/" + "ab" * 6}
    for bad, msg in [
        ({"Type": "syslog"}, "logger: no log driver named 'syslog' is registered"),
        ({"Config": {"max-sise": "1m"}}, "unknown log opt 'max-sise' for json-file log driver"),
        ({"Config": {"max-file": "0"}}, "max-file cannot be less than 1"),
        ({"Config": {"compress": "true"}}, "compress cannot be true when max-file is less than 2"),
    ]:
        with pytest.raises(ValueError, match=msg):
            jsonlog.options(bad)


# ---- the logs command -----------------------------------------------------------------------------


@pytest.mark.integration
@needs_root()
def test_logs_streams_tail_timestamps_details(busybox: Pallet) -> None:
    p = busybox
    p(
        "run",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "echo one; echo two >&2; sleep 0.3; echo three; printf tail",
    )
    r = p("logs", "talk")
    assert r.stdout == b"one\nthree\ntail" and r.stderr == b"two\n"
    assert p.out("logs", "--tail", "2", "talk") == "three\ntail"
    assert p.out("logs", "-n", "0", "talk") == ""
    stamped = p.out("logs", "-t", "--tail", "1", "talk")
    stamp, _sp, text = stamped.partition(" ")
    assert text == "tail" and len(stamp) == len("2024-01-01T00:00:00.000000000Z") and stamp.endswith("Z")
    assert p.out("logs", "--details", "--tail", "1", "talk") == " tail"
    assert p.out("logs", "--since", "1h", "talk") == "one\nthree\ntail"
    assert p.out("logs", "--until", "1h", "talk") == ""
    assert p.out("logs", "--since", str(int(time.time()) + 60), "talk") == ""
    r = p("logs", "--since", "yesterday-ish", "talk", check=False)
    assert r.returncode == 125 and b'invalid value for "since"' in r.stderr
    r = p("logs", "nosuch", check=False)
    assert r.returncode == 1 and r.stderr == b"Error: No such container: nosuch\n"


@pytest.mark.integration
@needs_root()
def test_logs_follow_ends_when_the_container_exits(runtime_busybox: Pallet) -> None:
    p = runtime_busybox
    p(
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo tick $i; sleep 0.2; done",
    )
    follower = subprocess.Popen(
        [*PALLET, "logs", "-f", "ticker"], env=p.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert follower.stdout is not None
    assert follower.stdout.readline() == b"tick 1\n"  # streamed while the container runs
    out, err = follower.communicate(timeout=30)  # and it ends by itself when the container is gone
    assert follower.returncode == 0, err
    assert out == b"tick 2\ntick 3\ntick 4\ntick 5\n"
    assert not state(p, "ticker")["Running"]


# 240 lines, ten every 50 ms: a 2k file (about 27 entries) rotates every ~150 ms, fast enough to rotate
# many times, while 5 files leave a follower polling every 50 ms half a second of slack on a busy host.
SLOW_LINES = (
    "sleep 0.3; i=0; while [ $i -lt 240 ]; do i=$((i+1)); echo line $i; "
    "[ $((i % 10)) = 0 ] && sleep 0.05; done"
)


@pytest.mark.integration
@needs_root()
def test_rotation_with_log_opts_and_follow_across_it(busybox: Pallet) -> None:
    p = busybox
    opts = ["--log-opt", "max-size=2k", "--log-opt", "max-file=5"]
    r = p("create", "--name", "chatty", *opts, "busybox", "sh", "-c", SLOW_LINES, check=False)
    if r.returncode == 125 and b"unknown flag" in r.stderr:
        pytest.skip("`--log-opt` is not there yet")
    cid = cid_of(p, "chatty")
    p("start", "chatty")
    follower = subprocess.Popen(
        [*PALLET, "logs", "-f", "chatty"], env=p.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, _err = follower.communicate(timeout=30)
    wait_for(lambda: not state(p, "chatty")["Running"], message="exit")
    files = sorted((p.root / "containers" / cid).glob(f"{cid}-json.log*"))
    assert [f.name.removeprefix(cid) for f in files] == [
        "-json.log",
        *(f"-json.log.{i}" for i in range(1, 5)),
    ]
    for f in files[1:]:
        assert 2000 <= f.stat().st_size < 2100
    kept = p.out("logs", "chatty").splitlines()
    assert kept == [f"line {i}" for i in range(241 - len(kept), 241)] and len(kept) > 50
    assert out.decode().splitlines() == [f"line {i}" for i in range(1, 241)]  # nothing lost while following
    assert p.out("logs", "--tail", "3", "chatty") == "line 238\nline 239\nline 240\n"


@pytest.mark.integration
@needs_root()
def test_log_driver_none(busybox: Pallet) -> None:
    p = busybox
    r = p("run", "--name", "mute", "--log-driver", "none", "busybox", "echo", "hello", check=False)
    if r.returncode == 125 and b"unknown flag" in r.stderr:
        pytest.skip("`--log-driver` is not there yet")
    assert r.stdout == b"hello\n"  # attached output still flows
    cid = cid_of(p, "mute")
    assert not list((p.root / "containers" / cid).glob("*-json.log*"))
    r = p("logs", "mute", check=False)
    assert r.returncode == 1 and r.stderr == b"Error: configured logging driver does not support reading\n"
