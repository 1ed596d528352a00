"""Image commands: images, tag, rmi, history, image inspect, image prune, load, save, import,
image bootstrap."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, BinaryIO

from pallet.cli.args import Parser, confirm, out, requires
from pallet.cli.units import ago, human_size
from pallet.engine import images as verbs
from pallet.engine.core import Engine
from pallet.errors import InvalidArgument, PalletError

IMAGES_TABLE = [
    ("REPOSITORY", "{{.Repository}}"),
    ("TAG", "{{.Tag}}"),
    ("IMAGE ID", "{{.ID}}"),
    ("CREATED", "{{.CreatedSince}}"),
    ("SIZE", "{{.Size}}"),
]
IMAGES_TABLE_DIGESTS = IMAGES_TABLE[:2] + [("DIGEST", "{{.Digest}}")] + IMAGES_TABLE[2:]
IMAGE_HEADERS = {
    "ID": "IMAGE ID",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
}


def images(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] [REPOSITORY[:TAG]]", "List images")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--digests", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("repository", nargs="?")
    ns = p.parse(args)
    from pallet.engine.filters import match_label, parse_filters

    filters = parse_filters(ns.filter, {"dangling", "reference", "label", "before", "since"})
    if ns.repository:
        filters.setdefault("reference", []).append(ns.repository)
    engine = Engine()
    rows = verbs.list_images(engine, all_images=ns.all)
    rows = [r for r in rows if _image_matches(engine, r, filters, match_label)]
    if ns.quiet:
        seen: list[str] = []
        for r in rows:
            iid = r.record.id if ns.no_trunc else r.record.short_id
            if iid not in seen:
                seen.append(iid)
        out("".join(i + "\n" for i in seen))
        return 0
    data = [_image_fields(r, ns.no_trunc) for r in rows]
    from pallet.cli.format import format_rows

    table = IMAGES_TABLE_DIGESTS if ns.digests else IMAGES_TABLE
    out(format_rows(ns.format, data, table, IMAGE_HEADERS))
    return 0


def _image_fields(r: verbs.ImageRow, no_trunc: bool) -> dict[str, Any]:
    return {
        "Containers": str(r.containers) if r.containers else "N/A",
        "CreatedAt": r.record.created,
        "CreatedSince": ago(r.record.created),
        "Digest": r.digest,
        "ID": r.record.id if no_trunc else r.record.short_id,
        "Repository": r.repository,
        "SharedSize": "N/A",
        "Size": human_size(r.record.size),
        "Tag": r.tag,
        "UniqueSize": "N/A",
        "VirtualSize": human_size(r.record.size),
    }


def _image_matches(
    engine: Engine, r: verbs.ImageRow, filters: dict[str, list[str]], match_label: Any
) -> bool:
    from fnmatch import fnmatchcase

    if "dangling" in filters:
        from pallet.engine.filters import match_bool

        want = match_bool(filters["dangling"][-1])
        if want != (r.repository == "<none>" and r.tag == "<none>"):
            return False
    if "reference" in filters:
        name = r.repository + (":" + r.tag if r.tag != "<none>" else "")
        if not any(fnmatchcase(name, pat) or fnmatchcase(r.repository, pat) for pat in filters["reference"]):
            return False
    if "label" in filters:
        labels = (engine.images.config(r.record.id).get("config") or {}).get("Labels") or {}
        if not all(match_label(labels, expr) for expr in filters["label"]):
            return False
    for key in ("before", "since"):
        for val in filters.get(key, []):
            other = engine.images.resolve(val)
            if key == "before" and not r.record.created < other.created:
                return False
            if key == "since" and not r.record.created > other.created:
                return False
    return True


def tag(prog: str, args: list[str]) -> int:
    p = Parser(prog, "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    if len(ns.names) != 2:
        raise InvalidArgument(f"\"{prog}\" requires exactly 2 arguments.\nSee '{prog} --help'.")
    verbs.tag(Engine(), ns.names[0], ns.names[1])
    return 0


def rmi(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    p.add_argument("images", nargs="*")
    ns = p.parse(args)
    requires(ns.images, prog, "[OPTIONS] IMAGE [IMAGE...]")
    engine = Engine()
    code = 0
    for name in ns.images:
        try:
            out("".join(line + "\n" for line in verbs.remove(engine, name, force=ns.force)))
        except PalletError as e:
            sys.stderr.write(f"Error: {e}\n")
            code = 1
    return code


def history(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] IMAGE")
    p.add_argument("-H", "--human", default="true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format")
    p.add_argument("image", nargs="?")
    ns = p.parse(args)
    requires([ns.image] if ns.image else [], prog, "[OPTIONS] IMAGE")
    human = ns.human.lower() not in ("false", "0")
    entries = verbs.history(Engine(), ns.image)
    if ns.quiet:
        out(
            "".join(
                (e["Id"] if ns.no_trunc or e["Id"] == "<missing>" else e["Id"][7:19]) + "\n" for e in entries
            )
        )
        return 0
    rows = []
    for e in entries:
        created_by = e["CreatedBy"]
        if not ns.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append(
            {
                "ID": e["Id"] if ns.no_trunc or e["Id"] == "<missing>" else e["Id"][7:19],
                "CreatedSince": ago(e["Created"]) if human else e["Created"],
                "CreatedAt": e["Created"],
                "CreatedBy": created_by,
                "Size": human_size(e["Size"]) if human else str(e["Size"]),
                "Comment": e["Comment"],
            }
        )
    from pallet.cli.format import format_rows

    table = [
        ("IMAGE", "{{.ID}}"),
        ("CREATED", "{{.CreatedSince}}"),
        ("CREATED BY", "{{.CreatedBy}}"),
        ("SIZE", "{{.Size}}"),
        ("COMMENT", "{{.Comment}}"),
    ]
    out(
        format_rows(
            ns.format, rows, table, {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY"}
        )
    )
    return 0


def image_inspect(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("-f", "--format")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    requires(ns.names, prog, "[OPTIONS] IMAGE [IMAGE...]")
    engine = Engine()
    return print_inspect([lambda n=n: verbs.inspect_image(engine, n) for n in ns.names], ns.format)


def print_inspect(getters: list[Any], fmt: str | None) -> int:
    """Docker prints the objects it found, then one error line per name it did not: exit 1."""
    found: list[Any] = []
    errors: list[str] = []
    for get in getters:
        try:
            found.append(get())
        except PalletError as e:
            errors.append(str(e))
    if fmt:
        from pallet.cli.format import render

        out("".join(render(fmt, obj) + "\n" for obj in found))
    else:
        out(json.dumps(found, indent=4) + "\n")
    for message in errors:
        sys.stderr.write(f"Error: {message}\n")
    return 1 if errors else 0


def image_prune(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    ns = p.parse(args)
    if not ns.force:
        warning = (
            "WARNING! This will remove all images without at least one container associated to them."
            if ns.all
            else "WARNING! This will remove all dangling images."
        )
        if not confirm(warning):
            return 0
    lines, freed = verbs.prune(Engine(), all_images=ns.all)
    if lines:
        out("Deleted Images:\n" + "".join(line + "\n" for line in lines) + "\n")
    out(f"Total reclaimed space: {human_size(freed)}\n")
    return 0


def load(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")
    ns = p.parse(args)
    engine = Engine()
    if ns.input:
        path = Path(ns.input)
        if path.is_dir():
            from pallet.images import archive

            lines = archive.load_dir(engine.images, path)
        else:
            with _open_input(ns.input) as f:
                lines = verbs.load(engine, f)
    else:
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is empty")
        lines = verbs.load(engine, sys.stdin.buffer)
    out("".join(line + "\n" for line in lines))
    return 0


def _open_input(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as e:
        raise PalletError(f"open {path}: {e.strerror.lower() if e.strerror else e}") from None


def save(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("-o", "--output")
    p.add_argument("images", nargs="*")
    ns = p.parse(args)
    requires(ns.images, prog, "[OPTIONS] IMAGE [IMAGE...]")
    engine = Engine()
    if ns.output:
        _save_to_file(engine, ns.images, Path(ns.output))
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    verbs.save(engine, ns.images, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


def _save_to_file(engine: Engine, names: list[str], dest: Path) -> None:
    """Write beside the destination and rename, so a failed save never leaves half a tar."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=dest.parent if str(dest.parent) else ".", prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            verbs.save(engine, names, f)
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


