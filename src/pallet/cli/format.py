"""Docker's ``--format``: a Go text/template interpreter plus Docker's table output.

Implements the subset of Go's text/template that Docker users rely on (fields,
pipelines, variables, if/else/with/range/break/continue, the builtin functions
and Docker's own json/split/join/title/lower/upper/pad/truncate) with Go's
printing rules, and Docker's formatter conventions: ``table`` prefixes, the
``json`` key, ``\\t``/``\\n`` escapes and the tabwriter with minwidth 10,
padding 3.

Values are plain Python data: dicts are treated like Go maps (a missing key
prints ``<no value>``), other objects like structs (attributes, zero-argument
methods are called).  ``None`` is Go's nil.

This module is the public façade: the template engine lives in
``pallet.cli.gotemplate``, the tabwriter in ``pallet.cli.tabwriter``; here are
``render`` and Docker's formatter (``format_rows``).

Only the standard library is used and json/unicodedata/urllib are imported
lazily: this module is on the CLI hot path.
"""

from __future__ import annotations

import re
from typing import Any

from pallet.cli.gotemplate import Template, TemplateError, parse_template
from pallet.cli.tabwriter import tabwrite, tabwrite_text

__all__ = [
    "Template",
    "TemplateError",
    "format_rows",
    "parse_template",
    "render",
    "tabwrite",
    "tabwrite_text",
]


def render(template: str, obj: Any) -> str:
    """Execute ``template`` on one object, as ``docker inspect --format`` does (no newline added)."""
    return parse_template(template).execute(obj)


# =============================================================================
# Docker's formatter.Context
# =============================================================================

_SIMPLE_FIELD_RE = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def _default_headers(default_table: list[tuple[str, str]]) -> dict[str, str]:
    """Field → header, learnt from default columns of the form ``{{.Field}}``."""
    headers: dict[str, str] = {}
    for header, template in default_table:
        m = _SIMPLE_FIELD_RE.fullmatch(template.strip())
        if m:
            headers[m.group(1)] = header
    return headers


def format_rows(
    fmt: str | None,
    rows: list[dict[str, Any]],
    default_table: list[tuple[str, str]],
    headers: dict[str, str] | None = None,
) -> str:
    """Render list-command output like Docker's formatter for ``--format``.

    ``None``/``""``/``"table"`` give the default table, ``"json"`` one JSON object
    per line, ``"table ..."`` a custom table with a header row (from ``headers``,
    the default table, or the upper-cased field name), anything else one line per
    row.  As in Docker, literal ``\\t`` and ``\\n`` in the format become tab and
    newline and surrounding spaces are trimmed.
    """
    if not fmt or fmt == "table":
        template = parse_template("\t".join(t for _, t in default_table))
        header_line = "\t".join(h for h, _ in default_table)
        return _table(template, header_line, rows)
    is_table = fmt.startswith("table")
    source = "{{json .}}" if fmt == "json" else (fmt[len("table") :] if is_table else fmt)
    source = source.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    template = parse_template(source)
    if not is_table:
        return "".join(template.execute(row) + "\n" for row in rows)
    header_map = {**_default_headers(default_table), **(headers or {})}
    return _table(template, template.execute_header(header_map), rows)


def _table(template: Template, header_line: str, rows: list[dict[str, Any]]) -> str:
    body = "".join(template.execute(row) + "\n" for row in rows)
    return tabwrite_text(header_line + "\n" + body)
