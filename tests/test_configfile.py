"""The config loader: YAML 1.2 values, lines and key paths, ${VAR} and *_file, strict models and their messages."""

from __future__ import annotations

import math
import textwrap
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_core import ErrorDetails

from watcher.config.loader import (
    SECRET_FILE_KEYS,
    ConfigError,
    ConfigProblem,
    LoadedFile,
    StrictModel,
    format_path,
    load_yaml,
    problems_from_validation,
    validate_file,
)


class Slack(StrictModel):
    """A notifier that needs a token."""

    type: Literal["slack"]
    token: str
    channel: str = "#bench"


class Console(StrictModel):
    """A notifier with nothing to configure."""

    type: Literal["console"]


class Rule(StrictModel):
    """A rule with an aliased field, a literal and a value check."""

    name: str
    on: str
    notify: list[str]
    severity: Literal["info", "critical"] = "info"
    continue_: bool = Field(True, alias="continue")

    @field_validator("name")
    @classmethod
    def _one_word(cls, name: str) -> str:
        if " " in name:
            raise ValueError("a rule name is one word")
        return name


class Config(StrictModel):
    """A whole file: a dict of discriminated notifiers and a list of rules."""

    notifiers: dict[str, Annotated[Slack | Console, Field(discriminator="type")]]
    rules: list[Rule]


def write(folder: Path, text: str, name: str = "benchwatch.yaml") -> Path:
    """`text` (dedented) as a file in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(folder: Path, text: str, environ: Mapping[str, str] | None = None) -> LoadedFile:
    """Load `text` as benchwatch.yaml in `folder`."""
    return load_yaml(write(folder, text), environ or {})


def problems(folder: Path, text: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The lines of the ConfigError that loading `text` raises, each without the folder of the config file."""
    with pytest.raises(ConfigError) as caught:
        load(folder, text, environ)
    return [line.removeprefix(f"{folder}/") for line in str(caught.value).splitlines()]


def validation_problems(folder: Path, model: type[BaseModel], text: str) -> list[str]:
    """The lines of the ConfigError that validating `text` against `model` raises."""
    loaded = load(folder, text)
    with pytest.raises(ConfigError) as caught:
        validate_file(model, loaded)
    return [line.removeprefix(f"{folder}/") for line in str(caught.value).splitlines()]


# --- problems and paths -----------------------------------------------------------------------------------------


def test_problem_reads_file_line_path_message() -> None:
    problem = ConfigProblem("benchwatch.yaml", 14, "rules[2].notify[0]", "unknown notifier 'slak'")
    assert str(problem) == "benchwatch.yaml:14: rules[2].notify[0]: unknown notifier 'slak'"


def test_problem_leaves_out_a_missing_line_and_an_empty_path() -> None:
    assert str(ConfigProblem("b.yaml", None, "", "cannot read: gone")) == "b.yaml: cannot read: gone"
    assert str(ConfigProblem("b.yaml", 3, "", "oops")) == "b.yaml:3: oops"
    assert str(ConfigProblem("b.yaml", None, "a.b", "oops")) == "b.yaml: a.b: oops"


def test_config_error_lists_problems_by_line_then_path_unknown_lines_last() -> None:
    error = ConfigError(
        [
            ConfigProblem("b.yaml", None, "", "no line"),
            ConfigProblem("b.yaml", 9, "rules[1]", "nine"),
            ConfigProblem("b.yaml", 2, "z", "two z"),
            ConfigProblem("b.yaml", 2, "a", "two a"),
        ]
    )
    assert str(error).splitlines() == [
        "b.yaml:2: a: two a",
        "b.yaml:2: z: two z",
        "b.yaml:9: rules[1]: nine",
        "b.yaml: no line",
    ]
    assert [problem.message for problem in error.problems] == ["two a", "two z", "nine", "no line"]


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("rules", 2, "notify", 0), "rules[2].notify[0]"),
        (("notifiers", "team-slack", "url"), "notifiers.team-slack.url"),
        (("rules",), "rules"),
        ((), ""),
    ],
)
def test_format_path(loc: tuple[str | int, ...], path: str) -> None:
    assert format_path(loc) == path


