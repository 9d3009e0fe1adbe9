"""Loading benchwatch's YAML configuration files, with every problem placed at a file, a line and a key path.

Values follow the YAML 1.2 core schema (so `on:` and `yes` stay strings), `${VAR}` references are filled from the
environment, a `token_file: path` key becomes `token:` with the file's content, and pydantic's validation errors
are turned into the same `file:line: path: message` problems. All problems of a file are reported together.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import pydantic
import yaml
from pydantic import AliasChoices, AliasPath, BaseModel, ConfigDict, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ConfigProblem:
    """One mistake in a config file: where it is (file, 1-based line, key path) and what is wrong."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def _reading_order(problem: ConfigProblem) -> tuple[bool, int, str, str]:
    return (problem.line is None, problem.line or 0, problem.path, problem.message)


class ConfigError(Exception):
    """A config file that cannot be used; `problems` lists every mistake found, in the order of the file."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = sorted(problems, key=_reading_order)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def format_path(loc: Loc) -> str:
    """A key path as a reader writes it: `("rules", 2, "notify", 0)` -> `rules[2].notify[0]`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass
class LoadedFile:
    """A parsed config file: plain Python data and the line of every key and list item in it."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)  # with `collect=True`: reported with validation

    def line_of(self, loc: Loc) -> int | None:
        """The line of the node at `loc`, or of its deepest existing ancestor (a missing key -> its mapping)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None


# --- YAML 1.2 core schema ---------------------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + name for name in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP, _MERGE = (_TAG + name for name in ("seq", "map", "merge"))

