"""The one SQLite database (WAL) holding pallet's metadata, with versioned migrations.

Every pallet command is its own process, so writers serialise through SQLite's own lock:
`BEGIN IMMEDIATE` takes the write lock up front (no upgrade deadlocks) and a long busy
timeout waits for it instead of failing with "database is locked".
"""

from __future__ import annotations

# The C module itself: the `sqlite3` package adds only datetime adapters (unused here, deprecated
# in 3.12) and its import of datetime costs ~2 ms, paid by every command and by the monitor's
# exit child. The classes are the same objects as sqlite3's.
import _sqlite3
import time

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    import os
    import sqlite3
    from collections.abc import Callable
    from types import TracebackType

IntegrityError = _sqlite3.IntegrityError  # for callers, without importing the sqlite3 package
BUSY_TIMEOUT_MS = 60_000
WAL_AUTOCHECKPOINT_PAGES = 200  # SQLite's default is 1000
WAL_SIZE_LIMIT = 4 << 20

# Each entry moves the schema from version i to i+1. Never edit a released entry: append.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE images (
        id TEXT PRIMARY KEY,             -- sha256:<config digest>
        manifest_digest TEXT,            -- the manifest this image was stored from
        manifest_media_type TEXT,
        created TEXT NOT NULL,           -- from the config, RFC 3339
        size INTEGER NOT NULL,           -- sum of its layers' unpacked sizes
        parent TEXT,                     -- local build parent, as docker shows it
        added_at REAL NOT NULL
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        chain_id TEXT NOT NULL,
        PRIMARY KEY (image_id, idx)
    );
    CREATE INDEX image_layers_chain ON image_layers(chain_id);
    CREATE TABLE image_blobs (           -- blobs an image keeps alive (manifest, config, layers)
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        PRIMARY KEY (image_id, digest)
    );
    CREATE INDEX image_blobs_digest ON image_blobs(digest);
    CREATE TABLE tags (
        name TEXT PRIMARY KEY,           -- normalised reference, docker.io/library/busybox:latest
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE repo_digests (
        name TEXT PRIMARY KEY,           -- docker.io/library/busybox@sha256:...
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE TABLE layers (
        chain_id TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        parent TEXT,
        size INTEGER NOT NULL
    );
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT,
        image_ref TEXT NOT NULL,
        created TEXT NOT NULL,
        config TEXT NOT NULL,            -- JSON: Config + HostConfig as docker inspect shows them
        state TEXT NOT NULL              -- JSON: State
    );
    CREATE INDEX containers_image ON containers(image_id);
    """,
    """
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        created TEXT NOT NULL,
        labels TEXT NOT NULL,            -- JSON object
        options TEXT NOT NULL,           -- JSON object: the local driver's type/device/o
        anonymous INTEGER NOT NULL DEFAULT 0
    );
    """,
    """
    CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        driver TEXT NOT NULL,            -- bridge | host | null
        bridge TEXT,                     -- the host bridge interface (bridge driver only)
        subnet TEXT,
        gateway TEXT,
        ip_range TEXT,
        internal INTEGER NOT NULL DEFAULT 0,
        config TEXT NOT NULL             -- JSON: EnableIPv6, Attachable, Ingress, ConfigOnly, Options, Labels
    );
    CREATE TABLE network_endpoints (
        id TEXT PRIMARY KEY,             -- EndpointID
        network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        container_id TEXT NOT NULL,
        name TEXT NOT NULL,              -- container name, what the embedded DNS answers
        aliases TEXT NOT NULL,           -- JSON list: --network-alias, compose service names
        ipv4 TEXT NOT NULL,
        prefixlen INTEGER NOT NULL,
        mac TEXT NOT NULL,
        ifname TEXT NOT NULL,            -- inside the container: eth0, eth1, ...
        host_ifname TEXT NOT NULL,       -- the veth end on the bridge
        netns TEXT NOT NULL,             -- path of the container's network namespace
        dns TEXT NOT NULL,               -- JSON list: the container's --dns servers (forwarding upstreams)
        UNIQUE (network_id, container_id)
    );
    CREATE INDEX network_endpoints_container ON network_endpoints(container_id);
    CREATE INDEX network_endpoints_ipv4 ON network_endpoints(network_id, ipv4);
    CREATE TABLE network_addresses (     -- IPAM: one row per address in use
        network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        address TEXT NOT NULL,
        owner TEXT NOT NULL,             -- endpoint id, or "gateway"
        PRIMARY KEY (network_id, address)
    );
    CREATE TABLE network_ports (         -- published ports (-p), one row per host binding
        proto TEXT NOT NULL,             -- tcp | udp
        host_ip TEXT NOT NULL,           -- 0.0.0.0 for every address
        host_port INTEGER NOT NULL,
        endpoint_id TEXT NOT NULL REFERENCES network_endpoints(id) ON DELETE CASCADE,
        container_port INTEGER NOT NULL,
        PRIMARY KEY (proto, host_ip, host_port)
    );
    CREATE INDEX network_ports_endpoint ON network_ports(endpoint_id);
    """,
    """
    CREATE TABLE build_cache (           -- one row per filesystem step (RUN, COPY, ADD, WORKDIR) built
        key TEXT PRIMARY KEY,            -- sha256: of the parent's key, the expanded step and its inputs
        parent TEXT,                     -- the key of the filesystem the step ran on
        description TEXT NOT NULL,       -- the step as the progress output names it
        chain_id TEXT NOT NULL,          -- the layer the step made (on its parent's chain)
        diff_id TEXT NOT NULL,
        size INTEGER NOT NULL,           -- bytes of file content in that layer
        created TEXT NOT NULL,           -- RFC 3339: when the layer was made (its history time)
        last_used REAL NOT NULL,
        usage_count INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX build_cache_last_used ON build_cache(last_used);
    CREATE TABLE build_cache_layers (    -- every layer a cached step's filesystem needs: kept from GC
        key TEXT NOT NULL REFERENCES build_cache(key) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        chain_id TEXT NOT NULL,
        PRIMARY KEY (key, idx)
    );
    CREATE INDEX build_cache_layers_chain ON build_cache_layers(chain_id);
    CREATE TABLE build_memo (            -- whole builds that replay without parsing while no input changed
        key TEXT PRIMARY KEY,            -- sha256 of the Dockerfile, .dockerignore, options, context path
        image_id TEXT NOT NULL,
        inputs TEXT NOT NULL,            -- JSON: base image tags, context entries' stat, cache keys, output
        last_used REAL NOT NULL
    );
    """,
]


def connect(path: str | os.PathLike[str], *, migrate: bool = True) -> sqlite3.Connection:
    """Open the database (`timeout` is SQLite's busy timeout: writers wait for the lock).
    synchronous=NORMAL: in WAL mode a commit survives a crash of any process, and only an OS
    crash may lose the last commits, never consistency. migrate=False is for processes that only
    ever run on a database the engine has opened before (the monitor's children)."""
    conn = _sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = _sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    # Most commands end without closing the database (os._exit), so nobody checkpoints on close,
    # and the first process to open it again re-reads the whole WAL (~1.4 us a page): checkpoint
    # early to keep that short, and keep the file itself small after a big transaction.
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    if migrate:
        _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= len(MIGRATIONS):
        return
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
    with write(conn):
        # Re-read inside the write lock: another process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for i in range(version, len(MIGRATIONS)):
            for stmt in MIGRATIONS[i].split(";"):
                if stmt.strip():
                    conn.execute(stmt)
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS)}")


def _retry_locked(fn: Callable[[], object]) -> None:
    # Switching journal mode ignores busy_timeout; retry it ourselves.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            fn()
            return
        except _sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def write(conn: sqlite3.Connection) -> _Write:
    """A write transaction (`with db.write(conn) as c:`): all or nothing, even if the process dies
    half-way. BEGIN IMMEDIATE takes the write lock up front."""
    return _Write(conn)


class _Write:
    # A class rather than @contextmanager: contextlib stays out of the monitor's children.
    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.conn.execute("COMMIT" if typ is None else "ROLLBACK")
