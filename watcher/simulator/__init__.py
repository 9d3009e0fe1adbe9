"""The Runloop simulator: how benchwatch is demonstrated, tested and benchmarked without a Runloop account."""

from watcher.simulator.plan import JobPlan, SimAgent, SimJobSpec
from watcher.simulator.scenarios import demo_specs
from watcher.simulator.server import create_app
from watcher.simulator.state import Faults, RawJson, Simulator

__all__ = ["Faults", "JobPlan", "RawJson", "SimAgent", "SimJobSpec", "Simulator", "create_app", "demo_specs"]
