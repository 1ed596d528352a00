"""A Go text/template interpreter for Docker's ``--format`` (see pallet.cli.format).

Modules, by job: ``values`` (Go value semantics and %v printing), ``printf``
(fmt.Sprintf), ``jsonenc`` (Docker's json function), ``lexer`` (tokens and
literals), ``parser`` (parse tree), ``funcs`` (template functions), ``execute``
(the executor) and ``template`` (the parsed, reusable Template).
"""

from __future__ import annotations

from pallet.cli.gotemplate.template import Template, parse_template
from pallet.cli.gotemplate.values import TemplateError

__all__ = ["Template", "TemplateError", "parse_template"]
