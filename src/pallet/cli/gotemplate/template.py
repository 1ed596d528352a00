"""A parsed, reusable template: parse once, execute per object."""

from __future__ import annotations

import functools
from typing import Any

from pallet.cli.gotemplate.execute import Break, Continue, HeaderContext, State
from pallet.cli.gotemplate.funcs import FUNCS, HEADER_FUNCS
from pallet.cli.gotemplate.parser import Parser
from pallet.cli.gotemplate.values import TemplateError


class Template:
    """A parsed template, reusable across objects (Docker executes one per row)."""

    __slots__ = ("source", "_nodes")

    def __init__(self, source: str) -> None:
        self.source = source
        self._nodes = Parser(source, FUNCS).parse()

    def execute(self, obj: Any) -> str:
        """Render for one object; raises TemplateError as Go's Execute would."""
        state = State(self, FUNCS, obj)
        state.walk(obj, self._nodes)
        return "".join(state.out)

    def execute_header(self, headers: dict[str, str]) -> str:
        """Render the header row like Docker: errors are ignored, partial output kept."""
        ctx = HeaderContext(headers)
        state = State(self, HEADER_FUNCS, ctx)
        try:
            state.walk(ctx, self._nodes)
        except (TemplateError, Break, Continue):
            pass
        return "".join(state.out)


@functools.lru_cache(maxsize=64)
def parse_template(source: str) -> Template:
    """Parse (and cache) a template; raises TemplateError with Go's message."""
    return Template(source)
