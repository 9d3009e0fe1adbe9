"""Types for `when:` expressions, checked when the config loads: per event kind the fields of `event`, `summary` and
`job` are known (derived from the pydantic models), so a misspelt field or an expression that cannot give a
boolean is a config error with a "did you mean", not a rule that silently never matches.

The check is deliberately lenient where CEL is dynamic: a map's keys (`summary.scores.codex`), `dyn(...)`, unknown
functions and indexing into anything but a list or map are accepted.
"""

from __future__ import annotations

import difflib
import enum
import fnmatch
import functools
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from lark import Token, Tree
from pydantic import BaseModel

from watcher.core.events import EVENT_KINDS, Event
from watcher.core.summary import JobSummary


@dataclass(frozen=True)
class Prim:
    """A scalar: bool, int, double, string, null; `dyn` is anything; `value` is any non-boolean result."""

    name: str


@dataclass(frozen=True)
class ListOf:
    """A list of items of one type."""

    item: CelType


@dataclass(frozen=True)
class MapOf:
    """A map from strings to values of one type."""

    value: CelType


@dataclass(frozen=True)
class Obj:
    """A model's fields (an event of one kind, the summary, a nested part of them)."""

    name: str
    fields: tuple[tuple[str, CelType], ...]

    def field(self, name: str) -> CelType | None:
        """The type of a field, or None when the model has none of that name."""
        return next((kind for field, kind in self.fields if field == name), None)


CelType = frozenset[Prim | ListOf | MapOf | Obj]  # the alternatives a value may be


def _one(alternative: Prim | ListOf | MapOf | Obj) -> CelType:
    return frozenset({alternative})


BOOL, INT, DOUBLE, STRING, NULL = (_one(Prim(name)) for name in ("bool", "int", "double", "string", "null"))
DYN = _one(Prim("dyn"))
VALUE = _one(Prim("value"))


class CelTypeError(ValueError):
    """An expression names a field no matching kind has, or cannot give a boolean."""


def from_annotation(annotation: Any) -> CelType:
    """The CEL type of a Python annotation as pydantic serialises it to JSON."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return frozenset().union(*(from_annotation(arg) for arg in get_args(annotation)))
    if origin is Literal:
        return frozenset().union(*(from_annotation(type(arg)) for arg in get_args(annotation)))
    if origin in (tuple, list, Sequence):
        return _one(ListOf(from_annotation(get_args(annotation)[0])))
    if origin in (dict, Mapping):
        return _one(MapOf(from_annotation(get_args(annotation)[1])))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _one(model_type(annotation))
    return _SCALARS.get(annotation, DYN) if not _is_enum(annotation) else STRING


def _is_enum(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


_SCALARS: dict[Any, CelType] = {bool: BOOL, int: INT, float: DOUBLE, str: STRING, type(None): NULL}


@functools.cache
def model_type(model: type[BaseModel]) -> Obj:
    """The fields of a pydantic model, as CEL sees its JSON."""
    hints = typing.get_type_hints(model)
    return Obj(model.__name__, tuple((name, from_annotation(hints[name])) for name in model.model_fields))


@functools.cache
def event_types() -> dict[str, Obj]:
    """Per event kind, its fields."""
    members = get_args(get_args(Event)[0])
    return {get_args(m.model_fields["kind"].annotation)[0]: model_type(m) for m in members}


def kinds_matching(patterns: Iterable[str]) -> list[str]:
    """The event kinds a rule's `on:` globs catch."""
    return [kind for kind in EVENT_KINDS if any(fnmatch.fnmatchcase(kind, pattern) for pattern in patterns)]


def check_expression(ast: Tree[Token], kinds: Sequence[str]) -> None:
    """Raise CelTypeError when the expression names a field no kind in `kinds` has, or cannot be a boolean."""
    events = event_types()
    event = frozenset(events[kind] for kind in kinds if kind in events) or DYN
    summary = _one(model_type(JobSummary))
    checker = _Checker({"event": event, "summary": summary, "job": summary}, kinds)
    result = checker.walk(ast)
    if not result & (BOOL | DYN):
        raise CelTypeError(f"the expression gives {describe(result)}, not a boolean")


def describe(kind: CelType) -> str:
    """`int`, `string or null`, `list`, ... for messages."""
    names = sorted({_name(alternative) for alternative in kind})
    return " or ".join(names)


def _name(alternative: Prim | ListOf | MapOf | Obj) -> str:
    if isinstance(alternative, Prim):
        return "a number or string" if alternative.name == "value" else alternative.name
    return {ListOf: "list", MapOf: "map"}.get(type(alternative), "object")


_STRING_TESTS = frozenset({"startsWith", "endsWith", "contains", "matches"})
_QUANTIFIERS = frozenset({"all", "exists", "exists_one"})
_CONVERSIONS: dict[str, CelType] = {"int": INT, "uint": INT, "double": DOUBLE, "string": STRING, "bool": BOOL}
_COMBINE = frozenset({"conditionalor", "conditionaland"})
_ARITHMETIC = frozenset({"addition", "multiplication"})


