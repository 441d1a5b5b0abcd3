"""The numbers behind `training.stats`: the permutation test and interval of a difference in means with the
test set's sampling noise added (`analyse`, vectorised over a batch of experiments, which the simulations in
tests/training/test_stats.py rely on), and the seeds an experiment needs (`seeds_needed`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Union

import numpy as np
from scipy import stats as scipy_stats

from training import permutation

ALPHA = 0.05
CONFIDENCE = 1 - ALPHA
POWER = 0.8
PLANNING_CONFIDENCE = 0.8  # seeds_needed plans with this upper confidence bound of the seed variance

TestExamples = Union[None, int, Sequence[int]]


MAX_SEEDS = 1_000_000  # seeds_needed beyond this is reported as inf (out of reach)


def _count(x) -> int:
    if isinstance(x, (bool, np.bool_)) or not float(x).is_integer():
        raise ValueError(f"test examples {x!r}: expected a whole number of examples")
    return int(x)


def _examples(n_test: TestExamples, runs: Optional[int] = None) -> Optional[int]:
    """The test-set size of a configuration's runs (the smallest, if they differ); None when unknown. A list
    gives one size per run (`runs` of them, when given)."""
    if n_test is None:
        return None
    sizes = [_count(n_test)] if np.isscalar(n_test) else [_count(x) for x in n_test]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"test examples {n_test!r}: expected a positive count per run")
    if runs is not None and not np.isscalar(n_test) and len(sizes) != runs:
        raise ValueError(f"{len(sizes)} test-set sizes for {runs} runs: expected one per run")
    return min(sizes)


def checked(values, n_test: TestExamples = None, what: str = "values") -> tuple[np.ndarray, Optional[int]]:
    """The values as an array and the test-set size, or a ValueError saying what is wrong: a value that is not
    finite (a diverged run), or, with a test-set size, one outside [0, 1] (a loss, or an accuracy in percent:
    the binomial noise of N examples is for fractions)."""
    x = np.asarray(values, np.float64)
    bad = np.flatnonzero(~np.isfinite(x))
    if len(bad):
        raise ValueError(f"{what}: value {x.flat[bad[0]]} (run {bad[0]}) is not finite: a diverged run cannot be "
                         "compared; drop or rerun it")
    examples = _examples(n_test, len(x) if x.ndim == 1 else None)
    if examples is not None and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{what}: values from {x.min():g} to {x.max():g} with a test-set size: an accuracy counted "
                         "on N examples is a fraction between 0 and 1 (pass a loss or percent without n_test)")
    return x, examples


def evaluation_variance(mean, n_test: Optional[int]):
    """Variance of an accuracy counted on `n_test` examples, as an estimate of the accuracy on new data: the
    binomial p(1-p)/N with the Agresti-Coull p = (k + 2) / (N + 4), so that 0/N and N/N are not certain.
    0 when N is unknown (a metric that is not an accuracy, or an older metrics.json)."""
    if n_test is None:
        return np.zeros_like(np.asarray(mean, np.float64))
    p = (np.asarray(mean, np.float64) * n_test + 2) / (n_test + 4)
    return p * (1 - p) / n_test


@dataclasses.dataclass(frozen=True)
class Analysis:
    """The difference mean(a) - mean(b) of a batch of experiments (arrays, one entry per experiment)."""

    difference: np.ndarray
    p_value: np.ndarray  # permutation test: seed noise only (this test set)
    p_new_data: np.ndarray  # the permutation distribution convolved with the test sets' noise (new data)
    ci_low: np.ndarray  # seed interval widened by the test set's noise
    ci_high: np.ndarray
    test_noise_std: np.ndarray  # sd of the difference from the test sets' sampling
    relabelings: permutation.Relabelings

    alpha: float = ALPHA

    @property
    def distinguishable(self) -> np.ndarray:
        """An interval that excludes 0; it holds 0 whenever p or p_new_data exceeds alpha (`analyse`)."""
        return (self.ci_low > 0) | (self.ci_high < 0)


def analyse(a, b, *, n_test_a: Optional[int] = None, n_test_b: Optional[int] = None, paired: bool = False,
            alpha: float = ALPHA) -> Analysis:
    """`compare`'s numbers for a batch: a (experiments, n_a), b (experiments, n_b), vectorised."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if paired and a.shape != b.shape:
        raise ValueError(f"a paired comparison needs one value per seed on both sides ({a.shape[1]} and "
                         f"{b.shape[1]} seeds)")
    rel = permutation.relabelings_for(a.shape[1], b.shape[1], paired)
    z = a - b if paired else np.concatenate([a, b], axis=1)
    centred, tie = permutation.prepared(z, rel)
    difference = (centred @ rel.weights[:, 0]) if rel.contrasts else a.mean(axis=1) - b.mean(axis=1)
    difference = np.where(np.abs(difference) <= tie[:, 0], 0.0, difference)  # equal but for rounding
    p = permutation.p_values(z, rel)
    low, high = permutation.shift_interval(z, difference, rel, alpha)
    # The interval is the shifts the test keeps; shift 0 is kept exactly when p > alpha, whatever the rounding.
    noise = np.sqrt(evaluation_variance(a.mean(axis=1), n_test_a) + evaluation_variance(b.mean(axis=1), n_test_b))
    widen = scipy_stats.norm.ppf(1 - alpha / 2) * noise
    with np.errstate(invalid="ignore"):
        ci_low = difference - np.hypot(difference - low, widen)
        ci_high = difference + np.hypot(high - difference, widen)
    p_new = permutation.p_values_with_noise(z, rel, noise)
    # Consistent by construction: 0 is in the interval whenever a test keeps it.
    keeps = (p > alpha) | (p_new > alpha)
    ci_low, ci_high = np.where(keeps, np.minimum(ci_low, 0), ci_low), np.where(keeps, np.maximum(ci_high, 0), ci_high)
    return Analysis(difference, p, p_new, ci_low, ci_high, noise, rel, alpha)