# --- YAML 1.2 core schema ---------------------------------------------------------------------------------------


def test_yaml_1_1_booleans_stay_strings(tmp_path: Path) -> None:
    loaded = load(tmp_path, "on: yes\noff: no\nwhen: off\ny: n\nloud: ON\nshout: Yes\n")
    assert loaded.data == {"on": "yes", "off": "no", "when": "off", "y": "n", "loud": "ON", "shout": "Yes"}


def test_timestamps_and_other_yaml_1_1_forms_stay_strings(tmp_path: Path) -> None:
    text = "until: 2026-12-01T00:00:00Z\nday: 2026-12-01\nbinary: 0b101\ngrouped: 1_000\nclock: 12:30\n"
    assert load(tmp_path, text).data == {
        "until": "2026-12-01T00:00:00Z",
        "day": "2026-12-01",
        "binary": "0b101",
        "grouped": "1_000",
        "clock": "12:30",
    }


def test_core_schema_integers(tmp_path: Path) -> None:
    loaded = load(tmp_path, "plain: 42\nnegative: -7\nplus: +3\nleading_zero: 012\nhex: 0x1F\noctal: 0o17\n")
    assert loaded.data == {"plain": 42, "negative": -7, "plus": 3, "leading_zero": 12, "hex": 31, "octal": 15}


def test_core_schema_floats(tmp_path: Path) -> None:
    loaded = load(tmp_path, "a: 1.5\nb: .5\nc: -2.\nd: 1e3\ne: .inf\nf: -.Inf\ng: .nan\n")
    assert {key: value for key, value in loaded.data.items() if key != "g"} == {
        "a": 1.5,
        "b": 0.5,
        "c": -2.0,
        "d": 1000.0,
        "e": math.inf,
        "f": -math.inf,
    }
    assert isinstance(loaded.data["d"], float)
    assert math.isnan(loaded.data["g"])


def test_core_schema_booleans_and_nulls(tmp_path: Path) -> None:
    loaded = load(tmp_path, "a: true\nb: True\nc: FALSE\nd: null\ne: ~\nf:\ng: Null\nh: [~, ]\n")
    assert loaded.data == {"a": True, "b": True, "c": False, "d": None, "e": None, "f": None, "g": None, "h": [None]}


def test_quoted_scalars_are_strings(tmp_path: Path) -> None:
    loaded = load(tmp_path, 'a: "true"\nb: \'1\'\nc: "null"\nd: |\n  multi\n  line\n')
    assert loaded.data == {"a": "true", "b": "1", "c": "null", "d": "multi\nline\n"}


def test_explicit_tags_are_honoured(tmp_path: Path) -> None:
    loaded = load(tmp_path, 'a: !!str 123\nb: !!int "42"\nc: !!float 1\nd: !!bool "true"\ne: !!str yes\n')
    assert loaded.data == {"a": "123", "b": 42, "c": 1.0, "d": True, "e": "yes"}


def test_bad_and_unknown_tags_are_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, "a: !!int zz\nb: !!timestamp 2026-12-01\nc: !secret x\nd: !!set {x}\n") == [
        "benchwatch.yaml:1: a: invalid !!int value 'zz'",
        "benchwatch.yaml:2: b: unsupported tag '!!timestamp'",
        "benchwatch.yaml:3: c: unsupported tag '!secret'",
        "benchwatch.yaml:4: d: unsupported tag '!!set'",
    ]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_document_is_an_empty_mapping(tmp_path: Path, text: str) -> None:
    assert load(tmp_path, text).data == {}


# --- lines ------------------------------------------------------------------------------------------------------

NESTED = """
    # benchwatch
    notifiers:
      team:
        type: slack
        token: abc
    rules:
      - name: a
        on: job.failed
        notify: team
      - name: b
        on: job.failed
        notify: team
      - name: c
        on: job.finished
        notify:
          - team
          - ops
    """