class _Checker:
    """Walks cel-python's parse tree, giving each node its possible types."""

    def __init__(self, names: dict[str, CelType], kinds: Sequence[str]) -> None:
        self.names = names
        self.kinds = kinds

    def walk(self, node: Tree[Token] | Token) -> CelType:
        if isinstance(node, Token):
            return DYN
        handler = getattr(self, f"_{node.data}", None)
        if handler is not None:
            result: CelType = handler(node)
            return result
        if len(node.children) == 1:
            return self.walk(node.children[0])
        self._all(node.children)
        if node.data in _COMBINE or node.data == "relation":
            return BOOL
        return VALUE if node.data in _ARITHMETIC else DYN

    def _all(self, children: Iterable[Tree[Token] | Token]) -> list[CelType]:
        return [self.walk(child) for child in children]

    def _expr(self, node: Tree[Token]) -> CelType:
        found = self._all(node.children)
        return found[0] if len(found) == 1 else found[1] | found[2]

    def _unary(self, node: Tree[Token]) -> CelType:
        if len(node.children) == 1:
            return self.walk(node.children[0])
        self._all(node.children)
        first = node.children[0]
        operator = first.data if isinstance(first, Tree) else ""
        return {"unary_not": BOOL, "unary_neg": VALUE}.get(str(operator), DYN)

    def _ident(self, node: Tree[Token]) -> CelType:
        name = str(node.children[0])
        if name not in self.names:
            raise CelTypeError(f"unknown name {name!r}{_did_you_mean(name, self.names)}")
        return self.names[name]

    def _literal(self, node: Tree[Token]) -> CelType:
        text = str(node.children[0])
        if text in ("true", "false"):
            return BOOL
        if text == "null":
            return NULL
        if text[:1] in "\"'" or text[:2].lower() in ("r'", 'r"', "b'", 'b"'):
            return STRING
        return DOUBLE if any(mark in text.lower() for mark in ".e") and not text.startswith("0x") else INT

    def _list_lit(self, node: Tree[Token]) -> CelType:
        items = self._all(node.children)
        return _one(ListOf(frozenset().union(*items) if items else DYN))

    def _map_lit(self, node: Tree[Token]) -> CelType:
        self._all(node.children)
        return _one(MapOf(DYN))

    def _member_dot(self, node: Tree[Token]) -> CelType:
        target, name = node.children[0], str(node.children[1])
        return self._field(self.walk(target), name, _path(target))

    def _member_index(self, node: Tree[Token]) -> CelType:
        target = self._all(node.children)[0]  # the index is walked for its own mistakes; its type is not checked
        items = [a.item for a in target if isinstance(a, ListOf)] + [a.value for a in target if isinstance(a, MapOf)]
        return frozenset().union(*items) if items and len(items) == len(target) else DYN

    def _member_dot_arg(self, node: Tree[Token]) -> CelType:
        target = self.walk(node.children[0])
        method = str(node.children[1])
        args = node.children[2].children if len(node.children) > 2 and isinstance(node.children[2], Tree) else []
        if method in _QUANTIFIERS or method in ("map", "filter"):
            return self._macro(target, method, args)
        self._all(args)
        if method in _STRING_TESTS:
            return BOOL
        return INT if method == "size" else DYN

    def _macro(self, target: CelType, method: str, args: Sequence[Tree[Token] | Token]) -> CelType:
        if len(args) != 2:
            self._all(args)
            return DYN
        variable = _path(args[0])
        # A list's macros bind its items, a map's bind its keys.
        items = [a.item for a in target if isinstance(a, ListOf)] + [STRING for a in target if isinstance(a, MapOf)]
        inner = _Checker({**self.names, variable: frozenset().union(*items) if items else DYN}, self.kinds)
        result = inner.walk(args[1])
        if method in _QUANTIFIERS:
            return BOOL
        return _one(ListOf(result)) if method == "map" else target

    def _ident_arg(self, node: Tree[Token]) -> CelType:
        function = str(node.children[0])
        args = node.children[1].children if len(node.children) > 1 and isinstance(node.children[1], Tree) else []
        self._all(args)
        if function in ("has", "matches"):
            return BOOL
        if function == "size":
            return INT
        return _CONVERSIONS.get(function, DYN)

    def _field(self, target: CelType, name: str, path: str) -> CelType:
        found: list[CelType] = []
        objects = [alternative for alternative in target if isinstance(alternative, Obj)]
        for alternative in target:
            if isinstance(alternative, Obj):
                field = alternative.field(name)
                if field is not None:
                    found.append(field)
            elif isinstance(alternative, MapOf):
                found.append(alternative.value)
            elif alternative in (Prim("dyn"), Prim("value")):
                found.append(DYN)
        if found:
            return frozenset().union(*found)
        if objects:
            known = {field for obj in objects for field, _ in obj.fields}
            where = ""
            if path == "event":  # name the kinds, or how many when `on:` catches many
                where = (
                    f" in {', '.join(self.kinds)}" if len(self.kinds) <= 4 else f" in any of {len(self.kinds)} kinds"
                )
            raise CelTypeError(f"{path} has no field {name!r}{where}{_did_you_mean(name, known)}")
        if target == NULL:
            return DYN
        raise CelTypeError(f"{path} is {describe(target)}: it has no field {name!r}")


def _path(node: Tree[Token] | Token) -> str:
    """The source text of a plain `a.b.c` path, else `the value`."""
    if isinstance(node, Token):
        return str(node)
    if node.data == "ident":
        return str(node.children[0])
    if node.data == "member_dot":
        return f"{_path(node.children[0])}.{node.children[1]}"
    if node.data == "member_index":
        return f"{_path(node.children[0])}[…]"
    if len(node.children) == 1:
        return _path(node.children[0])
    return "the value"


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
