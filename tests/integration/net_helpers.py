"""Helpers for the container networking and volume acceptance tests (test_net_*.py,
test_volumes_run.py): a busybox root whose containers never resolve or send anything off the machine,
a web container, and host-side probes. Teardown removes the root's containers and networks through
pallet first, then conftest's teardown_root sweeps whatever a failed test left (helpers, veths,
bridges, nft tables, namespace pins)."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Pallet, needs_root

pytestmark = [
    needs_root(),
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("nft"), reason="nft (nftables) is not installed"),
]

WEB_CMD = "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture
def net(busybox: Pallet) -> Iterator[Pallet]:
    """busybox, with no DNS upstream (nothing forwarded off the machine) and a graceful teardown."""
    busybox.env["PALLET_DNS_UPSTREAMS"] = ""
    yield busybox
    ids = busybox("ps", "-aq", "--no-trunc", check=False).stdout.decode().split()
    if ids:
        busybox("rm", "-f", "-v", *ids, check=False)
    busybox("network", "prune", "-f", check=False)


def web(p: Pallet, name: str, *args: str, text: str = "hello") -> str:
    """A detached busybox httpd serving `text` on port 80; returns its id once it answers."""
    cid = p.out("run", "-d", "--name", name, *args, "busybox", "sh", "-c", WEB_CMD.format(text=text)).strip()
    p(
        "exec",
        name,
        "sh",
        "-c",
        "for i in $(seq 100); do wget -qO- http://127.0.0.1/ && exit 0; sleep 0.05; done; exit 1",
    )
    return cid


def client(p: Pallet, *args: str, url: str, check: bool = False) -> str | None:
    """`wget -qO- url` from a new --rm container (busybox 1.35: `timeout`, never `wget -T`)."""
    # under sh (with a command after it, or sh execs it): as the container's pid 1, `timeout` could
    # not stop wget (init ignores SIGTERM)
    proc = p("run", "--rm", *args, "busybox", "sh", "-c", f"timeout 5 wget -qO- {url}; exit $?", check=check)
    return proc.stdout.decode() if proc.returncode == 0 else None


def http_get(url: str, timeout: float = 5.0) -> str:
    """From the host; retried while the port comes up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def inspect(p: Pallet, *refs: str) -> list[dict]:  # type: ignore[type-arg]
    return json.loads(p.out("inspect", *refs))  # type: ignore[no-any-return]


def db_rows(root: Path, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    conn = sqlite3.connect(root / "pallet.db", timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def netns_files(root: Path) -> list[str]:
    d = root / "run" / "netns"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []
