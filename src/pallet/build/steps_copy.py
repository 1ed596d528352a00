"""COPY and ADD: files from the context, a stage, an image, a heredoc or a URL, written straight into
the step's filesystem (no container), as BuildKit copies them.

- Sources are context paths (`..` and a leading `/` cannot leave the context; wildcards per path
  component; .dockerignore applies), paths in a stage's or image's filesystem (`--from`), heredocs
  (`COPY <<EOF /file`), or, for ADD, http(s) URLs.
- A directory source copies its contents; a file goes to `dest` itself, or into it when `dest` ends
  with `/`, is an existing directory, or several sources are given. A source named directly that is a
  symlink is followed; symlinks inside a copied directory are copied as links.
- Files keep their mode and mtime; from the context they belong to root, from a stage or image they
  keep their owner; `--chown=user[:group]` is resolved in the destination's /etc/passwd and
  /etc/group (a bare UID also becomes the GID), `--chmod` (octal) sets every copied entry's mode.
  Directories made for the destination are 0755, owned by the --chown user.
- ADD extracts a local tar archive (plain, gzip, bzip2, xz, zstd: sniffed, not by extension) into
  `dest` unless `--unpack=false`; URLs are downloaded (mode 0600, mtime from Last-Modified), never
  extracted, and checked against `--checksum`.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pallet.build.context import hash_sources, resolve_sources
from pallet.build.copy_owner import parse_chmod, resolve_chown
from pallet.build.ignore import DockerIgnore
from pallet.build.instructions import Add, Copy
from pallet.build.session import BuildSession, StepFailed
from pallet.errors import NotFound

__all__ = ["CopyInputs", "copy_inputs", "execute_copy"]

_ARCHIVE_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


@dataclass
class CopyInputs:
    """What a COPY/ADD reads, resolved before its cache key is computed."""

    key: list[Any]
    downloads: dict[str, Path] = field(default_factory=dict)  # URL -> downloaded file
    temp: Path | None = None

    def close(self) -> None:
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            self.temp = None


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def is_git(source: str) -> bool:
    return source.startswith(("git@", "git://")) or (is_url(source) and source.split("#")[0].endswith(".git"))


def copy_inputs(session: BuildSession, instr: Copy | Add, from_key: str | None) -> CopyInputs:
    """Hash what the step reads (context files, URL contents) into its key inputs."""
    if any(is_git(s) for s in instr.sources):
        raise StepFailed("ADD of a git repository is not supported by pallet", line=instr.line)
    urls = [s for s in instr.sources if is_url(s)]
    local = [s for s in instr.sources if not is_url(s)]
    if urls and isinstance(instr, Copy):
        raise StepFailed("source can't be a URL for COPY", line=instr.line)
    if isinstance(instr, Add) and instr.checksum and (len(instr.sources) != 1 or not urls):
        raise StepFailed("checksum requires HTTP(S) or Git sources" if not urls else
                         "checksum can't be specified for multiple sources", line=instr.line)
    key: list[Any] = [instr.keyword, local, [[c.path, c.data] for c in instr.contents], instr.dest,
                      instr.chown, instr.chmod, instr.excludes]
    if isinstance(instr, Add):
        key.append(instr.unpack)
    inputs = CopyInputs(key)
    try:
        if from_key is not None:
            key.append(["from", from_key])
        elif local:
            try:
                digest = hash_sources(session.context.dir, local, session.context.ignore, include_owner=False)
            except NotFound as e:
                raise StepFailed(f"failed to compute cache key: failed to calculate checksum: {e}",
                                 line=instr.line) from None
            key.append(["context", digest])
        if urls:
            inputs.temp = Path(tempfile.mkdtemp(prefix="build-add-", dir=session.store.paths.tmp))
            for i, url in enumerate(urls):
                path, digest = _download(url, inputs.temp / str(i), instr.line)
                if isinstance(instr, Add) and instr.checksum and instr.checksum != digest:
                    raise StepFailed(f"digest mismatch for {url}: {digest} != {instr.checksum}",
                                     line=instr.line)
                inputs.downloads[url] = path
                key.append(["url", url, digest])
    except BaseException:
        inputs.close()
        raise
    return inputs


def _download(url: str, directory: Path, line: int) -> tuple[Path, str]:
    import email.utils
    import urllib.error
    import urllib.parse
    import urllib.request

    directory.mkdir()
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "__unnamed__"
    if name in (".", ".."):
        name = "__unnamed__"
    path = directory / name
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:  # noqa: S310
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            modified = response.headers.get("Last-Modified")
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise StepFailed(f"failed to load {url}: {getattr(e, 'reason', e)}", line=line) from None
    os.chmod(path, 0o600)
    if modified:
        try:
            stamp = email.utils.parsedate_to_datetime(modified).timestamp()
            os.utime(path, (stamp, stamp))
        except (TypeError, ValueError):
            pass
    return path, "sha256:" + digest.hexdigest()


# ---- execution --------------------------------------------------------------------------------

@dataclass
class _Writer:
    """Copies entries into the rootfs with the step's ownership and mode rules."""

    root: Path
    owner: tuple[int, int] | None  # --chown
    keep_owner: bool  # from a stage or image: their owners stay
    chmod: int | None
    excludes: DockerIgnore | None = None

    def ids(self, st: os.stat_result) -> tuple[int, int]:
        if self.owner is not None:
            return self.owner
        return (st.st_uid, st.st_gid) if self.keep_owner else (0, 0)

    def mkdirs(self, path: str) -> None:
        """mkdir -p inside the rootfs, symlinks resolved inside it; new dirs 0755, --chown's owner."""
        from pallet.runtime.mounts import secure_join

        base = str(self.root)
        resolved = secure_join(base, path)
        rel = resolved[len(base):].strip("/")
        cur = base
        for part in rel.split("/") if rel else []:
            cur = f"{cur}/{part}"
            if os.path.isdir(cur) and not os.path.islink(cur):
                continue
            if os.path.lexists(cur):
                os.unlink(cur)
            os.mkdir(cur, 0o755)
            uid, gid = self.owner or (0, 0)
            os.chown(cur, uid, gid)
            os.chmod(cur, 0o755)

    def entry(self, src: str, dst: str, st: os.stat_result) -> None:
        """One non-directory entry (file, symlink, device, fifo) at host path dst."""
        if os.path.lexists(dst):
            if os.path.isdir(dst) and not os.path.islink(dst):
                shutil.rmtree(dst)
            else:
                os.unlink(dst)
        mode = stat.S_IMODE(st.st_mode) if self.chmod is None else self.chmod
        uid, gid = self.ids(st)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
            os.chown(dst, uid, gid, follow_symlinks=False)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(src, dst, follow_symlinks=False)
            os.chown(dst, uid, gid)
            os.chmod(dst, mode)  # after chown, which clears setuid bits
        elif stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            os.mknod(dst, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
            os.chown(dst, uid, gid)
            os.chmod(dst, mode)
        else:
            return  # sockets are not copied
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def directory_meta(self, dst: str, st: os.stat_result) -> None:
        uid, gid = self.ids(st)
        os.chown(dst, uid, gid)
        os.chmod(dst, stat.S_IMODE(st.st_mode) if self.chmod is None else self.chmod)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))

    def tree(self, entries: Iterator[tuple[str, str, os.stat_result]], dst_dir: str) -> None:
        """Entries (path relative to the source dir, host path, lstat; parents first) into dst_dir.
        A directory that exists in the destination as a symlink to a directory is followed (inside
        the rootfs), as BuildKit's copy does on a merged-/usr image."""
        from pallet.runtime.mounts import secure_join

        base = str(self.root)
        real_dirs = {"": dst_dir}
        dir_times: list[tuple[str, os.stat_result]] = []
        for rel, src, st in entries:
            if self.excludes is not None and self.excludes.matches(rel):
                continue
            parent_rel, _, name = rel.rpartition("/")
            parent = real_dirs.get(parent_rel)
            if parent is None:
                continue  # below an excluded directory
            dst = os.path.join(parent, name)
            if not stat.S_ISDIR(st.st_mode):
                self.entry(src, dst, st)
                continue
            if os.path.islink(dst):
                target = secure_join(base, dst[len(base):])
                if os.path.isdir(target):
                    real_dirs[rel] = target
                    continue
                os.unlink(dst)
            elif os.path.lexists(dst) and not os.path.isdir(dst):
                os.unlink(dst)
            if not os.path.lexists(dst):
                os.mkdir(dst, 0o700)
            real_dirs[rel] = dst
            dir_times.append((dst, st))
        for dst, st in reversed(dir_times):  # creating children bumped the times: set them last
            self.directory_meta(dst, st)