_NULL_RE = re.compile(r"(?:~|null|Null|NULL|)\Z")
_BOOL_RE = re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")
_INT_RE = re.compile(r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z")
_FLOAT_RE = re.compile(
    r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"
)


class _AliasNode(yaml.Node):
    """An alias (`*name`) kept as its own node, so that its line is where the alias is, not where the anchor is."""

    def __init__(self, target: yaml.Node, mark: yaml.Mark) -> None:
        super().__init__(target.tag, target.value, mark, mark)
        self.target = target


MAX_DEPTH = 50  # no config nests near this deep; far deeper would exhaust the stack of every recursive reader


class _CoreSchemaLoader(yaml.SafeLoader):
    """A composer whose plain scalars resolve by the YAML 1.2 core schema instead of PyYAML's YAML 1.1 rules,
    and that refuses nesting deeper than MAX_DEPTH (a clear error, not a RecursionError)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """The next node; an alias comes back wrapped in an `_AliasNode` that remembers where it was written."""
        if not self.check_event(yaml.AliasEvent):
            if self._depth >= MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.MarkedYAMLError(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=mark)
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # unannotated in types-PyYAML
        target = super().compose_node(parent, index)
        return None if target is None else _AliasNode(target, mark)


# Replacing (not extending) the inherited table drops yes/no/on/off booleans, timestamps, 0b and 1_000 ints.
_CoreSchemaLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    (_NULL, _NULL_RE, ["~", "n", "N", ""]),
    (_BOOL, _BOOL_RE, list("tTfF")),
    (_INT, _INT_RE, list("-+0123456789")),
    (_FLOAT, _FLOAT_RE, list("-+.0123456789")),
    (_MERGE, re.compile(r"<<\Z"), ["<"]),
):
    _CoreSchemaLoader.add_implicit_resolver(_tag, _pattern, _first)


def _parse_null(text: str) -> None:
    if not _NULL_RE.match(text):
        raise ValueError(text)


def _parse_bool(text: str) -> bool:
    if not _BOOL_RE.match(text):
        raise ValueError(text)
    return text.lower() == "true"


def _parse_int(text: str) -> int:
    if not _INT_RE.match(text):
        raise ValueError(text)
    if text.startswith(("0x", "0o")):
        return int(text[2:], 16 if text[1] == "x" else 8)
    return int(text)  # YAML 1.2: a leading 0 is still decimal


def _parse_float(text: str) -> float:
    if not _FLOAT_RE.match(text):
        raise ValueError(text)
    special = text.lstrip("+-").lower()
    if special == ".inf":
        return -math.inf if text.startswith("-") else math.inf
    return math.nan if special == ".nan" else float(text)


_SCALAR_PARSERS: dict[str, Callable[[str], Any]] = {
    _NULL: _parse_null,
    _BOOL: _parse_bool,
    _INT: _parse_int,
    _FLOAT: _parse_float,
}


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


# --- ${VAR} substitution ----------------------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\$|\$\{(?P<body>[^}]*)\}|\$\{")
_REFERENCE_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


def _substitute_env(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with `${VAR}`, `${VAR:-default}` and `$$` replaced, and a message for each reference that failed."""
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        body = match.group("body")
        reference = None if body is None else _REFERENCE_BODY.fullmatch(body)
        if reference is None:
            problems.append("malformed ${...} reference")
            return ""
        name, default = reference.group("name"), reference.group("default")
        if default is not None:
            return environ.get(name) or default
        if name not in environ:
            problems.append(f"environment variable {name} is not set")
            return ""
        return environ[name]

    return _REFERENCE.sub(replace, text), problems


# --- node tree -> plain values ----------------------------------------------------------------------------------

_FILE_SUFFIX = "_file"
# The keys a `<key>_file` may read from a file: the secrets (every `SecretStr` field of the config; a test keeps the
# two in step) and `ca`, a PEM bundle. Any other key read from a file could quote the file in its error: a
# `when_file: /proc/self/environ` printed every environment variable.
SECRET_FILE_KEYS: Final = frozenset(
    {"api_key", "bearer_token", "ca", "password", "routing_key", "secret", "token", "url", "webhook_url"}
)


def _is_file_key(key: str, value: Any) -> bool:
    return key.endswith(_FILE_SUFFIX) and len(key) > len(_FILE_SUFFIX) and isinstance(value, str)


def _without_one_newline(text: str) -> str:
    for newline in ("\r\n", "\n"):
        if text.endswith(newline):
            return text[: -len(newline)]
    return text


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class _TreeBuilder:
    """Turns a composed node tree into plain Python values, recording lines and problems on the way."""

    def __init__(self, path: Path, environ: Mapping[str, str]) -> None:
        self.path = path
        self.environ = environ
        self.lines: dict[Loc, int] = {}
        self.problems: list[ConfigProblem] = []
        self._built: dict[int, Any] = {}  # id(node) -> value: an alias gives back what its anchor built
        self._building: set[int] = set()

    def problem(self, line: int | None, loc: Loc, message: str) -> None:
        """Record one problem at `line`, about the key path `loc`."""
        self.problems.append(ConfigProblem(str(self.path), line, format_path(loc), message))

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        """The value of `node`, found at `loc` in the document."""
        if isinstance(node, _AliasNode):
            return self._alias(node, loc)
        self._building.add(id(node))
        value = self._build_node(node, loc)
        self._building.discard(id(node))
        self._built[id(node)] = value
        return value

    def _build_node(self, node: yaml.Node, loc: Loc) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, loc)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        raise TypeError(f"not a YAML node: {node!r}")

    def _alias(self, alias: _AliasNode, loc: Loc) -> Any:
        key = id(alias.target)
        if key in self._building:
            self.problem(_line(alias), loc, "recursive aliases are not supported")
            return None
        return self._built[key] if key in self._built else self.build(alias.target, loc)

    def _scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        text: str = node.value
        if node.tag == _STR:
            value, messages = _substitute_env(text, self.environ)
            for message in messages:
                self.problem(_line(node), loc, message)
            return value
        parse = _SCALAR_PARSERS.get(node.tag)
        if parse is None:
            self.problem(_line(node), loc, f"unsupported tag '{_short_tag(node.tag)}'")
            return text
        try:
            return parse(text)
        except ValueError:
            self.problem(_line(node), loc, f"invalid {_short_tag(node.tag)} value {text!r}")
            return text

    def _sequence(self, node: yaml.SequenceNode, loc: Loc) -> list[Any]:
        if node.tag != _SEQ:
            self.problem(_line(node), loc, f"unsupported tag '{_short_tag(node.tag)}'")
        items = []
        for index, item in enumerate(node.value):
            self.lines[(*loc, index)] = _line(item)
            items.append(self.build(item, (*loc, index)))
        return items

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        if node.tag != _MAP:
            self.problem(_line(node), loc, f"unsupported tag '{_short_tag(node.tag)}'")
        mapping: dict[str, Any] = {}
        failed: set[str] = set()  # keys whose value already has a problem: no file is read for those
        for key_node, value_node in node.value:
            key = self._key(key_node, loc)
            if key is None:
                continue
            if key in mapping:
                self.problem(_line(key_node), loc, f"duplicate key {key!r}")
                continue
            self.lines[(*loc, key)] = _line(key_node)
            known_problems = len(self.problems)
            mapping[key] = self.build(value_node, (*loc, key))
            if len(self.problems) > known_problems:
                failed.add(key)
        return self._read_file_keys(mapping, loc, failed)

    def _key(self, node: yaml.Node, loc: Loc) -> str | None:
        target = node.target if isinstance(node, _AliasNode) else node
        if target.tag == _MERGE:
            self.problem(_line(node), loc, "merge keys (<<) are not supported")
            return None
        if isinstance(target, yaml.ScalarNode) and target.tag == _STR:
            return str(target.value)  # keys are names, never templates: no ${VAR} substitution
        self.problem(_line(node), loc, "keys must be strings")
        return None

    def _read_file_keys(self, mapping: dict[str, Any], loc: Loc, failed: set[str]) -> dict[str, Any]:
        if not any(_is_file_key(key, value) for key, value in mapping.items()):
            return mapping
        result: dict[str, Any] = {}
        for key, value in mapping.items():
            if not _is_file_key(key, value):
                result[key] = value
                continue
            target, line = key.removesuffix(_FILE_SUFFIX), self.lines.pop((*loc, key))
            if target not in SECRET_FILE_KEYS:
                secrets = ", ".join(sorted(SECRET_FILE_KEYS))
                self.problem(line, loc, f"{key}: only a secret key can be read from a file ({secrets})")
                continue
            if target in mapping:
                self.problem(line, loc, f"give {target} or {key}, not both")
                continue
            self.lines[(*loc, target)] = line
            result[target] = "" if key in failed else self._read_secret(key, value, loc, line)
        return result

    def _read_secret(self, key: str, name: str, loc: Loc, line: int) -> str:
        # Messages name the file, never its content: these files hold tokens and passwords.
        path = Path(name)
        if not path.is_absolute():
            path = self.path.parent / path
        try:
            return _without_one_newline(path.read_bytes().decode("utf-8"))
        except OSError as exc:
            self.problem(line, loc, f"cannot read {key} '{path}': {_reason(exc)}")
        except UnicodeDecodeError:
            self.problem(line, loc, f"cannot read {key} '{path}': not UTF-8 text")
        return ""


