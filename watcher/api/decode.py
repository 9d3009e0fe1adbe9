"""Scenario-run pages decoded straight from the response bytes (msgspec) into the statuses the diff reads."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec

from watcher.api.errors import MalformedResponseError, SchemaError
from watcher.core.scenario_runs import ScenarioRunStatus

if TYPE_CHECKING:
    from pydantic import BaseModel

ModelT = TypeVar("ModelT", bound="BaseModel")


class ScenarioRunPage(msgspec.Struct, frozen=True):
    """One page of `GET /v1/benchmark_runs/{id}/scenario_runs`, reduced to what the watcher reads."""

    runs: tuple[ScenarioRunStatus, ...] = ()
    has_more: bool = False


# strict=False: numbers sent as strings and the like are read as pydantic's lax mode reads them elsewhere
_PAGE: Final = msgspec.json.Decoder(ScenarioRunPage, strict=False)


def decode_page(path: str, body: bytes) -> ScenarioRunPage:
    """Decode a scenario-run page; MalformedResponseError when it is not JSON, SchemaError when not a page."""
    try:
        return _PAGE.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return _decode_leniently(path, body)  # the slow path, only for a page the fast decoder refused


def _decode_leniently(path: str, body: bytes) -> ScenarioRunPage:
    """A page the fast decoder refused, read again as the job views are: a number too large for a float (`1e400`)
    or `NaN` / `Infinity` reads as unknown (None). Bytes that are not JSON at all may be a mangled answer
    (MalformedResponseError: retried); JSON that no retry will fix — invalid UTF-8, a lone surrogate, nesting too
    deep — is that run's SchemaError, which costs its job's poll only."""
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise SchemaError(f"GET {path}: response is not valid UTF-8", status=200) from None
    except RecursionError:
        raise SchemaError(f"GET {path}: response is nested too deep", status=200) from None
    except ValueError:
        raise MalformedResponseError(f"GET {path}: response is not valid JSON", status=200) from None
    try:
        return msgspec.convert(without_non_finite(data), ScenarioRunPage, strict=False)
    except msgspec.ValidationError as exc:
        raise SchemaError(f"GET {path}: unexpected response shape: {exc}", status=200) from None
    except UnicodeEncodeError:  # a lone surrogate (`\ud83d`), which no store or terminal can hold
        raise SchemaError(f"GET {path}: response holds an invalid unicode escape", status=200) from None
    except RecursionError:
        raise SchemaError(f"GET {path}: response is nested too deep", status=200) from None


def without_non_finite(value: Any) -> Any:
    """`value` (parsed JSON) with every non-finite number read as absent — left out of its object (the field's
    default then: None, or a counter's 0), None in an array — and every string checked to be encodable
    (UnicodeEncodeError for a lone surrogate)."""
    if isinstance(value, str):
        value.encode()
        return value
    if isinstance(value, list):
        return [None if _non_finite(item) else without_non_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: without_non_finite(item) for key, item in value.items() if not _non_finite(item)}
    return value


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def validate_finite(model: type[ModelT], data: bytes | dict[str, Any]) -> ModelT:
    """`model` from JSON bytes or parsed JSON, a non-finite number read as absent (see `ApiModel`): the usual
    answer is validated once; one holding `1e400` or `NaN` is read again without them. ValidationError as
    pydantic raises it for anything else."""
    from pydantic import ValidationError  # here: decoding scenario pages (msgspec) must not load pydantic

    try:
        return model.model_validate_json(data) if isinstance(data, bytes) else model.model_validate(data)
    except ValidationError as exc:
        if not any(error["type"] == "finite_number" for error in exc.errors(include_url=False)):
            raise
    parsed = json.loads(data) if isinstance(data, bytes) else data
    return model.model_validate(without_non_finite(parsed))


def decode_pages(run_id: str, bodies: Sequence[bytes]) -> tuple[ScenarioRunStatus, ...]:
    """Every scenario run on a run's pages, in page order (one page, the usual case, is not copied)."""
    path = f"/v1/benchmark_runs/{run_id}/scenario_runs"
    if len(bodies) == 1:
        return decode_page(path, bodies[0]).runs
    return tuple(status for body in bodies for status in decode_page(path, body).runs)
