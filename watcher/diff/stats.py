"""The statistics of a comparison, in pure Python (no numpy): a paired bootstrap, an exact McNemar test, the
Holm–Bonferroni adjustment across agents, and the McNemar test's power against a given drop.

All are deterministic: the bootstrap's random stream is seeded from its own input, so the same paired scores always
give the same interval, on every machine and every run.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from statistics import NormalDist
from typing import Final

BOOTSTRAP_RESAMPLES: Final = 2000
EXACT_POWER_MAX_PAIRS: Final = 1000
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


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given: the i-th smallest of m is multiplied by m − i + 1,
    then made monotone (never below the one before it in sorted order) and capped at 1. Rejecting where the adjusted
    value is below α keeps the chance of any false alarm among the m tests below α."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def mcnemar_power(n_pairs: int, drop: float, discordance: float, alpha: float = 0.05) -> float:
    """The chance that the exact McNemar test (p < `alpha`) sees a drop of `drop` in pass rate over `n_pairs` pairs.

    The model: each pair is discordant (flipped) with probability `discordance` (ψ) — then the number of flips is
    Binomial(n, ψ) — and a flip is a drop with probability π = (ψ + δ) / 2ψ, so drops minus rises average δ·n. The
    power sums, over every number of flips d, P(d flips) × P(the drops among them are many enough that the test
    rejects). Exact up to EXACT_POWER_MAX_PAIRS pairs (flip counts more than 9 standard deviations from the mean
    left out); above, the normal approximation Φ((δ·√n − z₁₋α/₂·√ψ) / √(ψ − δ²)), which is close there.
    """
    if n_pairs <= 0 or drop <= 0:
        return 0.0
    psi = min(1.0, max(discordance, drop))  # a drop of δ needs at least δ·n flips
    if n_pairs > EXACT_POWER_MAX_PAIRS:
        normal = NormalDist()
        spread = math.sqrt(max(psi - drop**2, 1e-12))
        return normal.cdf((drop * math.sqrt(n_pairs) - normal.inv_cdf(1 - alpha / 2) * math.sqrt(psi)) / spread)
    down = (psi + drop) / (2 * psi)
    power = 0.0
    for flips in _likely_counts(n_pairs, psi):
        critical = _critical_downs(flips, alpha)
        if critical is not None:
            power += _binomial_pmf(flips, n_pairs, psi) * _binomial_upper(critical, flips, down)
    return min(1.0, power)


def mcnemar_sample_size(drop: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """About how many pairs the McNemar test needs to see a drop of `drop` with `power`: Connor's (1987) normal
    approximation n = (z₁₋α/₂·√ψ + z_power·√(ψ − δ²))² / δ², then stepped up (by 2 % of it) until the exact
    power reaches `power` — the exact test is a little more conservative than the approximation."""
    psi = min(1.0, max(discordance, drop))
    estimate = connor_sample_size(drop, psi, alpha, power)
    step = max(1, estimate // 50)
    for n_pairs in range(estimate, 2 * estimate + step, step):
        if mcnemar_power(n_pairs, drop, psi, alpha) >= power:
            return n_pairs
    return estimate  # pragma: no cover - the exact power passes the target well before twice the estimate


def connor_sample_size(drop: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Connor's (1987) normal approximation of the pairs a McNemar test needs:
    ⌈(z₁₋α/₂·√ψ + z_power·√(ψ − δ²))² / δ²⌉."""
    psi = min(1.0, max(discordance, drop))
    normal = NormalDist()
    z_alpha, z_power = normal.inv_cdf(1 - alpha / 2), normal.inv_cdf(power)
    return math.ceil((z_alpha * math.sqrt(psi) + z_power * math.sqrt(max(0.0, psi - drop**2))) ** 2 / drop**2)


def _likely_counts(n: int, p: float) -> range:
    """The counts of Binomial(n, p) that carry any weight: within 9 standard deviations of the mean."""
    spread = 9 * math.sqrt(n * p * (1 - p)) + 2
    return range(max(0, math.floor(n * p - spread)), min(n, math.ceil(n * p + spread)) + 1)


def _critical_downs(flips: int, alpha: float) -> int | None:
    """The fewest drops among `flips` flips at which the exact two-sided McNemar p-value is below `alpha`."""
    tail = 0
    coefficient = 1
    for rises in range(flips // 2 + 1):  # drops = flips − rises; the p-value only grows as rises grow
        tail += coefficient
        if (2 * tail) / (1 << flips) >= alpha:
            return flips - rises + 1 if rises > 0 else None
        coefficient = coefficient * (flips - rises) // (rises + 1)
    return None  # pragma: no cover - the loop reaches a balanced split, whose p-value is 1


def _binomial_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)
    return math.exp(log)


def _binomial_upper(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p)."""
    return math.fsum(_binomial_pmf(i, n, p) for i in range(max(0, k), n + 1))