# --- loading ----------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), None, "", f"cannot read: {_reason(exc)}")]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigProblem(str(path), line, "", "cannot read: not UTF-8 text")]) from None


def _syntax_problem(path: Path, text: str, exc: yaml.YAMLError) -> ConfigProblem:
    line: int | None = None
    message = str(exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        message = exc.problem or exc.context or message
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        code = f" (#x{exc.character:04x})" if isinstance(exc.character, int) else ""
        message = f"{exc.reason}{code}"
    return ConfigProblem(str(path), line, "", f"YAML syntax error: {message}")


def _compose(path: Path, text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_CoreSchemaLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_syntax_problem(path, text, exc)]) from None


def _is_bare_document(root: yaml.Node) -> bool:
    # A `---` with nothing after it is an empty document too; an explicit `null` or `~` is not.
    return isinstance(root, yaml.ScalarNode) and root.tag == _NULL and root.value == ""


def load_yaml(path: Path, environ: Mapping[str, str], *, collect: bool = False) -> LoadedFile:
    """Read and parse one config file; raises `ConfigError` listing every problem found in it.

    With `collect`, problems in values (unset variables, unreadable `_file`s, duplicate keys) are kept in
    `LoadedFile.problems` instead, so `validate_file` can report them together with the validation's.
    Unreadable files and YAML syntax errors always raise: there is nothing to validate.
    """
    root = _compose(path, _read_text(path))
    if root is None or _is_bare_document(root):
        return LoadedFile(path, {})
    builder = _TreeBuilder(path, environ)
    builder.lines[()] = _line(root)
    data = builder.build(root, ())
    if builder.problems and not collect:
        raise ConfigError(builder.problems)
    return LoadedFile(path, data, builder.lines, builder.problems)


# --- validation -------------------------------------------------------------------------------------------------


def _aliases(info: FieldInfo) -> set[str]:
    alias = info.validation_alias if info.validation_alias is not None else info.alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    names = {choice.path[0] if isinstance(choice, AliasPath) else choice for choice in choices}
    return {name for name in names if isinstance(name, str)}