def test_lines_of_nested_keys_and_list_items(tmp_path: Path) -> None:
    loaded = load(tmp_path, NESTED)
    assert loaded.line_of(()) == 2
    assert loaded.line_of(("notifiers", "team", "token")) == 5
    assert loaded.line_of(("rules",)) == 6
    assert loaded.line_of(("rules", 2)) == 13
    assert loaded.line_of(("rules", 2, "on")) == 14
    assert loaded.line_of(("rules", 2, "notify", 1)) == 17


def test_a_missing_key_is_placed_at_its_parent(tmp_path: Path) -> None:
    loaded = load(tmp_path, NESTED)
    assert loaded.line_of(("notifiers", "team", "channel")) == 3
    assert loaded.line_of(("rules", 1, "severity")) == 10
    assert loaded.line_of(("nowhere", "at", "all")) == 2


def test_an_alias_builds_its_anchors_value_and_keeps_its_own_line(tmp_path: Path) -> None:
    loaded = load(tmp_path, "base: &base {type: slack, token: abc}\nnotifiers:\n  - *base\n  - *base\n")
    assert loaded.data["notifiers"] == [{"type": "slack", "token": "abc"}] * 2
    assert loaded.line_of(("notifiers", 1)) == 4
    assert loaded.line_of(("notifiers", 1, "token")) == 4


def test_merge_keys_are_not_supported(tmp_path: Path) -> None:
    text = "base: &base {type: slack}\nteam:\n  <<: *base\n  token: abc\n"
    assert problems(tmp_path, text) == ["benchwatch.yaml:3: team: merge keys (<<) are not supported"]


def test_a_recursive_alias_is_a_problem(tmp_path: Path) -> None:
    assert problems(tmp_path, "loop: &loop [1, *loop]\n") == [
        "benchwatch.yaml:1: loop[1]: recursive aliases are not supported"
    ]


# --- mapping keys -----------------------------------------------------------------------------------------------


def test_a_duplicate_key_is_reported_at_the_second_one(tmp_path: Path) -> None:
    text = "rules:\n  - name: a\n    on: job.failed\n    name: b\n"
    assert problems(tmp_path, text) == ["benchwatch.yaml:4: rules[0]: duplicate key 'name'"]


def test_keys_must_be_strings(tmp_path: Path) -> None:
    text = "1: a\nnull: b\ntrue: c\n? [x]\n: d\n'2': e\n"
    assert problems(tmp_path, text) == [
        "benchwatch.yaml:1: keys must be strings",
        "benchwatch.yaml:2: keys must be strings",
        "benchwatch.yaml:3: keys must be strings",
        "benchwatch.yaml:4: keys must be strings",
    ]


# --- ${VAR} -----------------------------------------------------------------------------------------------------


def test_a_set_variable_is_substituted_and_stays_a_string(tmp_path: Path) -> None:
    text = "port: ${PORT}\nurl: https://${HOST}:${PORT}/x\nlist: ['${HOST}']\nblock: |\n  ${HOST}\n"
    loaded = load(tmp_path, text, {"PORT": "8080", "HOST": "bench.example"})
    assert loaded.data == {
        "port": "8080",
        "url": "https://bench.example:8080/x",
        "list": ["bench.example"],
        "block": "bench.example\n",
    }


def test_a_default_is_used_when_unset_or_empty(tmp_path: Path) -> None:
    text = "unset: ${A:-x}\nempty: ${B:-y}\nset: ${C:-z}\nnone: ${A:-}\nspaced: ${A:-two words}\n"
    loaded = load(tmp_path, text, {"B": "", "C": "c"})
    assert loaded.data == {"unset": "x", "empty": "y", "set": "c", "none": "", "spaced": "two words"}


def test_a_set_but_empty_variable_without_default_is_empty(tmp_path: Path) -> None:
    assert load(tmp_path, "a: <${A}>\n", {"A": ""}).data == {"a": "<>"}


def test_double_dollar_is_a_literal_dollar(tmp_path: Path) -> None:
    text = "a: cost $$5\nb: $${X}\nc: 5$\nd: $HOME\n"
    assert load(tmp_path, text, {"X": "no"}).data == {"a": "cost $5", "b": "${X}", "c": "5$", "d": "$HOME"}