def fewest_seeds(paired: bool, alpha: float = ALPHA) -> int:
    """The fewest seeds per configuration with which the permutation test can reach p <= alpha at all:
    unpaired 3 vs 3 gives at best 2/20 = 0.1, 4 vs 4 gives 2/70 = 0.029; paired, 2/2^n needs 6 seeds."""
    n = 2
    while permutation.smallest_p(n, n, paired) > alpha:
        n += 1
    return n


def planning_seed_variance(a, b, *, paired: bool, n_test: Optional[int] = None) -> float:
    """The seed variance of one seed's contribution to the difference (paired: of a per-seed difference;
    unpaired: var_a + var_b, pooled) that `seeds_needed` plans with: the 80% upper confidence bound of the
    sample variance (a pilot study's variance is as often too small as too large, Browne 1995), and, for
    accuracies from N examples, at least a quarter of a step of 1/N per run (n equal scores k/N are consistent
    with any seed spread below half a test example)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if paired:
        d = a - b
        variance, df, runs = (float(d.var(ddof=1)) if len(d) > 1 else 0.0), len(d) - 1, 2
    else:
        df = len(a) + len(b) - 2
        ss = sum(float(((x - x.mean()) ** 2).sum()) for x in (a, b))
        variance, runs = (ss / df if df > 0 else 0.0), 2
        variance *= 2
    if df > 0:
        variance *= df / scipy_stats.chi2.ppf(1 - PLANNING_CONFIDENCE, df)
    floor = runs * (0.5 / n_test) ** 2 if n_test else 0.0
    return max(variance, floor)


def seeds_needed(difference: float, seed_variance: float, *, test_set_variance: float = 0.0, paired: bool = False,
                 alpha: float = ALPHA, power: float = POWER) -> float:
    """Seeds per configuration for a two-sided test at `alpha` to find `difference` with `power`: the smallest
    n >= `fewest_seeds` with (t_{1-alpha/2} + t_{power})^2 (seed_variance / n + test_set_variance) <= difference^2
    (t with 2n - 2 degrees of freedom, n - 1 paired; normal when the seed variance is 0). The test set's
    variance does not shrink with n: inf when it alone hides the difference, and when the difference is 0."""
    floor = fewest_seeds(paired, alpha)
    z = scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power)
    room = difference**2 / z**2 - test_set_variance
    if not (math.isfinite(difference) and math.isfinite(seed_variance)):
        raise ValueError(f"difference {difference}, seed variance {seed_variance}: expected finite numbers")
    if difference == 0 or room <= 0 or seed_variance / room > MAX_SEEDS:
        return math.inf
    n = max(floor, math.ceil(seed_variance / room))
    if seed_variance == 0:
        return float(n)
    while n <= MAX_SEEDS:
        df = n - 1 if paired else 2 * n - 2
        t = scipy_stats.t.ppf(1 - alpha / 2, df) + scipy_stats.t.ppf(power, df)
        if t**2 * (seed_variance / n + test_set_variance) <= difference**2:
            return float(n)
        n += 1
    return math.inf


def examples_needed(a_mean: float, b_mean: float, difference: float, alpha: float = ALPHA,
                         power: float = POWER) -> float:
    """Test examples with which, given enough seeds, the test set's own noise would no longer hide
    `difference`: (z_{1-alpha/2} + z_{power})^2 (p_a(1-p_a) + p_b(1-p_b)) / difference^2."""
    if difference == 0:
        return math.inf
    z = scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power)
    spread = a_mean * (1 - a_mean) + b_mean * (1 - b_mean)
    return float(math.ceil(z**2 * max(spread, 1e-12) / difference**2))
