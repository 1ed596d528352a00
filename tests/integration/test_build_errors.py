"""Bad input and failures: one clear error naming the Dockerfile line, a non-zero exit, nothing stored
half-built, the previous image under the tag intact, no temp dirs, mounts or processes left."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import test_build_support as support
from test_build_support import Build, leftovers

from conftest import PALLET

build = support.build  # fixture
pytestmark = support.pytestmark


def running(command: str) -> bool:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return any(line.strip() == command for line in ps.splitlines())


def failure(build: Build, dockerfile: str, *args: str, files: dict[str, str | bytes] | None = None) -> str:
    before = build.pallet.out("images", "-q", "--no-trunc")
    res = build(dockerfile, *args, check=False, files=files)
    assert res.returncode == 1, res.stderr.decode()
    assert build.pallet.out("images", "-q", "--no-trunc") == before  # nothing half-built was stored
    err = res.stderr.decode()
    assert err.rstrip().splitlines()[-1].startswith("ERROR: failed to solve: "), err
    return err


@pytest.mark.parametrize(("dockerfile", "line", "message"), [
    ("FROM busybox\nFROB x\n", 2, "unknown instruction: FROB"),
    ('FROM busybox\nSHELL ["/bin/sh" "-c"]\n', 2, "SHELL requires the arguments to be in JSON form"),
    ("FROM $NOPE\n", 1, "base name ($NOPE) should not be blank"),
    ("FROM busybox\nCOPY --from=nostage /x /x\n", 2, "failed to resolve source metadata"),
    ("FROM busybox AS a\nFROM busybox\nCOPY --from=2 /x /x\n", 3, "invalid stage index 2"),
    ("FROM nosuchimage\n", 1, "nosuchimage: failed to resolve source metadata for"),
    ("FROM busybox\nCOPY missing /m\n", 2, '"/missing": not found'),
    ("FROM busybox\nCOPY ../outside /o\n", 2, '"/outside": not found'),
    ("FROM busybox\nCOPY --chown=nouser f /f\n", 2, "unable to find user nouser"),
    ("FROM busybox\nCOPY --chmod=999 f /f\n", 2, "invalid chmod parameter"),
    ("FROM busybox\nSTOPSIGNAL NOPE\n", 2, "Invalid signal: NOPE"),
    ("FROM busybox\nUSER ghost\nRUN true\n", 3, "unable to find user ghost"),
    ("FROM busybox\nADD https://127.0.0.1:9/repo.git /src\n", 2, "git repository is not supported"),
    ("FROM busybox\nRUN --security=insecure true\n", 2, "security.insecure is not allowed"),
])
def test_bad_input_names_the_line(build: Build, dockerfile: str, line: int, message: str) -> None:
    (build.ctx.parent / "outside").write_text("out of context")
    err = failure(build, dockerfile, files={"f": "f"})
    assert message in err
    assert f"Dockerfile:{line}\n" in err or f"Dockerfile:{line}:" in err, err


def test_missing_target(build: Build) -> None:
    err = failure(build, "FROM busybox AS one\n", "--target", "two")
    assert 'target stage "two" could not be found' in err


def test_failing_run_keeps_old_tag_and_cleans_up(build: Build) -> None:
    build("FROM busybox\nRUN echo good > /v\n")
    old = build.image_id()
    err = failure(build, "FROM busybox\nRUN echo partial > /v\nRUN echo to-stderr >&2; exit 3\n")
    assert '#6 ERROR: process "/bin/sh -c echo to-stderr >&2; exit 3" did not complete successfully: ' \
           "exit code: 3" in err
    assert " to-stderr\n" in err and ">>> RUN echo to-stderr >&2; exit 3" in err and "Dockerfile:3\n" in err
    assert build.image_id() == old and build.sh("cat /v") == "good\n"
    assert leftovers(build.pallet.root) == []


def test_failing_stage_cancels_the_others(build: Build) -> None:
    start = time.monotonic()
    failure(build, "FROM busybox AS slow\nRUN sleep 30\nFROM busybox AS bad\nRUN exit 7\n"
                   "FROM busybox\nCOPY --from=slow /etc/passwd /a\nCOPY --from=bad /etc/passwd /b\n")
    assert time.monotonic() - start < 15


def test_interrupt_cleans_up(build: Build) -> None:
    build("FROM busybox\nRUN echo old > /v\n")
    old = build.image_id()
    (build.ctx / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=cache,target=/c sleep 57 & "
                                          "sleep 57; echo new > /v\n")
    proc = subprocess.Popen([*PALLET, "build", "--progress=plain", "-t", "t", str(build.ctx)],
                            env=build.pallet.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen = b""
    while b"RUN --mount" not in seen:
        seen += proc.stderr.readline()
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and b"Canceled" in err
    assert leftovers(build.pallet.root) == []
    assert build.image_id() == old
    assert not running("sleep 57")


def test_sigterm_cleans_up(build: Build) -> None:
    (build.ctx / "Dockerfile").write_text("FROM busybox\nRUN sleep 61\n")
    proc = subprocess.Popen([*PALLET, "build", "--progress=plain", "-t", "t", str(build.ctx)],
                            env=build.pallet.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    proc.terminate()
    proc.communicate(timeout=20)
    assert proc.returncode != 0 and leftovers(build.pallet.root) == []
    assert not running("sleep 61")
