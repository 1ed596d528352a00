"""The template parse tree and parser (text/template/parse/node.go, parse.go).

``Parser(src, func_names).parse()`` returns the top-level node list; errors
are raised as TemplateError with Go's messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn

from pallet.cli.gotemplate.lexer import (
    ASSIGN,
    BOOL,
    CHAR,
    CHAR_CONST,
    DECLARE,
    EOF,
    FIELD,
    IDENT,
    LDELIM,
    LPAREN,
    NUMBER,
    PIPE,
    RAW,
    RDELIM,
    RPAREN,
    SPACE_TOK,
    STRING,
    TEXT,
    VAR,
    Lexer,
    Tok,
    line_of,
    parse_number,
    unquote,
)
from pallet.cli.gotemplate.values import TemplateError, go_quote

# =============================================================================
# Parse tree
# =============================================================================


class Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def __str__(self) -> str:
        return ""


class TextNode(Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text


class DotNode(Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "."


class NilNode(Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "nil"


class ConstNode(Node):
    """Bool, number or string constant: ``value`` is the Python value, ``text`` the source."""

    __slots__ = ("value", "text")

    def __init__(self, pos: int, value: Any, text: str) -> None:
        super().__init__(pos)
        self.value = value
        self.text = text

    def __str__(self) -> str:
        return self.text


class FieldNode(Node):
    __slots__ = ("names",)

    def __init__(self, pos: int, names: list[str]) -> None:
        super().__init__(pos)
        self.names = names

    def __str__(self) -> str:
        return "".join("." + n for n in self.names)


class VariableNode(Node):
    """``$x.A.B``: names[0] is the variable, the rest a field chain."""

    __slots__ = ("names",)

    def __init__(self, pos: int, names: list[str]) -> None:
        super().__init__(pos)
        self.names = names

    def __str__(self) -> str:
        return self.names[0] + "".join("." + n for n in self.names[1:])


class IdentifierNode(Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name

    def __str__(self) -> str:
        return self.name


class CommandNode(Node):
    __slots__ = ("args",)

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.args: list[Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


class PipeNode(Node):
    __slots__ = ("decls", "is_assign", "cmds")

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.decls: list[str] = []
        self.is_assign = False
        self.cmds: list[CommandNode] = []

    def __str__(self) -> str:
        text = " | ".join(str(c) for c in self.cmds)
        if self.decls:
            return ", ".join(self.decls) + (" = " if self.is_assign else " := ") + text
        return text


class ChainNode(Node):
    """``(pipeline).Field.Field``."""

    __slots__ = ("node", "names")

    def __init__(self, pos: int, node: Node, names: list[str]) -> None:
        super().__init__(pos)
        self.node = node
        self.names = names

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return inner + "".join("." + n for n in self.names)


class ActionNode(Node):
    __slots__ = ("pipe",)

    def __init__(self, pos: int, pipe: PipeNode) -> None:
        super().__init__(pos)
        self.pipe = pipe


class ControlNode(Node):
    """if / with / range."""

    __slots__ = ("kind", "pipe", "body", "else_body")

    def __init__(self, kind: str, pipe: PipeNode, body: list[Node], else_body: list[Node] | None) -> None:
        super().__init__(pipe.pos)
        self.kind = kind
        self.pipe = pipe
        self.body = body
        self.else_body = else_body


class BreakNode(Node):
    __slots__ = ()


class ContinueNode(Node):
    __slots__ = ()


class EndNode(Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{end}}"


class ElseNode(Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{else}}"


_OPERAND_START = {BOOL, CHAR_CONST, ".", FIELD, IDENT, NUMBER, "nil", RAW, STRING, VAR, LPAREN}


# =============================================================================
# Parser (text/template/parse/parse.go)
# =============================================================================


class Parser:
    def __init__(self, src: str, func_names: Iterable[str]) -> None:
        self.src = src
        self.toks = Lexer(src).run()
        self.i = 0
        self.funcs = frozenset(func_names)
        self.vars = ["$"]
        self.range_depth = 0

    # --- token helpers ---------------------------------------------------------
    def fail(self, msg: str, pos: int | None = None) -> NoReturn:
        if pos is None:
            pos = self.toks[max(self.i - 1, 0)].pos
        raise TemplateError(f"template: :{line_of(self.src, pos)}: {msg}")

    def next(self) -> Tok:
        tok = self.toks[self.i]
        if tok.kind != EOF:
            self.i += 1
        return tok

    def backup(self) -> None:
        self.i -= 1

    def peek(self) -> Tok:
        return self.toks[self.i]

    def next_non_space(self) -> Tok:
        tok = self.next()
        while tok.kind == SPACE_TOK:
            tok = self.next()
        return tok

    def peek_non_space(self) -> Tok:
        tok = self.next_non_space()
        if tok.kind != EOF:
            self.backup()
        return tok

    def expect(self, kind: str, context: str) -> Tok:
        tok = self.next_non_space()
        if tok.kind != kind:
            self.unexpected(tok, context)
        return tok

    def unexpected(self, tok: Tok, context: str) -> NoReturn:
        self.fail(f"unexpected {tok.describe()} in {context}", tok.pos)

    # --- structure ---------------------------------------------------------------
    def parse(self) -> list[Node]:
        nodes: list[Node] = []
        while self.peek().kind != EOF:
            node = self.text_or_action()
            if isinstance(node, (EndNode, ElseNode)):
                self.fail(f"unexpected {node}", node.pos)
            nodes.append(node)
        return nodes

    def text_or_action(self) -> Node:
        tok = self.next_non_space()
        if tok.kind == TEXT:
            return TextNode(tok.pos, tok.val)
        if tok.kind == LDELIM:
            return self.action()
        self.unexpected(tok, "input")

    def item_list(self) -> tuple[list[Node], Node]:
        nodes: list[Node] = []
        while self.peek_non_space().kind != EOF:
            node = self.text_or_action()
            if isinstance(node, (EndNode, ElseNode)):
                return nodes, node
            nodes.append(node)
        self.fail("unexpected EOF")

    def action(self) -> Node:
        tok = self.next_non_space()
        kind = tok.kind
        if kind in ("block", "define", "template"):
            self.fail(f"{{{{{kind}}}}} is not supported", tok.pos)
        if kind in ("break", "continue"):
            self.expect(RDELIM, f"{{{{{kind}}}}}")
            if not self.range_depth:
                self.fail(f"{{{{{kind}}}}} outside {{{{range}}}}", tok.pos)
            return BreakNode(tok.pos) if kind == "break" else ContinueNode(tok.pos)
        if kind == "else":
            nxt = self.peek_non_space()
            if nxt.kind not in ("if", "with"):
                self.expect(RDELIM, "else")
            return ElseNode(tok.pos)
        if kind == "end":
            self.expect(RDELIM, "end")
            return EndNode(tok.pos)
        if kind in ("if", "range", "with"):
            return self.control(kind)
        self.backup()
        return ActionNode(tok.pos, self.pipeline("command", RDELIM))

    def control(self, context: str) -> ControlNode:
        mark = len(self.vars)
        pipe = self.pipeline(context, RDELIM)
        self.range_depth += context == "range"
        body, nxt = self.item_list()
        self.range_depth -= context == "range"
        else_body: list[Node] | None = None
        if isinstance(nxt, ElseNode):
            if context in ("if", "with") and self.peek().kind == context:
                self.next()  # "else if" / "else with" share the outer {{end}}
                else_body = [self.control(context)]
            else:
                else_body, nxt = self.item_list()
                if not isinstance(nxt, EndNode):
                    self.fail(f"expected end; found {nxt}", nxt.pos)
        del self.vars[mark:]
        return ControlNode(context, pipe, body, else_body)

    # --- pipelines -------------------------------------------------------------
    def pipeline(self, context: str, end: str) -> PipeNode:
        pipe = PipeNode(self.peek_non_space().pos)
        self.declarations(pipe, context)
        while True:
            tok = self.next_non_space()
            if tok.kind == end:
                self.check_pipeline(pipe, context)
                return pipe
            if tok.kind not in _OPERAND_START:
                self.unexpected(tok, context)
            self.backup()
            pipe.cmds.append(self.command())

    def declarations(self, pipe: PipeNode, context: str) -> None:
        while self.peek_non_space().kind == VAR:
            var_index = self.i
            var = self.next()
            nxt = self.peek_non_space()
            if nxt.kind in (ASSIGN, DECLARE):
                self.next_non_space()
                pipe.is_assign = nxt.kind == ASSIGN
                pipe.decls.append(var.val)
                self.vars.append(var.val)
                return
            if nxt.kind == CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decls.append(var.val)
                self.vars.append(var.val)
                if context == "range" and len(pipe.decls) < 2:
                    if self.peek_non_space().kind in (VAR, RDELIM, RPAREN):
                        continue
                    self.fail("range can only initialize variables")
                self.fail(f"too many declarations in {context}")
            self.i = var_index  # "$x" is an operand, not a declaration
            return

    def check_pipeline(self, pipe: PipeNode, context: str) -> None:
        if not pipe.cmds:
            self.fail(f"missing value for {context}")
        for stage, cmd in enumerate(pipe.cmds[1:], start=2):
            if isinstance(cmd.args[0], (ConstNode, DotNode, NilNode)):
                self.fail(f"non executable command in pipeline stage {stage}")

    def command(self) -> CommandNode:
        cmd = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            tok = self.next()
            if tok.kind == SPACE_TOK:
                continue
            if tok.kind in (RDELIM, RPAREN):
                self.backup()
            elif tok.kind != PIPE:
                self.unexpected(tok, "operand")
            break
        if not cmd.args:
            self.fail("empty command")
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None or self.peek().kind != FIELD:
            return node
        pos = self.peek().pos
        names: list[str] = []
        while self.peek().kind == FIELD:
            names.append(self.next().val[1:])
        if isinstance(node, FieldNode):
            return FieldNode(node.pos, node.names + names)
        if isinstance(node, VariableNode):
            return VariableNode(node.pos, node.names + names)
        if isinstance(node, (ConstNode, NilNode, DotNode)):
            self.fail(f"unexpected . after term {go_quote(str(node))}")
        return ChainNode(pos, node, names)

    def term(self) -> Node | None:
        tok = self.next_non_space()
        kind = tok.kind
        if kind == IDENT:
            if tok.val not in self.funcs:
                self.fail(f"function {go_quote(tok.val)} not defined")
            return IdentifierNode(tok.pos, tok.val)
        if kind == ".":
            return DotNode(tok.pos)
        if kind == "nil":
            return NilNode(tok.pos)
        if kind == VAR:
            if tok.val not in self.vars:
                self.fail(f"undefined variable {go_quote(tok.val)}")
            return VariableNode(tok.pos, [tok.val])
        if kind == FIELD:
            return FieldNode(tok.pos, [tok.val[1:]])
        if kind == BOOL:
            return ConstNode(tok.pos, tok.val == "true", tok.val)
        if kind in (NUMBER, CHAR_CONST):
            return ConstNode(tok.pos, self.number(tok), tok.val)
        if kind == LPAREN:
            return self.pipeline("parenthesized pipeline", RPAREN)
        if kind in (STRING, RAW):
            return ConstNode(tok.pos, self.string(tok), tok.val)
        self.backup()
        return None

    def string(self, tok: Tok) -> str:
        if tok.kind == RAW:
            return tok.val[1:-1].replace("\r", "")
        try:
            return unquote(tok.val[1:-1], '"')
        except ValueError:
            self.fail("invalid syntax", tok.pos)

    def number(self, tok: Tok) -> int | float:
        text = tok.val
        try:
            if tok.kind == CHAR_CONST:
                value = unquote(text[1:-1], "'")
                if len(value) != 1:
                    raise ValueError
                return ord(value)
            return parse_number(text)
        except ValueError:
            what = "malformed character constant" if tok.kind == CHAR_CONST else "illegal number syntax"
            self.fail(f"{what}: {go_quote(text) if tok.kind == NUMBER else text}", tok.pos)