def test_an_unset_variable_is_a_problem_at_its_line(tmp_path: Path) -> None:
    text = "notifiers:\n  team:\n    url: ${SLACK_URL}\n"
    assert problems(tmp_path, text) == [
        "benchwatch.yaml:3: notifiers.team.url: environment variable SLACK_URL is not set"
    ]


@pytest.mark.parametrize("reference", ["${", "${1BAD}", "${}", "${A-b}", "x${A"])
def test_a_malformed_reference_is_a_problem(tmp_path: Path, reference: str) -> None:
    assert problems(tmp_path, f"a: '{reference}'\n", {"A": "1"}) == ["benchwatch.yaml:1: a: malformed ${...} reference"]


def test_keys_are_not_substituted(tmp_path: Path) -> None:
    assert load(tmp_path, "${X}: 1\n", {"X": "y"}).data == {"${X}": 1}


# --- *_file -----------------------------------------------------------------------------------------------------


def test_a_file_key_reads_its_file_relative_to_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    write(folder / "secrets", "xoxb-1\n", name="token")
    loaded = load(folder, "notifiers:\n  team:\n    type: slack\n    token_file: secrets/token\n")
    assert loaded.data == {"notifiers": {"team": {"type": "slack", "token": "xoxb-1"}}}
    assert loaded.line_of(("notifiers", "team", "token")) == 4
    assert ("notifiers", "team", "token_file") not in loaded.lines


def test_a_file_key_drops_exactly_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"one\n\n")
    (tmp_path / "b").write_bytes(b"two\r\n")
    (tmp_path / "c").write_bytes(b"three")
    loaded = load(tmp_path, "token_file: a\nsecret_file: b\npassword_file: c\n")
    assert loaded.data == {"token": "one\n", "secret": "two", "password": "three"}


def test_a_file_key_path_takes_environment_references(tmp_path: Path) -> None:
    write(tmp_path / "secrets", "s3cret", name="token")
    loaded = load(tmp_path, "token_file: ${SECRETS}/token\n", {"SECRETS": str(tmp_path / "secrets")})
    assert loaded.data == {"token": "s3cret"}


def test_a_non_string_file_key_is_left_alone(tmp_path: Path) -> None:
    assert load(tmp_path, "retries_file: 3\n_file: x\n").data == {"retries_file": 3, "_file": "x"}


def test_giving_a_key_and_its_file_key_is_a_problem(tmp_path: Path) -> None:
    write(tmp_path, "s3cret", name="token")
    text = "notifiers:\n  team:\n    token: abc\n    token_file: token\n"
    assert problems(tmp_path, text) == ["benchwatch.yaml:4: notifiers.team: give token or token_file, not both"]


def test_an_unreadable_file_key_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    text = "team:\n  token_file: missing\n  secret_file: folder\n"
    assert problems(tmp_path, text) == [
        f"benchwatch.yaml:2: team: cannot read token_file '{tmp_path}/missing': No such file or directory",
        f"benchwatch.yaml:3: team: cannot read secret_file '{tmp_path}/folder': Is a directory",
    ]


def test_a_file_key_with_an_unset_variable_reports_only_the_variable(tmp_path: Path) -> None:
    assert problems(tmp_path, "token_file: ${SECRETS}/token\n") == [
        "benchwatch.yaml:1: token_file: environment variable SECRETS is not set"
    ]


def test_a_files_content_never_appears_in_messages(tmp_path: Path) -> None:
    (tmp_path / "pin").write_text("hunter2\n")
    (tmp_path / "binary").write_bytes(b"hunter2\xff\xfe")

    class Pin(StrictModel):
        token: int

    with pytest.raises(ConfigError) as caught:
        validate_file(Pin, load(tmp_path, "token_file: pin\n"))
    assert (
        str(caught.value)
        == f"{tmp_path}/benchwatch.yaml:1: token: Input should be a valid integer, unable to parse string as an integer"
    )
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert problems(tmp_path, "token_file: binary\n") == [
        f"benchwatch.yaml:1: cannot read token_file '{tmp_path}/binary': not UTF-8 text"
    ]


