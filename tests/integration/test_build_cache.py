"""The build cache: content-addressed keys, what invalidates what, persistence, prune and --cache-from."""

from __future__ import annotations

import os
import re
import time

import test_build_support as support
from test_build_support import Build

build = support.build  # fixture
pytestmark = support.pytestmark

# $R gives a new value at every run (busybox's date has no nanoseconds).
DF = ("FROM busybox\nENV R=/proc/sys/kernel/random/uuid\nRUN echo one > /one\nCOPY a /a\n"
      "RUN cat /a > /a-copy; cat $R > /stamp\nCOPY b /b\nENV E=1\nCMD [\"sh\"]\n")
RUN_STAMP = "[4/5] RUN cat /a > /a-copy; cat /proc/sys/kernel/random/uuid > /stamp"  # $R expanded


def steps(log: str) -> dict[str, str]:
    """Step name -> CACHED or DONE, from plain progress output."""
    names = dict(re.findall(r"^#(\d+) (\[[^\]]*\d+/\d+\] .*)$", log, re.M))
    result = {}
    for number, name in names.items():
        if re.search(rf"^#{number} CACHED$", log, re.M):
            result[name] = "CACHED"
        elif re.search(rf"^#{number} DONE ", log, re.M):
            result[name] = "DONE"
    return {k: v for k, v in result.items() if " FROM " not in k}


def test_unchanged_rebuild_is_all_cached_and_same_image(build: Build) -> None:
    build(DF, files={"a": "a1", "b": "b1"})
    first = build.image_id()
    log = build.log(DF)
    assert set(steps(log).values()) == {"CACHED"} and len(steps(log)) == 4
    assert build.image_id() == first


def test_touch_without_change_hits(build: Build) -> None:
    build(DF, files={"a": "a1", "b": "b1"})
    first, stamp = build.image_id(), build.sh("cat /stamp")
    later = time.time() + 5
    os.utime(build.ctx / "a", (later, later))
    os.utime(build.ctx / "b", (later, later))
    log = build.log(DF)
    assert set(steps(log).values()) == {"CACHED"}, log
    assert build.image_id() == first and build.sh("cat /stamp") == stamp


def test_content_change_rebuilds_from_first_user(build: Build) -> None:
    build(DF, files={"a": "a1", "b": "b1"})
    build.files({"a": "a2"})
    got = steps(build.log(DF))
    assert got == {"[2/5] RUN echo one > /one": "CACHED", "[3/5] COPY a /a": "DONE",
                   RUN_STAMP: "DONE", "[5/5] COPY b /b": "DONE"}
    assert build.sh("cat /a-copy") == "a2"


def test_change_late_file_keeps_earlier_steps(build: Build) -> None:
    build(DF, files={"a": "a1", "b": "b1"})
    build.files({"b": "b2", "unrelated": "x"})
    got = steps(build.log(DF))
    assert [v for v in got.values()] == ["CACHED", "CACHED", "CACHED", "DONE"]


def test_mode_change_invalidates(build: Build) -> None:
    build(DF, files={"a": "a1", "b": "b1"})
    os.chmod(build.ctx / "a", 0o600)
    assert steps(build.log(DF))["[3/5] COPY a /a"] == "DONE"


def test_metadata_change_keeps_run_cache(build: Build) -> None:
    build("FROM busybox\nLABEL v=1\nRUN cat /proc/sys/kernel/random/uuid > /t\n")
    stamp = build.sh("cat /t")
    build("FROM busybox\nLABEL v=2\nRUN cat /proc/sys/kernel/random/uuid > /t\n")
    assert build.sh("cat /t") == stamp  # LABEL makes no layer: the RUN after it is the same step
    build("FROM busybox\nENV v=2\nRUN cat /proc/sys/kernel/random/uuid > /t\n")
    assert build.sh("cat /t") != stamp  # ENV changes what the RUN sees


def test_no_cache(build: Build) -> None:
    build(DF, files={"a": "a1", "b": "b1"})
    stamp = build.sh("cat /stamp")
    assert set(steps(build.log(DF, "--no-cache")).values()) == {"DONE"}
    assert build.sh("cat /stamp") != stamp


def test_cache_survives_image_removal_and_prune_frees_it(build: Build) -> None:
    build(DF, files={"a": "a1", "b": "b1"})
    build.pallet("rmi", "t")
    assert set(steps(build.log(DF)).values()) == {"CACHED"}
    build.pallet("rmi", "t")
    out = build.pallet.out("builder", "prune", "-a", "-f")
    assert out.startswith("Deleted build cache objects:\n") and "Total reclaimed space:" in out
    assert set(steps(build.log(DF)).values()) == {"DONE"}


def test_prune_keeps_layers_of_images(build: Build) -> None:
    build("FROM busybox\nRUN echo keep > /k\n")
    out = build.pallet.out("builder", "prune", "-f")
    assert out.endswith("Total reclaimed space: 0B\n")
    assert build.sh("cat /k") == "keep\n"


def test_prune_until_filter(build: Build) -> None:
    build("FROM busybox\nRUN echo x > /x\n")
    build.pallet("rmi", "t")
    out = build.pallet.out("builder", "prune", "-af", "--filter", "until=1h")
    assert "Deleted" not in out  # used just now: younger than an hour
    assert "Deleted build cache objects" in build.pallet.out("builder", "prune", "-af")


def test_system_df_usage_function(build: Build) -> None:
    from pallet.engine import build_cache
    from pallet.engine.core import Engine
    from pallet.state.paths import StatePaths

    build("FROM busybox\nRUN head -c 5000 /dev/zero > /z\n")
    engine = Engine(StatePaths.resolve(str(build.pallet.root)))
    try:
        count, size, reclaimable = build_cache.usage(engine)
    finally:
        engine.close()
    assert count == 1 and size == 5000 and reclaimable == 0  # the layer is the image's too


def test_cache_from_local_image(build: Build) -> None:
    df = "FROM busybox\nRUN cat /proc/sys/kernel/random/uuid > /t\nCOPY a /a\n"
    build(df, files={"a": "a"}, tag="old")
    stamp = build.sh("cat /t", "old")
    build.pallet("builder", "prune", "-af")  # the image stays; its layers can stand in for the steps
    log = build.log(df, "--cache-from", "old")
    assert steps(log) == {"[2/3] RUN cat /proc/sys/kernel/random/uuid > /t": "CACHED",
                          "[3/3] COPY a /a": "DONE"}
    assert build.sh("cat /t") == stamp


def test_prune_keep_storage_drops_oldest_first(build: Build) -> None:
    build("FROM busybox\nRUN head -c 300000 /dev/zero > /old\n", tag="a")
    time.sleep(0.05)
    build("FROM busybox\nRUN head -c 200000 /dev/zero > /new\n", tag="b")
    build.pallet("rmi", "a", "b")
    out = build.pallet.out("builder", "prune", "-af", "--keep-storage", "250k")
    assert out.count("\n") == 4 and "Total reclaimed space: 300kB" in out  # one record, the older one
    assert steps(build.log("FROM busybox\nRUN head -c 200000 /dev/zero > /new\n")) == {
        "[2/2] RUN head -c 200000 /dev/zero > /new": "CACHED"}
