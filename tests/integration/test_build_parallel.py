"""Multi-stage builds as a graph: independent stages at the same time, COPY --from waiting only for the
stage it reads."""

from __future__ import annotations

import re
import time

import pytest
import test_build_support as support
from test_build_support import Build

build = support.build  # fixture
pytestmark = [*support.pytestmark, pytest.mark.slow]


def test_independent_stages_run_in_parallel(build: Build) -> None:
    df = ("FROM busybox AS a\nRUN sleep 3 && echo a > /a\nFROM busybox AS b\nRUN sleep 3 && echo b > /b\n"
          "FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n")
    start = time.monotonic()
    build(df)
    elapsed = time.monotonic() - start
    assert elapsed < 5.5, f"two 3-second stages took {elapsed:.1f}s"
    assert build.sh("cat /a /b") == "a\nb\n"


def test_copy_from_waits_only_for_its_stage(build: Build) -> None:
    # The final stage's own RUN starts while the slow stage still builds; only its COPY waits.
    log = build.log("FROM busybox AS slow\nRUN sleep 2 && echo s > /s\n"
                    "FROM busybox\nRUN echo early > /e\nCOPY --from=slow /s /s\n")
    order = [m.group(1) for m in re.finditer(r"^#\d+ (\[\S+ \d/\d\] \S+)", log, re.M)]
    assert order.index("[stage-1 2/3] RUN") < order.index("[stage-1 3/3] COPY")
    done = {m.group(2): int(m.group(1)) for m in re.finditer(r"^#(\d+) \[(\S+ \d/\d)\] ", log, re.M)}
    finish = [int(n) for n in re.findall(r"^#(\d+) DONE", log, re.M)]
    assert finish.index(done["stage-1 2/3"]) < finish.index(done["slow 2/2"])  # `early` ended first
    assert build.sh("cat /e /s") == "early\ns\n"


def test_unneeded_stage_is_not_built(build: Build) -> None:
    log = build.log("FROM busybox AS unused\nRUN sleep 30\nFROM busybox\nRUN echo used > /u\n")
    assert "sleep 30" not in log and build.sh("cat /u") == "used\n"
