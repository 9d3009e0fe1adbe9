"""What the benchmarks read about their own process: CPU, peak memory, and percentiles."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import time
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")


def peak_rss_mb() -> float | None:
    """The process's peak resident set (VmHWM) since start or the last `reset_peak_rss`; None off Linux."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> None:
    """Give freed memory back to the system, then restart the peak from the current RSS (Linux)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError), Path("/proc/self/clear_refs").open("w") as handle:
        handle.write("5")


@dataclass
class Stopwatch:
    """CPU seconds of this process (every thread: the SQLite store runs in one) and wall seconds since `start`."""

    cpu_start: float = 0.0
    wall_start: float = 0.0

    @classmethod
    def start(cls) -> Stopwatch:
        """A stopwatch running from now."""
        return cls(time.process_time(), time.perf_counter())

    def cpu_s(self) -> float:
        """CPU seconds since the start."""
        return time.process_time() - self.cpu_start

    def wall_s(self) -> float:
        """Wall seconds since the start."""
        return time.perf_counter() - self.wall_start


class GcTimer:
    """CPU seconds the garbage collector takes while the `with` block runs (through `gc.callbacks`)."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self._started = 0.0

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.cpu_s += time.process_time() - self._started


def stderr_of_mean(values: list[float]) -> float | None:
    """The standard error of the mean (sample standard deviation / √n); None for fewer than two values."""
    if len(values) < 2:
        return None
    average = sum(values) / len(values)
    variance = sum((value - average) ** 2 for value in values) / (len(values) - 1)
    return float((variance / len(values)) ** 0.5)


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (`share` in 0..1), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def mean(values: list[float]) -> float | None:
    """The arithmetic mean, None for no values."""
    return sum(values) / len(values) if values else None
