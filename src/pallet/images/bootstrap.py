"""Base images made locally, without a registry: busybox from Debian's busybox-static, and a
Debian rootfs from debootstrap (cached, since debootstrap takes tens of seconds).

Both are reproducible: the layer tar is written deterministically with every mtime clamped to a
fixed epoch (SOURCE_DATE_EPOCH when set, else a date that belongs to the inputs), and the config's
`created` is that same epoch, so the same inputs always give the same image ID.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
from pathlib import Path

from pallet.images.config import DEFAULT_PATH, host_architecture, manifest_for, new_config, rfc3339, serialize
from pallet.images.content import BlobError
from pallet.images.layers import write_layer_tar
from pallet.images.store import ImageError, ImageStore
from pallet.oci import mediatypes as mt
from pallet.oci import reference as refs
from pallet.state.locks import file_lock

BUSYBOX = Path("/bin/busybox")
DEFAULT_CACHE = Path("/var/cache/pallet/bootstrap")
DEFAULT_MIRROR = "http://deb.debian.org/debian"

_BUSYBOX_DIRS = {"bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
                 "etc": 0o755, "tmp": 0o1777, "proc": 0o755, "sys": 0o755, "dev": 0o755, "root": 0o700,
                 "var": 0o755, "var/spool": 0o755, "var/spool/mail": 0o755, "var/www": 0o755,
                 "home": 0o755}
# As in the official busybox image (buildroot's skeleton).
_PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
_GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:daemon
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
"""


class BootstrapError(ImageError):
    """A base image cannot be made here (a missing package, a failed debootstrap)."""


# ---- busybox ------------------------------------------------------------------------------------

def bootstrap_busybox(store: ImageStore, tag: str = "busybox:latest", *, busybox: Path = BUSYBOX) -> str:
    """Make the busybox image from a static busybox binary; returns its image ID."""
    _check_static_busybox(busybox)
    _need_root("bootstrap busybox")
    epoch = _source_date_epoch() or int(busybox.stat().st_mtime)  # the package's build date
    version = _busybox_version(busybox)
    with tempfile.TemporaryDirectory(prefix="bootstrap-", dir=store.paths.tmp) as tmp:
        root = Path(tmp) / "rootfs"
        _busybox_tree(root, busybox)
        layer = Path(tmp) / "layer.tar"
        with open(layer, "wb") as out:
            diff_id = write_layer_tar(root, out, mtime=epoch)
        return _register(store, layer, diff_id, epoch, tag, cmd=["sh"],
                         created_by=f"pallet bootstrap: {version}")


def _busybox_tree(root: Path, busybox: Path) -> None:
    root.mkdir(mode=0o755)
    for rel, mode in _BUSYBOX_DIRS.items():
        (root / rel).mkdir(exist_ok=True)
        os.chmod(root / rel, mode)  # explicitly: the umask must not leak into the image
    shutil.copyfile(busybox, root / "bin/busybox")
    os.chmod(root / "bin/busybox", 0o755)
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    for rel in sorted(set(applets.stdout.split())):
        link = root / rel
        if rel == "bin/busybox" or rel.startswith("/") or ".." in rel.split("/"):
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")  # what `busybox --install -s` makes
    for name, text in (("passwd", _PASSWD), ("group", _GROUP)):
        (root / "etc" / name).write_text(text)
        os.chmod(root / "etc" / name, 0o644)


def _check_static_busybox(path: Path) -> None:
    if not path.is_file():
        raise BootstrapError(f"{path} not found: install Debian's busybox-static package "
                             "(apt-get install busybox-static)")
    if _has_interpreter(path):
        raise BootstrapError(f"{path} is dynamically linked (Debian's busybox package): install "
                             "busybox-static for a binary that runs in an empty image")


def _has_interpreter(path: Path) -> bool:
    """True when an ELF binary names a dynamic loader (PT_INTERP), i.e. is not static."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if len(ident) < 52 or ident[:4] != b"\x7fELF":
            raise BootstrapError(f"{path} is not an ELF executable")
        end = "<" if ident[5] == 1 else ">"
        if ident[4] == 2:
            phoff, = struct.unpack_from(end + "Q", ident, 0x20)
            phentsize, phnum = struct.unpack_from(end + "HH", ident, 0x36)
        else:
            phoff, = struct.unpack_from(end + "I", ident, 0x1C)
            phentsize, phnum = struct.unpack_from(end + "HH", ident, 0x2A)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return any(struct.unpack_from(end + "I", table, i * phentsize)[0] == 3 for i in range(phnum)
               if (i + 1) * phentsize <= len(table))


def _busybox_version(busybox: Path) -> str:
    out = subprocess.run([str(busybox), "--help"], capture_output=True, text=True)
    first = (out.stdout or out.stderr).splitlines()[:1]
    return first[0].strip().rstrip(".") if first else "BusyBox"


# ---- debian -------------------------------------------------------------------------------------

def bootstrap_debian(store: ImageStore, suite: str = "bookworm", tag: str = "debian:bookworm",
                     mirror: str | None = None, *, cache_dir: Path = DEFAULT_CACHE) -> str:
    """Make a Debian image with `debootstrap --variant=minbase`; the finished rootfs tarball is
    cached in cache_dir, so only the first call for a suite and mirror runs debootstrap."""
    mirror = mirror or default_mirror()
    key = f"debian-{suite}-{host_architecture()}-minbase-{hashlib.sha256(mirror.encode()).hexdigest()[:12]}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    tar_path, meta_path = cache_dir / f"{key}.tar", cache_dir / f"{key}.json"
    with file_lock(cache_dir / f"{key}.lock"):
        if not (tar_path.is_file() and meta_path.is_file()):
            _debootstrap(suite, mirror, cache_dir, tar_path, meta_path)
        meta = json.loads(meta_path.read_text())
        try:
            return _register(store, tar_path, meta["diff_id"], meta["epoch"], tag, cmd=["bash"],
                             created_by=f"debootstrap --variant=minbase {suite} {mirror}")
        except BlobError:
            tar_path.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            raise BootstrapError(f"the cached rootfs {tar_path} was damaged; removed it, run again")


def default_mirror() -> str:
    """The first Debian archive URI apt is configured with here, else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list")]
    parts = Path("/etc/apt/sources.list.d")
    if parts.is_dir():
        sources += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for src in sources:
        try:
            text = src.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if src.suffix == ".sources" and words[:1] == ["URIs:"]:
                uris = words[1:]
            elif words[:1] == ["deb"]:
                uris = [w for w in words[1:] if not w.startswith("[")][:1]
            else:
                continue
            for uri in uris:
                if uri.startswith(("http://", "https://")) and "security" not in uri:
                    return uri.rstrip("/")
    return DEFAULT_MIRROR


