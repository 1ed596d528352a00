"""Docker's tabwriter: Go's text/tabwriter with minwidth 10, tabwidth 1, padding 3, ' '.

``unicodedata`` is imported lazily, only for non-ASCII cells.
"""

from __future__ import annotations

import re

__all__ = ["tabwrite", "tabwrite_text"]


_MINWIDTH = 10
_PADDING = 3
_CELL_SPLIT_RE = re.compile(r"([\t\v\n\f])")

_Cell = tuple[str, int]  # (text, display width)


def _display_width(s: str) -> int:
    """go-runewidth's StringWidth: East Asian wide = 2, combining/control = 0."""
    if s.isascii() and s.isprintable():
        return len(s)
    import unicodedata

    width = 0
    for ch in s:
        if unicodedata.category(ch) in ("Mn", "Me", "Cf", "Cc", "Cs"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _write_lines(lines: list[list[_Cell]], widths: list[int], out: list[str], line0: int, line1: int) -> None:
    for i in range(line0, line1):
        for j, (text, width) in enumerate(lines[i]):
            out.append(text)
            if j < len(widths):
                out.append(" " * (widths[j] - width))
        if i + 1 < len(lines):
            out.append("\n")


def _format_block(
    lines: list[list[_Cell]], widths: list[int], out: list[str], line0: int, line1: int
) -> None:
    """tabwriter's format(): a column is a run of consecutive lines having a cell at that index."""
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        _write_lines(lines, widths, out, line0, this)
        line0 = this
        width = _MINWIDTH
        while this < line1 and column < len(lines[this]) - 1:
            width = max(width, lines[this][column][1] + _PADDING)
            this += 1
        widths.append(width)
        _format_block(lines, widths, out, line0, this)
        widths.pop()
        line0 = this
    _write_lines(lines, widths, out, line0, line1)


def _flush(lines: list[list[_Cell]], out: list[str]) -> None:
    _format_block(lines, [], out, 0, len(lines))


def tabwrite_text(text: str) -> str:
    """Align tab-terminated cells of ``text`` exactly as Docker's tabwriter does."""
    out: list[str] = []
    lines: list[list[_Cell]] = [[]]
    parts = _CELL_SPLIT_RE.split(text)
    for i in range(1, len(parts), 2):
        cell, delim = parts[i - 1], parts[i]
        lines[-1].append((cell, _display_width(cell)))
        if delim in "\n\f":
            single = len(lines[-1]) == 1
            lines.append([])
            # A one-cell line cannot affect later columns, so Go flushes there.
            if delim == "\f" or single:
                _flush(lines, out)
                lines = [[]]
    if parts[-1]:
        lines[-1].append((parts[-1], _display_width(parts[-1])))
    _flush(lines, out)
    return "".join(out)


def tabwrite(lines: list[list[str]]) -> str:
    """Align rows of cells (each row written as tab-separated, newline-terminated text)."""
    return tabwrite_text("".join("\t".join(cells) + "\n" for cells in lines))