def test_only_a_secret_key_is_read_from_a_file(tmp_path: Path) -> None:
    """`when_file: /proc/self/environ` used to be read into `when`, whose error quoted it: every variable."""
    (tmp_path / "environ").write_text("AWS_SECRET_ACCESS_KEY=hunter2\n")
    assert problems(tmp_path, "rules:\n  - when_file: environ\n") == [
        "benchwatch.yaml:2: rules[0]: when_file: only a secret key can be read from a file (api_key, bearer_token, ca, "
        "password, routing_key, secret, token, url, webhook_url)"
    ]


def test_the_keys_read_from_files_are_the_configs_secrets() -> None:
    """Every `SecretStr` field of the config may come from a file, and nothing else but `ca` (a PEM bundle)."""
    from watcher.app.config import Config as AppConfig

    secret_fields: set[str] = set()
    models: list[type[BaseModel]] = [AppConfig]
    while models:
        model = models.pop()
        for name, info in model.model_fields.items():
            if SecretStr in _members(info.annotation):  # SecretStr or SecretStr | None; not a dict of them
                secret_fields.add(info.alias or name)
            models.extend(
                arg for arg in _all_types(info.annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)
            )
    assert secret_fields | {"ca"} == SECRET_FILE_KEYS


def _members(annotation: Any) -> set[Any]:
    """The types a field may hold directly: the members of a union (through Annotated), or the type itself."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {member for arg in typing.get_args(annotation) for member in _members(arg)}
    return {annotation}


def _all_types(annotation: Any) -> list[Any]:
    """Every type named anywhere in an annotation (lists, dicts, unions, Annotated)."""
    args = typing.get_args(annotation)
    return [annotation] if not args else [found for arg in args for found in _all_types(arg)]


# --- reading and syntax -----------------------------------------------------------------------------------------


def test_an_unreadable_config_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_yaml(path, {})
    assert str(caught.value) == f"{path}: cannot read: No such file or directory"


def test_a_config_that_is_not_utf8_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "benchwatch.yaml"
    path.write_bytes(b"a: 1\nb: \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path, {})
    assert str(caught.value) == f"{path}:2: cannot read: not UTF-8 text"


def test_a_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    assert problems(tmp_path, "rules:\n  - name: a\n   on: job.failed\n") == [
        "benchwatch.yaml:3: YAML syntax error: expected <block end>, but found '<block mapping start>'"
    ]
    assert problems(tmp_path, "a: [1, 2\nb: 3\n") == [
        "benchwatch.yaml:2: YAML syntax error: expected ',' or ']', but got ':'"
    ]
    assert problems(tmp_path, "a: *nowhere\n") == [
        "benchwatch.yaml:1: YAML syntax error: found undefined alias 'nowhere'"
    ]


def test_all_problems_of_a_file_are_listed_together_in_file_order(tmp_path: Path) -> None:
    text = """
        notifiers:
          team:
            token_file: missing
            url: ${SLACK_URL}
          team:
            type: console
        rules:
          - <<: {}
            name: ${}
        """
    assert problems(tmp_path, text) == [
        f"benchwatch.yaml:3: notifiers.team: cannot read token_file '{tmp_path}/missing': No such file or directory",
        "benchwatch.yaml:4: notifiers.team.url: environment variable SLACK_URL is not set",
        "benchwatch.yaml:5: notifiers: duplicate key 'team'",
        "benchwatch.yaml:8: rules[0]: merge keys (<<) are not supported",
        "benchwatch.yaml:9: rules[0].name: malformed ${...} reference",
    ]


# --- StrictModel ------------------------------------------------------------------------------------------------


def _only_error(model: type[BaseModel], data: dict[str, Any]) -> ErrorDetails:
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate(data)
    (error,) = caught.value.errors()
    return error


def test_an_unknown_key_suggests_the_key_meant() -> None:
    error = _only_error(Rule, {"name": "a", "on": "job.failed", "notfiy": ["team"]})
    assert error["type"] == "unknown_key"
    assert error["msg"] == "unknown key 'notfiy' (did you mean 'notify'?)"
    assert error["ctx"]["key"] == "notfiy"


def test_an_unknown_key_without_a_close_match_has_no_hint() -> None:
    error = _only_error(Console, {"type": "console", "colour": "red"})
    assert error["msg"] == "unknown key 'colour'"


def test_the_first_of_several_unknown_keys_is_reported() -> None:
    error = _only_error(Console, {"tpye": "console", "colour": "red"})
    assert error["msg"] == "unknown key 'tpye' (did you mean 'type'?)"


def test_an_aliased_field_is_spelled_by_its_alias() -> None:
    rule = Rule.model_validate({"name": "a", "on": "job.failed", "notify": ["team"], "continue": False})
    assert rule.continue_ is False
    error = _only_error(Rule, {"name": "a", "on": "job.failed", "notify": ["team"], "continue_": False})
    assert error["msg"] == "unknown key 'continue_' (did you mean 'continue'?)"


def test_a_field_name_is_accepted_when_the_model_validates_by_name() -> None:
    class ByName(StrictModel):
        model_config = ConfigDict(populate_by_name=True)
        wait_ms: int = Field(0, alias="wait")

    assert ByName.model_validate({"wait_ms": 5}).wait_ms == 5


def test_a_strict_model_is_frozen() -> None:
    console = Console(type="console")
    with pytest.raises(pydantic.ValidationError):
        console.type = "console"  # type: ignore[misc]


# --- validation problems ----------------------------------------------------------------------------------------


def test_validation_problems_have_key_paths_without_union_tags_and_lines(tmp_path: Path) -> None:
    text = """
        notifiers:
          team:
            type: slack
            token: 5
          ops:
            type: slak
          desk:
            type: console
          pager:
            type: slack
        rules:
          - name: a
            on: job.failed
            notify: [team]
          - name: b c
            on: job.failed
          - name: c
            on: job.finished
            notfiy: [desk]
          - name: d
            on: job.failed
            notify: [team]
            severity: loud
        """
    assert validation_problems(tmp_path, Config, text) == [
        "benchwatch.yaml:4: notifiers.team.token: Input should be a valid string",
        "benchwatch.yaml:6: notifiers.ops.type: unknown type 'slak' (did you mean 'slack'?)",
        "benchwatch.yaml:9: notifiers.pager: missing required key 'token'",
        "benchwatch.yaml:15: rules[1]: missing required key 'notify'",
        "benchwatch.yaml:15: rules[1].name: a rule name is one word",
        "benchwatch.yaml:19: rules[2].notfiy: unknown key 'notfiy' (did you mean 'notify'?)",
        "benchwatch.yaml:23: rules[3].severity: Input should be 'info' or 'critical'",
    ]


def test_problems_at_the_root_have_no_path(tmp_path: Path) -> None:
    assert validation_problems(tmp_path, Config, "# empty\nrules: []\n") == [
        "benchwatch.yaml:2: missing required key 'notifiers'"
    ]
    assert validation_problems(tmp_path, Config, "notifiers: {}\nrules: []\nrulez: []\n") == [
        "benchwatch.yaml:3: rulez: unknown key 'rulez' (did you mean 'rules'?)"
    ]


def test_extra_forbidden_of_a_plain_model_is_an_unknown_key(tmp_path: Path) -> None:
    class Plain(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: int

    loaded = load(tmp_path, "a: 1\nb: 2\n")
    with pytest.raises(pydantic.ValidationError) as caught:
        Plain.model_validate(loaded.data)
    assert problems_from_validation(caught.value, loaded) == [
        ConfigProblem(str(loaded.path), 2, "b", "unknown key 'b'")
    ]


def test_validate_file_returns_the_model(tmp_path: Path) -> None:
    text = "notifiers:\n  team: {type: slack, token: abc}\n  out: {type: console}\nrules:\n"
    text += "  - {name: a, on: job.failed, notify: [team, out], continue: false}\n"
    config = validate_file(Config, load(tmp_path, text))
    assert config.notifiers["team"] == Slack(type="slack", token="abc")
    assert config.rules[0].notify == ["team", "out"]
    assert config.rules[0].continue_ is False


def test_on_is_a_key_not_a_boolean_when_validated(tmp_path: Path) -> None:
    config = validate_file(Rule, load(tmp_path, "name: a\non: yes\nnotify: [team]\n"))
    assert config.on == "yes"
