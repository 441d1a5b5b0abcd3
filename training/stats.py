"""Seed-noise statistics for comparing training configurations (story 000: is 96.9% vs 96.2% over 3 runs real?).

Each configuration is trained with several seeds; its test accuracies are a sample. A difference between two
configurations is only evidence when it is large compared with the spread between seeds of one configuration.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
POWER = 0.8


@dataclasses.dataclass(frozen=True)
class Summary:
    """One configuration's results over n seeds; the interval is Student's t interval for the mean."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    minimum: float
    maximum: float


def summarize(values: Sequence[float]) -> Summary:
    x = np.asarray(values, np.float64)
    n = len(x)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    half = float(scipy_stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * std / math.sqrt(n)) if n > 1 else math.inf
    return Summary(n, mean, std, mean - half, mean + half, float(x.min()), float(x.max()))


@dataclasses.dataclass(frozen=True)
class Comparison:
    """mean(a) - mean(b) with Welch's confidence interval and t-test, and the seeds a study would need."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    seeds_needed: float  # per configuration, to detect this difference at 80% power and alpha 0.05
    distinguishable: bool


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's two-sample comparison (unequal variances), as `scipy.stats.ttest_ind(equal_var=False)`."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    difference = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        same = difference == 0
        return Comparison(difference, difference, difference, 1.0 if same else 0.0, math.inf if same else 2,
                          not same)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = scipy_stats.t.ppf((1 + CONFIDENCE) / 2, df) * se
    p_value = float(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Comparison(difference, difference - half, difference + half, p_value,
                      seeds_needed(difference, a.std(ddof=1), b.std(ddof=1)), p_value < 1 - CONFIDENCE)


def seeds_needed(difference: float, std_a: float, std_b: float) -> float:
    """Seeds per configuration for a two-sided test at alpha 0.05 to detect `difference` with 80% power
    (normal approximation: n = (z_{1-alpha/2} + z_{power})^2 (s_a^2 + s_b^2) / difference^2)."""
    if difference == 0:
        return math.inf
    z = scipy_stats.norm.ppf((1 + CONFIDENCE) / 2) + scipy_stats.norm.ppf(POWER)
    return float(math.ceil(z**2 * (std_a**2 + std_b**2) / difference**2))


# ---- TEMPORARY stand-in for the sequential verdict of the statistics work, replaced by it at merge. Only its
# signature and fields are relied on (training.experiment's --seeds=auto loop); its statistics are not tested. ----

@dataclasses.dataclass(frozen=True)
class SequentialVerdict:
    settled: bool
    outcome: str  # "different", "equivalent" or "undecided"
    reason: str


def sequential_verdict(a: Sequence[float], b: Sequence[float], *, max_seeds: int, min_effect: float,
                       n_test_a=None, n_test_b=None, paired=False) -> SequentialVerdict:
    """TEMPORARY: Welch's 95% interval of mean(a) - mean(b): excluding 0 is "different", inside
    (-min_effect, min_effect) is "equivalent", anything else "undecided" (no correction for looking repeatedly)."""
    if min(len(a), len(b)) < 2:
        return SequentialVerdict(False, "undecided", "fewer than 2 seeds per configuration")
    c = compare(a, b)
    if c.ci_low > 0 or c.ci_high < 0:
        return SequentialVerdict(True, "different", f"95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}] excludes 0")
    if -min_effect < c.ci_low and c.ci_high < min_effect:
        return SequentialVerdict(True, "equivalent", f"95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}] within "
                                 f"+-{min_effect}")
    return SequentialVerdict(False, "undecided", f"95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}] after "
                             f"{min(len(a), len(b))} of at most {max_seeds} seeds")
