"""An agent's trend as a small SVG chart for the status page: score and pass rate over the last comparable jobs,
significant drops marked. A pure function returning the SVG text; every string from the API is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final

from watcher.diff.trend import TrendPoint

WIDTH: Final = 320
HEIGHT: Final = 96
_PAD: Final = 8
_SCORE_COLOUR: Final = "#2563eb"
_PASS_COLOUR: Final = "#16a34a"
_DROP_COLOUR: Final = "#dc2626"


def trend_svg(points: Sequence[TrendPoint], *, title: str) -> str:
    """An inline `<svg>` (no scripts, no external references): the score line (blue), the pass-rate line (green,
    dashed), a red dot under each significant drop; each point's tooltip names its job. Scale: 0 to 1."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff" stroke="#ddd"/>',
    ]
    if points:
        parts.append(_polyline([p.score for p in points], _SCORE_COLOUR, dashed=False))
        parts.append(_polyline([p.pass_rate for p in points], _PASS_COLOUR, dashed=True))
        parts.extend(_point(index, len(points), point) for index, point in enumerate(points))
    else:
        parts.append(f'<text x="{_PAD}" y="{HEIGHT // 2}" font-size="12" fill="#666">no comparable jobs yet</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _x(index: int, count: int) -> float:
    if count == 1:
        return WIDTH / 2
    return _PAD + index * (WIDTH - 2 * _PAD) / (count - 1)


def _y(value: float) -> float:
    share = min(1.0, max(0.0, value))
    return HEIGHT - _PAD - share * (HEIGHT - 2 * _PAD)


def _polyline(values: Sequence[float], colour: str, *, dashed: bool) -> str:
    coordinates = " ".join(f"{_x(i, len(values)):.1f},{_y(v):.1f}" for i, v in enumerate(values))
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    return f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'


def _point(index: int, count: int, point: TrendPoint) -> str:
    x, y = _x(index, count), _y(point.score)
    label = f"{point.job_name}: score {point.score:.3f}, pass rate {point.pass_rate:.0%}"
    if point.significant_drop:
        label += " — significant drop"
    colour = _DROP_COLOUR if point.significant_drop else _SCORE_COLOUR
    radius = 4 if point.significant_drop else 2.5
    return (
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}" '
        f'class="{"drop" if point.significant_drop else "point"}"><title>{escape(label)}</title></circle>'
    )