def _debootstrap(suite: str, mirror: str, cache_dir: Path, tar_path: Path, meta_path: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise BootstrapError("debootstrap not found: install Debian's debootstrap package")
    _need_root("debootstrap")
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache_dir))
    rootfs = work / "rootfs"
    try:
        _run_debootstrap(["debootstrap", "--variant=minbase", suite, str(rootfs), mirror], work)
        _unmount_below(work)
        epoch = _source_date_epoch() or _release_epoch(rootfs)
        _tidy(rootfs)
        tmp = work / "layer.tar"
        with open(tmp, "wb") as out:
            diff_id = write_layer_tar(rootfs, out, mtime=epoch)
            out.flush()
            os.fsync(out.fileno())
        meta_tmp = work / "meta.json"
        meta = {"diff_id": diff_id, "epoch": epoch, "suite": suite, "mirror": mirror}
        meta_tmp.write_text(json.dumps(meta))
        os.rename(tmp, tar_path)
        os.rename(meta_tmp, meta_path)  # last: the pair is complete only when the metadata exists
    finally:
        _unmount_below(work)  # never remove a tree with /proc or /sys still mounted in it
        shutil.rmtree(work, ignore_errors=True)


def _run_debootstrap(argv: list[str], work: Path) -> None:
    log = work / "debootstrap.log"
    with open(log, "wb") as out:
        # Its own session: on failure or Ctrl-C we stop exactly its process group, and only that.
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            rc = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise BootstrapError(f"debootstrap failed (exit {rc}): {' | '.join(tail)}")


def _unmount_below(path: Path) -> None:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].encode().decode("unicode_escape") for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _release_epoch(rootfs: Path) -> int:
    """The Date of the suite's Release file debootstrap used: fixed for a given archive state."""
    lists = rootfs / "var/lib/apt/lists"
    for release in sorted(lists.glob("*Release")):
        for line in release.read_text(errors="replace").splitlines():
            if line.startswith("Date:"):
                return int(email.utils.parsedate_to_datetime(line[5:].strip()).timestamp())
    docs = rootfs / "usr/share/doc"
    return max((int(p.stat().st_mtime) for p in docs.glob("*/changelog.Debian.gz")), default=0)


def _tidy(rootfs: Path) -> None:
    """Drop what debootstrap leaves that is host-, time- or run-specific."""
    for pattern in ("var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/cache/apt/archives/partial/*",
                    "var/lib/apt/lists/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old",
                    "var/cache/ldconfig/aux-cache", "var/log/bootstrap.log", "dev/*", "tmp/*", "run/*/*"):
        for p in rootfs.glob(pattern):
            if p.name in ("lock", "partial") and p.parent.name in ("lists", "archives"):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    for log in (rootfs / "var/log").rglob("*"):
        if log.is_file() and not log.is_symlink():
            os.truncate(log, 0)  # keep the files (packages made them, with their modes), not the noise
    for name in ("etc/resolv.conf", "etc/hostname", "etc/machine-id"):
        p = rootfs / name
        if p.is_symlink():
            p.unlink()
        if p.exists() or name != "etc/machine-id":
            p.write_text("")  # the runtime provides these per container
            os.chmod(p, 0o644)


# ---- shared -------------------------------------------------------------------------------------

def _register(store: ImageStore, layer: Path, diff_id: str, epoch: int, tag: str, *, cmd: list[str],
              created_by: str) -> str:
    created = rfc3339(epoch * 1_000_000_000)
    config = serialize(new_config([diff_id], created=created, runtime={"Env": [DEFAULT_PATH], "Cmd": cmd},
                                  history=[{"created": created, "created_by": created_by}]))
    name = str(refs.parse_normalized(tag))
    with store.writing():
        with open(layer, "rb") as f:
            rec = store.ingest_layer(f, None, keep_blob=True, expected_blob=diff_id, media_type=mt.OCI_LAYER)
        manifest = manifest_for(config, [(mt.OCI_LAYER, rec.blob_digest or diff_id, rec.blob_size)])
        return store.add_image(config, [rec], manifest=manifest, manifest_media_type=mt.OCI_MANIFEST,
                               tags=[name])


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return int(value) if value.isdigit() else None


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise BootstrapError(f"{what} needs root: the image's files must be owned by root")