def import_(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message")
    p.add_argument("--platform")
    p.add_argument("source", nargs="?")
    p.add_argument("reference", nargs="?")
    ns = p.parse(args)
    requires([ns.source] if ns.source else [], prog, "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]")
    engine = Engine()
    if ns.source == "-":
        image_id = verbs.import_rootfs(
            engine, sys.stdin.buffer, changes=ns.change, message=ns.message, tag=ns.reference
        )
    elif "://" in ns.source:
        raise InvalidArgument(f"importing from a URL is not supported here: {ns.source}")
    else:
        with _open_input(ns.source) as f:
            image_id = verbs.import_rootfs(engine, f, changes=ns.change, message=ns.message, tag=ns.reference)
    out(image_id + "\n")
    return 0


def bootstrap(prog: str, args: list[str]) -> int:
    p = Parser(
        prog,
        "[OPTIONS] busybox|debian[:SUITE]",
        "Build a base image from this machine's distribution packages (no registry needed)",
    )
    p.add_argument("-t", "--tag")
    p.add_argument("--cache-dir")
    p.add_argument("base", nargs="?")
    ns = p.parse(args)
    requires([ns.base] if ns.base else [], prog, "[OPTIONS] busybox|debian[:SUITE]")
    image_id = verbs.bootstrap(Engine(), ns.base, ns.tag, Path(ns.cache_dir) if ns.cache_dir else None)
    out(image_id + "\n")
    return 0
