"""Smoke: the reference Dockerfile builds, runs, and rebuilds from the cache."""

from __future__ import annotations

import pytest
import test_build_support as support
from test_build_support import Build

build = support.build  # fixture
pytestmark = support.pytestmark


def test_reference(build: Build) -> None:
    df = "FROM busybox\nRUN echo hi > /hello\nCOPY big /big\nENV FOO=bar\nCMD [\"cat\", \"/hello\"]\n"
    build(df, files={"big": b"x" * 100000})
    assert build.sh("cat /hello; wc -c < /big; echo $FOO") == "hi\n100000\nbar\n"
    log = build.log(df)
    assert log.count("CACHED") == 2
