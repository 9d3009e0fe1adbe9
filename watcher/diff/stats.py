"""The two statistics of a comparison, in pure Python (no numpy): a paired bootstrap and an exact McNemar test.

Both are deterministic: the bootstrap's random stream is seeded from its own input, so the same paired scores always
give the same interval, on every machine and every run.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import Final

BOOTSTRAP_RESAMPLES: Final = 2000
CONFIDENCE: Final = 0.95


def mcnemar_exact(n_pass_to_fail: int, n_fail_to_pass: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs against 1/2.

    Under "no change", each scenario that flipped is as likely to have flipped down as up; the p-value is the
    chance of a split at least as lopsided as the one seen. No flips at all: 1.0.
    """
    if n_pass_to_fail < 0 or n_fail_to_pass < 0:
        raise ValueError("flip counts cannot be negative")
    n = n_pass_to_fail + n_fail_to_pass
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(n_pass_to_fail, n_fail_to_pass) + 1))
    return min(1.0, (2 * tail) / (1 << n))  # exact big-integer division: no overflow for many flips


def paired_bootstrap(
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile interval of the mean paired difference (current − baseline), resampling scenarios.

    Each resample draws as many scenarios as there are, with replacement, keeping each scenario's two scores
    together — the pairing is what makes a small change on the same scenarios detectable.
    """
    if len(baseline) != len(current):
        raise ValueError("the two score lists must pair up")
    diffs = [now - before for before, now in zip(baseline, current, strict=True)]
    if not diffs:
        return (0.0, 0.0)
    if min(diffs) == max(diffs):  # every resample gives the same mean
        return (diffs[0], diffs[0])
    rng = random.Random(bootstrap_seed(diffs))
    n = len(diffs)
    means = sorted(math.fsum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = means[math.floor(tail * resamples)]
    high = means[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]
    return (low, high)


def bootstrap_seed(diffs: Sequence[float]) -> int:
    """A seed drawn from the input itself: the same differences, in the same order, give the same seed."""
    text = ",".join(repr(round(d, 12)) for d in diffs)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