def _walk_plain(top: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """A stage's or image's directory, parents before children, by name."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        names = sorted(os.listdir(os.path.join(top, rel_dir) if rel_dir else top), reverse=True)
        subdirs = []
        for name in reversed(names):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            path = os.path.join(top, rel)
            st = os.lstat(path)
            yield rel, path, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(rel)
        stack.extend(reversed(subdirs))


def _walk_context(session: BuildSession, top_rel: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """A context directory with .dockerignore applied, paths relative to it."""
    cut = len(top_rel) + 1 if top_rel else 0
    for entry in session.context.ignore.walk(session.context.dir, top_rel):
        yield entry.path[cut:], entry.abspath, entry.stat


def _dest_path(root: Path, workdir: str, dest: str) -> tuple[str, bool]:
    """The destination inside the rootfs (absolute, in container terms) and whether it names a dir."""
    path = dest if dest.startswith("/") else posixpath.join(workdir or "/", dest)
    as_dir = dest.endswith("/") or dest in (".", "") or dest.endswith("/.")
    return "/" + posixpath.normpath(path).lstrip("/"), as_dir


def _host(root: Path, container_path: str) -> str:
    from pallet.runtime.mounts import secure_join

    return secure_join(str(root), container_path)


def execute_copy(session: BuildSession, merged: Path, instr: Copy | Add, workdir: str, inputs: CopyInputs,
                 from_root: Path | None) -> None:
    """Copy the sources into the mounted step filesystem `merged`."""
    try:
        writer = _Writer(merged, resolve_chown(merged, instr.chown), from_root is not None,
                         parse_chmod(instr.chmod), DockerIgnore(instr.excludes) if instr.excludes else None)
    except StepFailed as e:
        raise StepFailed(str(e), line=instr.line) from None
    dest, dest_is_dir = _dest_path(merged, workdir, instr.dest)
    items = _sources(session, instr, from_root, inputs)
    parents = isinstance(instr, Copy) and instr.parents
    if len(items) > 1 or (len(items) == 1 and items[0].entries is not None) or parents:
        dest_is_dir = True
    if not dest_is_dir and os.path.isdir(_host(merged, dest)):
        dest_is_dir = True
    unpack = isinstance(instr, Add) and instr.unpack is not False
    downloaded = {str(p) for p in inputs.downloads.values()}
    for item in items:
        if parents and item.keep:
            writer.mkdirs(posixpath.join(dest, posixpath.dirname(item.keep)))
            if item.entries is not None:
                writer.mkdirs(posixpath.join(dest, item.keep))
                writer.tree(item.entries, _host(merged, posixpath.join(dest, item.keep)))
                continue
            writer.entry(item.path, _host(merged, posixpath.join(dest, item.keep)), os.stat(item.path))
            continue
        if item.entries is not None:
            writer.mkdirs(dest)
            writer.tree(item.entries, _host(merged, dest))
            continue
        if unpack and item.path not in downloaded and _is_archive(item.path):
            writer.mkdirs(dest)
            _extract(item.path, Path(_host(merged, dest)), writer)
            continue
        target = posixpath.join(dest, item.name) if dest_is_dir else dest
        writer.mkdirs(posixpath.dirname(target) or "/")
        writer.entry(item.path, _host(merged, target), os.stat(item.path))


@dataclass
class _Source:
    path: str  # host path of the file or directory
    name: str  # its base name (for a destination directory)
    entries: Iterator[tuple[str, str, os.stat_result]] | None = None  # a directory's contents
    keep: str = ""  # COPY --parents: the path kept under the destination


def _sources(session: BuildSession, instr: Copy | Add, from_root: Path | None,
             inputs: CopyInputs) -> list[_Source]:
    """Every selected source, in order: files, directories (with their walk), downloads, heredocs."""
    from pallet.runtime.mounts import secure_join

    out: list[_Source] = []
    root = from_root if from_root is not None else session.context.dir
    ignore = session.context.ignore if from_root is None else DockerIgnore()
    for source in instr.sources:
        if is_url(source):
            download = inputs.downloads[source]
            out.append(_Source(str(download), download.name))
            continue
        try:
            matches = resolve_sources(root, source, ignore) if from_root is None else \
                _resolve_in_root(str(root), source)
        except NotFound as e:
            raise StepFailed(f"failed to compute cache key: failed to calculate checksum: {e}",
                             line=instr.line) from None
        for rel in matches:
            path: str
            if from_root is not None:
                path = secure_join(str(root), rel)  # symlinks resolve inside the image's filesystem
            else:
                path = os.path.realpath(os.path.join(root, rel)) if rel else str(root)
            if not os.path.lexists(path):
                raise StepFailed(f'failed to compute cache key: failed to calculate checksum: "/{rel}": '
                                 "not found", line=instr.line)
            name = posixpath.basename(rel) or "/"
            keep = _kept_path(source, rel)
            if not os.path.isdir(path):
                out.append(_Source(path, name, keep=keep))
            elif from_root is not None:
                out.append(_Source(path, name, _walk_plain(path), keep=keep))
            else:
                real_rel = os.path.relpath(path, os.path.realpath(root))
                walk = _walk_context(session, "" if real_rel == "." else real_rel)
                out.append(_Source(path, name, walk, keep=keep))
    if instr.contents:
        if inputs.temp is None:
            inputs.temp = Path(tempfile.mkdtemp(prefix="build-heredoc-", dir=session.store.paths.tmp))
        for i, doc in enumerate(instr.contents):
            sub = inputs.temp / f"doc-{i}"
            sub.mkdir()
            doc_file = sub / posixpath.basename(doc.path)
            doc_file.write_text(doc.data, encoding="utf-8", errors="surrogateescape")
            os.chmod(doc_file, 0o644)
            out.append(_Source(str(doc_file), doc_file.name))
    return out


def _kept_path(source: str, rel: str) -> str:
    """COPY --parents: what of `rel` stays under the destination (below a `/./` pivot, if any)."""
    from pallet.build.gocompat import clean_path

    head, pivot, _ = source.partition("/./")
    if not pivot:
        return rel
    prefix = clean_path("/" + head).strip("/")
    return rel[len(prefix) + 1:] if prefix and rel.startswith(prefix + "/") else rel


def _resolve_in_root(root: str, pattern: str) -> list[str]:
    """Paths a `--from` source names in a stage's or image's filesystem, symlinks (absolute ones too)
    resolved inside it, wildcards matched one component at a time."""
    from pallet.build.gocompat import clean_path
    from pallet.build.ignore import glob_component
    from pallet.runtime.mounts import secure_join

    rel = clean_path("/" + pattern).lstrip("/")
    matches = [""]
    for part in rel.split("/") if rel else []:
        if not any(ch in part for ch in "*?[\\"):
            matches = [f"{m}/{part}" if m else part for m in matches
                       if os.path.lexists(secure_join(root, f"{m}/{part}"))]
            continue
        regex = glob_component(part)
        found = []
        for m in matches:
            directory = secure_join(root, m)
            if os.path.isdir(directory):
                found += [f"{m}/{name}" if m else name for name in sorted(os.listdir(directory))
                          if regex.match(name)]
        matches = found
    if not matches:
        raise NotFound(f'"/{rel}": not found')
    return matches


def _is_archive(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    if any(head.startswith(m) for m in _ARCHIVE_MAGIC):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def _extract(path: str, dest: Path, writer: _Writer) -> None:
    """Unpack a (compressed) tar into dest with the layer unpacker's safety rules."""
    from pallet.images.tarsafe import HashingSource, LayerError, SafeTree, TarReader, apply_entry

    with open(path, "rb") as raw:
        stream: Any = raw
        head = raw.read(6)
        raw.seek(0)
        if head.startswith(b"BZh"):
            import bz2

            stream = bz2.BZ2File(raw)  # noqa: SIM115 - closed with `raw`
        elif head.startswith(b"\xfd7zXZ\x00"):
            import lzma

            stream = lzma.LZMAFile(raw)  # noqa: SIM115 - closed with `raw`
        else:
            from pallet.images.layers import open_decompressed

            stream = open_decompressed(raw)
        try:
            with SafeTree(dest) as tree, HashingSource(stream) as source:
                reader = TarReader(source)
                while (entry := reader.next()) is not None:
                    tree.trim()
                    if writer.owner is not None:
                        entry.uid, entry.gid = writer.owner
                    if writer.chmod is not None and entry.kind in (b"0", b"5"):
                        entry.mode = writer.chmod
                    apply_entry(tree, reader, entry)
                tree.finish()
        except (LayerError, EOFError, OSError) as e:
            raise StepFailed(f"failed to extract {os.path.basename(path)}: {e}") from None