def _accepted_keys(model: type[BaseModel]) -> set[str]:
    # A field with an alias is spelled by its alias only, unless the model also accepts field names.
    by_name = bool(model.model_config.get("validate_by_name") or model.model_config.get("populate_by_name"))
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        aliases = _aliases(info)
        keys |= aliases if aliases and not by_name else aliases | {name}
    return keys


class StrictModel(BaseModel):
    """Base of every config model: frozen, and an unknown key is an error that suggests the key meant.

    Only the first unknown key of a mapping is reported (with its did-you-mean); the rest show on the next check.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = _accepted_keys(cls)
        unknown = [str(key) for key in data if key not in known]
        if not unknown:
            return data
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        # pydantic's templates only substitute `{name}`, so the quoted key travels in the context as well.
        context = {"key": unknown[0], "quoted_key": repr(unknown[0]), "hint": hint}
        raise PydanticCustomError("unknown_key", "unknown key {quoted_key}{hint}", context)


def _data_loc(data: Any, loc: Loc) -> Loc:
    """`loc` without the parts pydantic adds that are not in the data (union members, discriminator tags)."""
    kept: list[str | int] = []
    for part in loc:
        if _holds(data, part):
            kept.append(part)
            data = data[part]
    return tuple(kept)


def _holds(data: Any, part: str | int) -> bool:
    if isinstance(data, dict):
        return isinstance(part, str) and part in data
    return isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)


def _message(error: ErrorDetails) -> str:
    if error["type"] == "union_tag_invalid":
        return _unknown_tag(error.get("ctx") or {})
    if error["type"] in _SEQUENCE_TYPES:  # pydantic says "tuple" or "set" for what YAML calls a list
        return f"should be a list, not {_yaml_kind(error.get('input'))}: write [a, b] or one '- a' per line"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


_SEQUENCE_TYPES: Final = frozenset({"tuple_type", "list_type", "set_type", "frozen_set_type"})


def _yaml_kind(value: Any) -> str:
    """What a YAML reader calls the type of a value."""
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return "a boolean" if isinstance(value, bool) else "a number"


def _unknown_tag(ctx: Mapping[str, Any]) -> str:
    """`type: webhok` → unknown type 'webhok' (did you mean 'webhook'?)."""
    tag, field_name = str(ctx.get("tag", "")), str(ctx.get("discriminator", "type")).strip("'")
    expected = [name.strip(" '") for name in str(ctx.get("expected_tags", "")).split(",") if name.strip(" '")]
    close = difflib.get_close_matches(tag, expected, n=1, cutoff=0.6)
    if close:
        return f"unknown {field_name} {tag!r} (did you mean {close[0]!r}?)"
    return f"unknown {field_name} {tag!r} (expected one of: {', '.join(expected)})"


def _problem_from_error(error: ErrorDetails, loaded: LoadedFile) -> ConfigProblem:
    loc, message = tuple(error["loc"]), _message(error)
    if error["type"] == "missing" and loc:
        loc, message = loc[:-1], f"missing required key {loc[-1]!r}"
    elif error["type"] == "unknown_key":
        loc = (*loc, error.get("ctx", {})["key"])
    elif error["type"] == "union_tag_invalid":  # point at the `type:` line itself, when it is in the data
        loc = (*loc, str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
    elif error["type"] == "extra_forbidden" and loc:
        message = f"unknown key {loc[-1]!r}"
    place = _data_loc(loaded.data, loc)
    return ConfigProblem(str(loaded.path), loaded.line_of(place), format_path(place), message)


def problems_from_validation(exc: pydantic.ValidationError, loaded: LoadedFile) -> list[ConfigProblem]:
    """One problem per pydantic error, placed at the line and key path of `loaded` it is about."""
    return [_problem_from_error(error, loaded) for error in exc.errors()]


def validate_file(model: type[M], loaded: LoadedFile) -> M:
    """`loaded.data` as a `model`; raises `ConfigError` with every problem: the loader's and the validation's."""
    try:
        validated = model.model_validate(loaded.data)
    except pydantic.ValidationError as exc:
        # `from None`: the chained ValidationError would print input values, and some of them are secrets.
        raise ConfigError(loaded.problems + problems_from_validation(exc, loaded)) from None
    if loaded.problems:
        raise ConfigError(loaded.problems)
    return validated
