"""The template executor (text/template/exec.go): walks a parse tree against a value."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from pallet.cli.gotemplate.funcs import ArgError, Func
from pallet.cli.gotemplate.lexer import line_of
from pallet.cli.gotemplate.parser import (
    ActionNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ConstNode,
    ContinueNode,
    ControlNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    NilNode,
    Node,
    PipeNode,
    TextNode,
    VariableNode,
)
from pallet.cli.gotemplate.values import MISSING, NOFINAL, TemplateError, fmt_v, go_type, sorted_items, truth

if TYPE_CHECKING:
    from pallet.cli.gotemplate.template import Template


class Break(Exception):
    pass


class Continue(Exception):
    pass


class HeaderContext:
    """Stands in for Docker's FullHeader map when rendering a table's header row."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers

    def header(self, names: list[str]) -> str:
        dotted = ".".join(names)
        return self.headers.get(dotted) or self.headers.get(names[-1]) or names[-1].upper()

    def __str__(self) -> str:
        return fmt_v(self.headers)


class State:
    def __init__(self, template: Template, funcs: dict[str, Func], root: Any) -> None:
        self.template = template
        self.funcs = funcs
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.out: list[str] = []
        self.node: Node | None = None

    def fail(self, msg: str, node: Node | None = None) -> NoReturn:
        node = node or self.node
        src = self.template.source
        pos = node.pos if node else 0
        line_start = src.rfind("\n", 0, pos) + 1
        context = str(node) if node else ""
        raise TemplateError(
            f'template: :{line_of(src, pos)}:{pos - line_start}: executing "" at <{context}>: {msg}'
        )

    # --- walking -----------------------------------------------------------------
    def walk(self, dot: Any, nodes: list[Node]) -> None:
        for node in nodes:
            if isinstance(node, TextNode):
                self.out.append(node.text)
            elif isinstance(node, ActionNode):
                value = self.eval_pipeline(dot, node.pipe)
                if not node.pipe.decls:
                    self.out.append(fmt_v(value))
            elif isinstance(node, ControlNode):
                if node.kind == "range":
                    self.walk_range(dot, node)
                else:
                    self.walk_if_with(dot, node)
            elif isinstance(node, BreakNode):
                raise Break
            elif isinstance(node, ContinueNode):
                raise Continue

    def walk_if_with(self, dot: Any, node: ControlNode) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if truth(value):
                self.walk(value if node.kind == "with" else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: Any, node: ControlNode) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            self.node = node.pipe
            items = self.range_items(value)
            if not items:
                if node.else_body is not None:
                    self.walk(dot, node.else_body)
                return
            for key, elem in items:
                if self.one_iteration(node, key, elem):
                    break
        finally:
            del self.vars[mark:]

    def range_items(self, value: Any) -> list[tuple[Any, Any]]:
        if value is None or value is MISSING:
            return []  # a nil slice or map ranges over nothing
        if isinstance(value, dict):
            return sorted_items(value)
        if isinstance(value, (list, tuple)):
            return list(enumerate(value))
        if isinstance(value, int) and not isinstance(value, bool):
            return [(i, i) for i in range(value)]
        if isinstance(value, (str, bytes, bool, float)) or not isinstance(value, Iterable):
            self.fail(f"range can't iterate over {fmt_v(value)}")
        return list(enumerate(value))

    def one_iteration(self, node: ControlNode, key: Any, elem: Any) -> bool:
        """Run the body once; True when {{break}} ended the loop."""
        decls = node.pipe.decls
        if decls and node.pipe.is_assign:
            if len(decls) > 1:
                self.set_var(decls[0], key)
            self.set_var(decls[-1], elem)
        elif decls:
            self.vars[-1] = (self.vars[-1][0], elem)
            if len(decls) > 1:
                self.vars[-2] = (self.vars[-2][0], key)
        mark = len(self.vars)
        try:
            self.walk(elem, node.body)
        except Continue:
            pass
        except Break:
            return True
        finally:
            del self.vars[mark:]
        return False

    # --- variables ---------------------------------------------------------------
    def var_value(self, name: str) -> Any:
        for var, value in reversed(self.vars):
            if var == name:
                return value
        self.fail(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        self.fail(f"undefined variable: {name}")

    # --- evaluation ----------------------------------------------------------------
    def eval_pipeline(self, dot: Any, pipe: PipeNode) -> Any:
        self.node = pipe
        value: Any = NOFINAL
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for name in pipe.decls:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.vars.append((name, value))
        return value

    def not_a_function(self, args: list[Node], final: Any) -> None:
        if len(args) > 1 or final is not NOFINAL:
            self.fail(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        rest = cmd.args[1:]
        if isinstance(first, FieldNode):
            return self.eval_field_chain(dot, dot, first, first.names, rest, final)
        if isinstance(first, ChainNode):
            return self.eval_chain(dot, first, rest, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, rest, final)
        if isinstance(first, VariableNode):
            return self.eval_variable(dot, first, rest, final)
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, PipeNode):
            return self.eval_pipeline(dot, first)
        if isinstance(first, ConstNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        self.fail("nil is not a command")

    def eval_arg(self, dot: Any, node: Node) -> Any:
        self.node = node
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, NilNode):
            return None
        if isinstance(node, ConstNode):
            return node.value
        if isinstance(node, FieldNode):
            return self.eval_field_chain(dot, dot, node, node.names, [], NOFINAL)
        if isinstance(node, VariableNode):
            return self.eval_variable(dot, node, [], NOFINAL)
        if isinstance(node, PipeNode):
            return self.eval_pipeline(dot, node)
        if isinstance(node, IdentifierNode):
            return self.eval_function(dot, node, node, [], NOFINAL)
        if isinstance(node, ChainNode):
            return self.eval_chain(dot, node, [], NOFINAL)
        self.fail(f"can't handle {node} for arg")

    def eval_variable(self, dot: Any, node: VariableNode, args: list[Node], final: Any) -> Any:
        self.node = node
        value = self.var_value(node.names[0])
        if len(node.names) == 1:
            if args or final is not NOFINAL:
                self.fail(f"can't give argument to non-function {node}")
            return value
        return self.eval_field_chain(dot, value, node, node.names[1:], args, final)

    def eval_chain(self, dot: Any, node: ChainNode, args: list[Node], final: Any) -> Any:
        if isinstance(node.node, NilNode):
            self.fail(f"indirection through explicit nil in {node}", node)
        receiver = self.eval_arg(dot, node.node)
        return self.eval_field_chain(dot, receiver, node, node.names, args, final)

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: Node, names: list[str], args: list[Node], final: Any
    ) -> Any:
        self.node = node
        if isinstance(receiver, HeaderContext):
            return receiver.header(names)
        for name in names[:-1]:
            receiver = self.eval_field(dot, node, name, [], NOFINAL, receiver)
        return self.eval_field(dot, node, names[-1], args, final, receiver)

    def eval_field(self, dot: Any, node: Node, name: str, args: list[Node], final: Any, receiver: Any) -> Any:
        if receiver is MISSING:
            return MISSING
        if receiver is None:
            self.fail(f"nil pointer evaluating interface {{}}.{name}")
        has_args = bool(args) or final is not NOFINAL
        if isinstance(receiver, dict):
            if has_args:
                self.fail(f"{name} is not a method but has arguments")
            return receiver.get(name, MISSING)
        attr = MISSING
        if not name.startswith("_") and not isinstance(receiver, (str, int, float, list, tuple, bytes)):
            try:
                attr = getattr(receiver, name, MISSING)
            except Exception as exc:  # a failing property is a failing method call
                self.fail(f"error calling {name}: {exc}")
        if attr is MISSING:
            self.fail(f"can't evaluate field {name} in type {go_type(receiver)}")
        if callable(attr) and not isinstance(attr, type):
            return self.call(dot, name, attr, args, final, node)
        if has_args:
            self.fail(f"{name} has arguments but cannot be invoked as function")
        return attr

    def eval_function(self, dot: Any, ident: IdentifierNode, cmd: Node, args: list[Node], final: Any) -> Any:
        self.node = ident
        func = self.funcs[ident.name]
        count = len(args) + (final is not NOFINAL)
        if count < func.min_args or (func.max_args is not None and count > func.max_args):
            want = f"at least {func.min_args}" if func.max_args is None else str(func.max_args)
            self.fail(f"wrong number of args for {ident.name}: want {want} got {count}")
        if ident.name in ("and", "or"):
            return self.eval_and_or(dot, ident.name == "or", args, final)
        return self.call(dot, ident.name, func.fn, args, final, cmd)

    def eval_and_or(self, dot: Any, is_or: bool, args: list[Node], final: Any) -> Any:
        """and/or short-circuit: return the first deciding operand, else the last one."""
        value: Any = MISSING
        for arg in args:
            value = self.eval_arg(dot, arg)
            if truth(value) == is_or:
                return value
        return value if final is NOFINAL else final

    def call(
        self, dot: Any, name: str, fn: Callable[..., Any], args: list[Node], final: Any, node: Node
    ) -> Any:
        argv = [self.eval_arg(dot, a) for a in args]
        if final is not NOFINAL:
            argv.append(final)
        self.node = node
        try:
            return fn(*argv)
        except ArgError as exc:
            self.fail(str(exc))
        except (Break, Continue, TemplateError):
            raise
        except Exception as exc:  # a function's failure is the template's error, as in Go
            self.fail(f"error calling {name}: {exc}")
