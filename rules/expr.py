"""`when:` expressions in CEL — safe, sandboxed, not Turing-complete — compiled at load (cel-python).

An expression sees `event` (the event's fields), `summary` and its alias `job` (the job's derived summary, an
empty map when there is none). It must yield a boolean; an evaluation error (a missing field, a type mismatch)
counts as "does not match" and is reported, never raised. Its fields and result are checked at load against the
kinds its rule listens to (rules.celtypes).

Building cel-python's environment (its parser) takes a noticeable fraction of a second: it is built on the first
expression, so a config without `when:` never pays for it, and a program is built on the first evaluation, so
`benchwatch check` never does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError
from lark import Token, Tree

from rules.celtypes import CelTypeError, check_expression


class ExpressionError(Exception):
    """An expression failed on one event; the rule does not match it."""


@dataclass(frozen=True)
class Expression:
    """A compiled CEL expression."""

    source: str
    _ast: Tree[Token]
    _program: list[Any] = field(default_factory=list, compare=False, repr=False)  # built on first use

    def check_types(self, kinds: Sequence[str]) -> None:
        """Raise ValueError when the expression names a field none of `kinds` has, or cannot give a boolean."""
        try:
            check_expression(self._ast, kinds)
        except CelTypeError as exc:
            raise ValueError(f"{self.source!r}: {exc}") from None

    def evaluate(self, event: Mapping[str, Any], summary: Mapping[str, Any] | None) -> bool:
        """True when the expression holds for this event; raises ExpressionError when it cannot be evaluated."""
        summary_value = json_to_cel(dict(summary) if summary is not None else {})
        activation = {"event": json_to_cel(dict(event)), "summary": summary_value, "job": summary_value}
        try:
            if not self._program:
                self._program.append(_environment().program(self._ast))
            result = self._program[0].evaluate(activation)
        except RecursionError:
            raise ExpressionError(f"{self.source[:80]!r} nests too deeply to evaluate") from None
        except CELEvalError as exc:
            raise ExpressionError(f"{self.source!r}: {exc.args[0] if exc.args else exc}") from None
        if not isinstance(result, celtypes.BoolType):
            raise ExpressionError(f"{self.source!r} gave {type(result).__name__}, not a boolean")
        return bool(result)


@functools.cache
def _environment() -> celpy.Environment:
    return celpy.Environment()


MAX_EXPRESSION_CHARS = 2_000
MAX_EXPRESSION_DEPTH = 300  # parse-tree levels (~30 nested parentheses); the evaluator recurses, ~550 exhaust it


def _depth(tree: Tree[Token]) -> int:
    """How many levels the parse tree has (walked without recursion: it may be very deep)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node.children if isinstance(child, Tree))
    return deepest


def _where(parser_message: str) -> str:
    """cel-python reports the source with a caret under the fault: turn that into a column number."""
    for line in parser_message.splitlines():
        if line.strip() == "^":
            return f"syntax error at column {line.index('^') + 1}"
    return "syntax error"


def compile_expression(source: str) -> Expression:
    """Compile a CEL expression; raises ValueError with the parser's message on a syntax error."""
    if not source.strip():
        raise ValueError("an empty expression")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression is {len(source)} characters long; at most {MAX_EXPRESSION_CHARS} are allowed")
    try:
        ast = _environment().compile(source)
    except CELParseError as exc:
        raise ValueError(f"invalid CEL expression {source[:80]!r}: {_where(str(exc))}") from None
    except RecursionError:
        raise ValueError("expression nests too deeply; flatten it") from None
    if _depth(ast) > MAX_EXPRESSION_DEPTH:
        raise ValueError("expression nests too deeply; flatten it")
    return Expression(source, ast)
