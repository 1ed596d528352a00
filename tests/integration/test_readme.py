"""The README's quick start: its first command ends with a real container's output."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, needs_root, teardown_root

pytestmark = [needs_root(), pytest.mark.integration]


def test_readme_quick_start_commands_exist() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["scripts/demo", "scripts/test"]
    ci = (REPO / ".ci/run").read_text()
    assert "exec scripts/test" in ci


def test_demo_runs_a_real_container(tmp_path: Path) -> None:
    root = tmp_path / "root"
    try:
        p = subprocess.run(
            [str(REPO / "scripts/demo")],
            capture_output=True,
            timeout=600,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PALLET_ROOT": str(root)},
        )
        assert p.returncode == 0, p.stderr.decode()
        out = p.stdout.decode()
        m = re.search(r"hello from container ([0-9a-f]{12}): pid 1, uid 0", out)
        assert m, out
        assert "overlay / overlay" in out
    finally:
        teardown_root(root)
