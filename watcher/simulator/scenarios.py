"""Ready-made job specs: the demo's cast, each showing one thing a watcher must notice."""

from __future__ import annotations

from watcher.simulator.plan import SimAgent, SimJobSpec


def demo_specs(prefix: str = "demo") -> list[SimJobSpec]:
    """Four jobs: one completes, one fails in setup, one has a burst of scenario failures, one stalls."""
    return [
        SimJobSpec(name=f"{prefix}-nightly-completes", n_scenarios=12, concurrency=4, n_attempts=1),
        SimJobSpec(
            name=f"{prefix}-setup-fails",
            n_scenarios=12,
            outcome="failed",
            end_after_s=120,
            agents=[SimAgent(name="claude-code", model_name="claude-sonnet-4-6")],
        ),
        SimJobSpec(
            name=f"{prefix}-failure-burst",
            n_scenarios=16,
            concurrency=8,
            fail_rate=0.45,
            timeout_rate=0.1,
            agents=[SimAgent(name="codex", model_name="gpt-5", pass_rate=0.4)],
        ),
        SimJobSpec(name=f"{prefix}-stalls", n_scenarios=12, concurrency=3, stall_after_s=420),
    ]
