"""Scenario-run pages decoded straight from the response bytes (msgspec) into the statuses the diff reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from watcher.api.errors import MalformedResponseError, SchemaError
from watcher.core.scenario_runs import ScenarioRunStatus


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
    except msgspec.ValidationError as exc:
        raise SchemaError(f"GET {path}: unexpected response shape: {exc}", status=200) from None
    except msgspec.DecodeError:
        raise MalformedResponseError(f"GET {path}: response is not valid JSON", status=200) from None


def decode_pages(run_id: str, bodies: Sequence[bytes]) -> tuple[ScenarioRunStatus, ...]:
    """Every scenario run on a run's pages, in page order (one page, the usual case, is not copied)."""
    path = f"/v1/benchmark_runs/{run_id}/scenario_runs"
    if len(bodies) == 1:
        return decode_page(path, bodies[0]).runs
    return tuple(status for body in bodies for status in decode_page(path, body).runs)
