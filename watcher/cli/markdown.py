"""A comparison as GitHub-flavoured markdown, for a pull request comment or a CI step summary: one compact table
(a row per agent), the power warnings in words, and the scenarios behind the counts, folded.

Every string from the API (job, agent, model and scenario names, URLs) is escaped for where it lands: a table cell
keeps its `|` and backticks literal and stays on one line; GitHub renders HTML inside markdown, so `<` and `&` are
entities; a link's URL is percent-encoded where markdown would end it early.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from watcher.core.comparison import AgentComparison, ComparisonFields, RegressionRef, ScenarioRef

MAX_LISTED: Final = 20  # scenarios named per list in the folded details; the rest are counted
_SPECIAL: Final = re.compile(r"([\\`*_\[\]|~#!])")


def md_text(text: str) -> str:
    """API text as inline markdown that renders as itself: one line, markdown punctuation escaped, no HTML."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", flat)


def md_link(label: str, url: str | None) -> str:
    """`[label](url)` with both escaped; the label alone when there is no URL."""
    if not url:
        return md_text(label)
    safe = "".join(ch if ch.isprintable() and ch not in " ()<>\\`|" else f"%{ord(ch):02X}" for ch in url)
    return f"[{md_text(label)}]({safe})"


def comparison_markdown(job_name: str, comparison: ComparisonFields, *, heading: str = "###") -> str:
    """The comparison of `job_name` with its baseline: a heading, the table, warnings, the folded scenario lists."""
    title = f"{heading} {md_text(job_name)} vs {md_text(comparison.baseline_job_name)}"
    lines = [title, "", f"{_verdict(comparison)} · benchmark {md_text(comparison.benchmark)}", ""]
    if comparison.agents:
        lines += [
            "| agent | score | Δ (95 % interval) | significant | regressions | fixes | flaky | infra |",
            "|---|---|---|---|--:|--:|--:|--:|",
        ]
        lines += [_agent_row(agent, several=len(comparison.agents) > 1) for agent in comparison.agents]
    else:
        lines.append("No agent (name and model) ran in both jobs.")
    warnings = [f"> ⚠️ {_agent_name(a)}: {md_text(a.power_warning)}" for a in comparison.agents if a.power_warning]
    if warnings:
        lines += ["", *warnings]
    if comparison.unpaired_agents:
        unpaired = ", ".join(md_text(name) for name in comparison.unpaired_agents)
        lines += ["", f"In only one of the two jobs: {unpaired}"]
    for label, field in _LISTS:
        folded = _folded(label, [(agent, getattr(agent, field)) for agent in comparison.agents])
        if folded:
            lines += ["", *folded]
    return "\n".join(lines) + "\n"


def _agent_row(agent: AgentComparison, *, several: bool) -> str:
    interval = f"{_signed(agent.delta)} ({_signed(agent.ci_low)} … {_signed(agent.ci_high)})"
    p_text = f"p = {agent.p_value:.3g}"
    if several and agent.p_adjusted is not None:
        p_text += f", adjusted {agent.p_adjusted:.3g}"
    significant = f"**yes** ({p_text})" if agent.significant else f"no ({p_text})"
    new = sum(1 for ref in agent.regressions if isinstance(ref, RegressionRef) and ref.new)
    regressions = f"{len(agent.regressions)}" + (f" ({new} new)" if new else "")
    cells = [
        _agent_name(agent),
        f"{agent.baseline_score:.3f} → {agent.score:.3f}",
        interval,
        significant,
        regressions,
        str(len(agent.fixes)),
        str(len(agent.flaky)),
        str(len(agent.infra)),
    ]
    return "| " + " | ".join(cells) + " |"


def _verdict(comparison: ComparisonFields) -> str:
    drops = [a for a in comparison.agents if a.significant and a.delta < 0]
    if drops:
        return "❌ significant drop: " + ", ".join(_agent_name(a) for a in drops)
    if comparison.n_regressions:
        return f"⚠️ {comparison.n_regressions} regressed, no significant drop"
    return "✅ no regression"


_LISTS: Final = (("Regressed", "regressions"), ("Fixed", "fixes"), ("Flaky (not counted)", "flaky"),
                 ("Failed in setup (not counted)", "infra"))  # fmt: skip


def _folded(label: str, per_agent: Sequence[tuple[AgentComparison, Sequence[ScenarioRef]]]) -> list[str]:
    total = sum(len(refs) for _, refs in per_agent)
    if not total:
        return []
    lines = [f"<details><summary>{label} ({total})</summary>", ""]
    for agent, refs in per_agent:
        if not refs:
            continue
        named = ", ".join(_ref(ref) for ref in refs[:MAX_LISTED])
        more = f" and {len(refs) - MAX_LISTED} more" if len(refs) > MAX_LISTED else ""
        lines.append(f"- {_agent_name(agent)}: {named}{more}")
    return [*lines, "", "</details>"]


def _ref(ref: ScenarioRef) -> str:
    text = md_link(ref.scenario_name, ref.url)
    return text + " (new)" if isinstance(ref, RegressionRef) and ref.new else text


def _agent_name(agent: AgentComparison) -> str:
    model = f" ({md_text(agent.model_name)})" if agent.model_name else ""
    return f"{md_text(agent.agent_name)}{model}"


def _signed(value: float) -> str:
    text = f"{value:+.3f}"
    return "−" + text[1:] if text.startswith("-") else text
