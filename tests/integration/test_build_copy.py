"""COPY and ADD: sources, destinations, ownership, modes, links, stages, archives, URLs, heredocs."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
import test_build_support as support
from test_build_support import Build

build = support.build  # fixture
pytestmark = support.pytestmark


def test_copy_file_to_dir_and_name(build: Build) -> None:
    build("FROM busybox\nCOPY a.txt /dst/\nCOPY a.txt /renamed\nCOPY a.txt b.txt /multi/\n",
          files={"a.txt": "A\n", "b.txt": "B\n"})
    assert build.sh("cat /dst/a.txt /renamed /multi/a.txt /multi/b.txt") == "A\nA\nA\nB\n"


def test_copy_directory_contents_and_wildcards(build: Build) -> None:
    build("FROM busybox\nCOPY dir /d\nCOPY *.md /docs/\nCOPY dir/sub/?.c /c/\n",
          files={"dir/x": "x", "dir/sub/y.c": "y", "one.md": "1", "two.md": "2", "three.txt": "3"})
    assert build.sh("find /d /docs /c | sort").split() == [
        "/c", "/c/y.c", "/d", "/d/sub", "/d/sub/y.c", "/d/x", "/docs", "/docs/one.md", "/docs/two.md"]


def test_copy_relative_to_workdir(build: Build) -> None:
    build("FROM busybox\nWORKDIR /app\nCOPY a ./\nCOPY a rel/b\n", files={"a": "a"})
    assert build.sh("cat /app/a /app/rel/b") == "aa"


def test_copy_keeps_mode_and_root_owner(build: Build) -> None:
    build.files({"run.sh": "#!/bin/sh\necho ran\n"})
    os.chmod(build.ctx / "run.sh", 0o750)
    os.chown(build.ctx / "run.sh", 1234, 1234)
    build("FROM busybox\nCOPY run.sh /run.sh\n")
    assert build.sh("stat -c '%a %u:%g' /run.sh; /run.sh") == "750 0:0\nran\n"


def test_copy_chown_names_and_ids(build: Build) -> None:
    build("FROM busybox\nCOPY --chown=nobody:nogroup a /new/dir/a\nCOPY --chown=123 a /n\n"
          "ARG U=daemon\nCOPY --chown=$U d /d\n", files={"a": "a", "d/e": "e"})
    out = build.sh("stat -c '%U:%G %n' /new/dir/a /new/dir /d /d/e; stat -c %u:%g /n")
    assert out.splitlines() == ["nobody:nogroup /new/dir/a", "nobody:nogroup /new/dir", "daemon:daemon /d",
                                "daemon:daemon /d/e", "123:123"]
    assert build.new_history()[-1]["created_by"] == "COPY --chown=daemon d /d # buildkit"


def test_copy_chmod(build: Build) -> None:
    build("FROM busybox\nCOPY --chmod=741 a d /x/\n", files={"a": "a", "d/f": "f"})
    assert build.sh("stat -c '%a %n' /x/a /x/f") == "741 /x/a\n741 /x/f\n"
    assert build.new_history()[-1]["created_by"] == "COPY --chmod=741 a d /x/ # buildkit"


def test_copy_symlinks(build: Build) -> None:
    build.files({"dir/target": "t\n", "real": "real\n"})
    os.symlink("target", build.ctx / "dir/link")
    os.symlink("real", build.ctx / "named")
    build("FROM busybox\nCOPY dir /d\nCOPY named /named\n")
    assert build.sh("readlink /d/link; cat /d/link; test -L /named || echo followed; cat /named") == \
        "target\nt\nfollowed\nreal\n"


def test_copy_from_stage_index_and_image(build: Build) -> None:
    build("FROM busybox AS first\nRUN mkdir /out && echo one > /out/f && chown 7:8 /out/f\n"
          "FROM busybox\nCOPY --from=first /out/f /by-name\nCOPY --from=0 /out /by-index\n"
          "COPY --from=busybox /bin/busybox /bb\n")
    assert build.sh("cat /by-name /by-index/f; stat -c %u:%g /by-name; test -x /bb && echo exe") == \
        "one\none\n7:8\nexe\n"


def test_copy_from_image_follows_absolute_links_inside_it(build: Build) -> None:
    build("FROM busybox AS s\nRUN mkdir /d && echo in > /d/f && ln -s /d /abs\n"
          "FROM busybox\nCOPY --from=s /abs/f /f\n")
    assert build.sh("cat /f") == "in\n"


def test_copy_exclude(build: Build) -> None:
    build("FROM busybox\nCOPY --exclude=*.log --exclude=s/b d /d\n",
          files={"d/keep": "k", "d/drop.log": "x", "d/s/x.log": "y", "d/s/b": "b"})
    assert build.sh("find /d | sort") == "/d\n/d/keep\n/d/s\n/d/s/x.log\n"  # `*` stays in one directory


def test_copy_heredoc_with_and_without_expansion(build: Build) -> None:
    build('FROM busybox\nARG WHO=world\nCOPY <<EOF /hello\nhello $WHO\nEOF\nCOPY <<"RAW" /raw\n$WHO\nRAW\n')
    assert build.sh("cat /hello /raw") == "hello world\n$WHO\n"
    assert build.new_history()[-1]["created_by"] == "COPY <<RAW /raw # buildkit"


def test_run_heredocs(build: Build) -> None:
    build("FROM busybox\nRUN <<EOF\necho one > /one\necho two >> /one\nEOF\n"
          "RUN <<EOF\n#!/bin/sh\necho \"$0\" > /script\nEOF\n"
          "RUN cat <<EOF > /file\ncontent\nEOF\n")
    assert build.sh("cat /one /script /file") == "one\ntwo\n/dev/pipes/EOF\ncontent\n"


def _tar_bytes(mode: Literal["w", "w:gz", "w:bz2"]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in (("top/a", b"alpha"), ("top/b", b"beta")):
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.mode = len(data), 5, 6, 0o640
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_add_extracts_local_archives(build: Build) -> None:
    build("FROM busybox\nADD plain.tar /p\nADD zipped.tgz /z/\nADD data.bz2 /b\nADD notar.tar.gz /n\n",
          files={"plain.tar": _tar_bytes("w"), "zipped.tgz": _tar_bytes("w:gz"),
                 "data.bz2": _tar_bytes("w:bz2"), "notar.tar.gz": "not an archive"})
    assert build.sh("cat /p/top/a /z/top/b /b/top/a; stat -c '%u:%g %a' /p/top/a; cat /n") == \
        "alphabetaalpha5:6 640\nnot an archive"


def test_add_chown_and_plain_file(build: Build) -> None:
    build("FROM busybox\nADD --chown=nobody f /f\nADD --chown=1:2 arch.tar /x/\n",
          files={"f": "f", "arch.tar": _tar_bytes("w")})
    assert build.sh("stat -c %U /f; stat -c %u:%g /x/top/a") == "nobody\n1:2\n"


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "file.txt").write_text("from http\n")
    (root / "arch.tar").write_bytes(_tar_bytes("w"))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_add_url(build: Build, http_server: str) -> None:
    digest = "sha256:" + hashlib.sha256(b"from http\n").hexdigest()
    build(f"FROM busybox\nADD {http_server}/file.txt /dl/\n"
          f"ADD --checksum={digest} {http_server}/file.txt /sum\nADD {http_server}/arch.tar /notextracted\n")
    assert build.sh("cat /dl/file.txt /sum; stat -c %a /dl/file.txt; test -f /notextracted && echo file") == \
        "from http\nfrom http\n600\nfile\n"


def test_add_url_checksum_mismatch(build: Build, http_server: str) -> None:
    res = build(f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {http_server}/file.txt /f\n", check=False)
    assert res.returncode == 1 and b"digest mismatch" in res.stderr and b"Dockerfile:2" in res.stderr


def test_dockerignore_with_exceptions(build: Build) -> None:
    build.files({".dockerignore": "# comment\n*.log\n!keep.log\nsecret/\n**/tmp\n/rootonly\n",
                 "a.log": "x", "keep.log": "k", "secret/s": "s", "x/tmp/t": "t", "x/y": "y", "rootonly": "r",
                 "x/rootonly": "nested"})
    build("FROM busybox\nCOPY . /ctx\n")
    assert build.sh("cd /ctx && find . -type f | sort") == "./.dockerignore\n./Dockerfile\n./keep.log\n" \
        "./x/rootonly\n./x/y\n"


def test_dockerignore_excluded_source_is_missing(build: Build) -> None:
    res = build("FROM busybox\nCOPY a.log /\n", files={".dockerignore": "*.log\n", "a.log": "x"}, check=False)
    assert res.returncode == 1 and b'"/a.log": not found' in res.stderr


def test_copy_parents(build: Build) -> None:
    build("FROM busybox\nCOPY --parents a/b/f.txt c/*.txt /keep/\nCOPY --parents ./x/./y/z /pivot/\n",
          files={"a/b/f.txt": "f", "c/g.txt": "g", "x/y/z": "z"})
    assert build.sh("find /keep /pivot -type f | sort").split() == [
        "/keep/a/b/f.txt", "/keep/c/g.txt", "/pivot/y/z"]
