"""Is a difference between two training configurations real? (story 000: 96.9% vs 96.2% over 3 runs.)

Each configuration is trained with several seeds and scored on one test set. Two sources of noise stand between
the scores and the answer (Bouthillier et al., MLSys 2021, count every source):

- seed noise: initialisation, input order, dropout. Measured between the seeds; tested by an exact permutation
  test (`training.permutation`): valid at any number of seeds and with tied scores, never a verdict from a
  sample variance (Welch's test on three equal scores said p = 0.038; this test says p = 0.1, the smallest
  3 vs 3 seeds can give). When the configurations share each seed's initial weights and first-epoch order
  (digests in metrics.json), the per-seed differences are tested instead (sign flips), which cancels the noise
  they share.
- the test set's own sampling: an accuracy counted on N examples estimates the accuracy on new data no better
  than a binomial proportion, sd sqrt(p(1-p)/N), and averaging seeds does not shrink it, because every seed is
  scored on the same N examples. It is invisible between seeds, so it is added to them, not compared.

The interval of a difference is the permutation test inverted (seed noise, exact coverage) widened in
quadrature by the test set's noise, and made to hold 0 whenever the seeds' permutation p, or the test on new data
(the seeds' residual permutation distribution convolved with the test set's noise, `permutation.
p_values_with_noise`: quadrature alone let collapsed runs through), exceeds alpha; "distinguishable" is an
interval that excludes 0. Values tied within a tolerance relative to their spread are equal.
`sequential_verdict` is the stopping rule of an experiment that adds seeds until it can answer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats

from training import permutation
from training.significance import (ALPHA, MAX_SEEDS, TestExamples, analyse, checked, evaluation_variance,
                                   examples_needed, fewest_seeds, planning_seed_variance, seeds_needed)
from training.significance import _examples as examples_of

@dataclasses.dataclass(frozen=True)
class Summary:
    """One configuration over n seeds. The interval is for its accuracy on new data: Student's t interval of
    the seeds' mean, widened in quadrature by the test set's sampling noise (`test_noise_std`)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    minimum: float
    maximum: float
    test_examples: Optional[int] = None
    test_noise_std: float = 0.0


def summarize(values: Sequence[float], n_test: TestExamples = None) -> Summary:
    x, examples = checked(values, n_test)
    n, mean = len(x), float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    noise = float(math.sqrt(evaluation_variance(mean, examples)))
    if n > 1:
        half = math.hypot(scipy_stats.t.ppf(1 - ALPHA / 2, n - 1) * std / math.sqrt(n),
                          scipy_stats.norm.ppf(1 - ALPHA / 2) * noise)
    else:
        half = math.inf
    return Summary(n, mean, std, mean - half, mean + half, float(x.min()), float(x.max()), examples, noise)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """mean(a) - mean(b): the analysis used and why, the permutation p (seed noise on this test set), the 95%
    interval (seed noise and the test set's own noise), a verdict sentence, and the seeds a study would need."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    seeds_needed: float  # per configuration, to find this difference on new data (inf: no number suffices)
    distinguishable: bool
    method: str = "unpaired"  # or "paired"
    method_reason: str = ""
    test: str = ""  # the permutation test, exact or Monte Carlo
    smallest_p: float = 0.0  # the smallest p these numbers of seeds can give
    test_examples_a: Optional[int] = None
    test_examples_b: Optional[int] = None
    test_noise_std: float = 0.0  # sd of the difference from the test set's sampling
    seed_noise_std: float = 0.0  # per-seed sd of the difference that seeds_needed plans with
    seeds_floor: int = 0  # fewest seeds per configuration with which the test can reach p <= 0.05
    seeds_needed_this_test_set: float = math.inf  # seed noise only: to separate them on these N examples
    test_examples_needed: Optional[float] = None  # with many seeds; None when N is unknown
    seeds_tied: bool = False  # every seed of each configuration scored the same (seed noise not observed)
    points: bool = False  # the text gives differences in percentage points (accuracies)
    p_new_data: float = 1.0  # the seeds' residual permutation distribution convolved with the test set's noise
    verdict: str = ""
    seeds_advice: str = ""


def _describe_test(rel: permutation.Relabelings, paired: bool) -> str:
    kind = "sign-flip permutation test of the per-seed differences" if paired else "permutation test"
    if rel.exact:
        what = "sign patterns" if paired else "relabelings of the seeds"
        return f"exact {kind} (all {rel.count} {what})"
    return f"Monte Carlo {kind} ({rel.count - 1} random relabelings, seed {permutation.MONTE_CARLO_SEED})"


def compare(a: Sequence[float], b: Sequence[float], *, n_test_a: TestExamples = None,
            n_test_b: TestExamples = None, paired: bool = False, pairing_reason: str = "",
            points: bool = False) -> Comparison:
    """Compares configuration a with b over their seeds' values; accuracies pass the test-set sizes of their
    runs (n_test_*), which puts the test set's sampling noise into the interval and the seeds needed. `paired`
    only when the runs of one seed share initial weights and input order (the caller has checked); a and b are
    then in seed order. `points`: the sentences give differences in percentage points (accuracies)."""
    a_values, na = checked(a, n_test_a, "configuration a")
    b_values, nb = checked(b, n_test_b, "configuration b")
    if len(a_values) < 2 or len(b_values) < 2:
        raise ValueError(f"comparing needs at least 2 seeds per configuration ({len(a_values)} and "
                         f"{len(b_values)}): seed noise is measured between seeds")
    result = analyse(a_values, b_values, n_test_a=na, n_test_b=nb, paired=paired)
    difference, noise = float(result.difference[0]), float(result.test_noise_std[0])
    seed_variance = planning_seed_variance(a_values, b_values, paired=paired, n_test=min(na or 0, nb or 0) or None)
    needed = seeds_needed(difference, seed_variance, test_set_variance=noise**2, paired=paired)
    here = seeds_needed(difference, seed_variance, paired=paired)
    examples = (examples_needed(a_values.mean(), b_values.mean(), difference) if na and nb else None)
    comparison = Comparison(
        difference, float(result.ci_low[0]), float(result.ci_high[0]), float(result.p_value[0]), needed,
        bool(result.distinguishable[0]), "paired" if paired else "unpaired",
        pairing_reason or ("paired: the caller says the runs of one seed share their randomness" if paired else
                           "unpaired: nothing shows that the runs of one seed share their randomness"),
        _describe_test(result.relabelings, paired), result.relabelings.smallest_p, na, nb, noise,
        math.sqrt(seed_variance), fewest_seeds(paired), here, examples,
        _spread_tied(a_values, b_values) and not (na or nb), points)
    comparison = dataclasses.replace(comparison, p_new_data=float(result.p_new_data[0]))
    return dataclasses.replace(comparison, verdict=verdict_sentence(comparison),
                               seeds_advice=seeds_sentence(comparison, len(a_values), len(b_values)))


def _spread_tied(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether every seed of each configuration scored the same, within the tests' tie tolerance."""
    z, tie = permutation.prepared(np.concatenate([a - a.mean(), b - b.mean()]), permutation.unpaired(1, 1))
    return bool(np.abs(z).max() <= tie[0, 0] + permutation.PRECISION_TIE * max(abs(a.mean()), abs(b.mean())))


def _amount(x: float, c: Comparison, sign: str = "+") -> str:
    return f"{100 * x:{sign}.2f} points" if c.points else f"{x:{sign}.4g}"


def _noise_included(c: Comparison) -> str:
    """Which configurations' test-set noise the interval includes."""
    a, b = c.test_examples_a, c.test_examples_b
    if a and b:
        return (f"the test set's own sampling noise included ({a} and {b} test examples: sd "
                f"{_amount(c.test_noise_std, c, '')} of the difference)")
    if a or b:
        known, unknown = ("a", "b") if a else ("b", "a")
        return (f"the test set's own sampling noise of {known} included ({a or b} test examples); {unknown}'s "
                "test-set size is unknown, so its noise is not")
    return "seed noise only: the test-set size is unknown, so the test set's own noise is not included"


def verdict_sentence(c: Comparison) -> str:
    """Why the difference is or is not distinguishable, in one sentence (or two, when the seeds all tied)."""
    interval = f"95% interval {_amount(c.ci_low, c)} to {_amount(c.ci_high, c)}"
    if c.distinguishable:
        text = (f"Distinguishable: a difference of {_amount(c.difference, c)} ({interval}; {_noise_included(c)}) "
                f"with {c.method} permutation p = {c.p_value:.3g}"
                + (f" (on new data, with the test set's noise: p = {c.p_new_data:.3g})." if c.test_noise_std else "."))
        if c.seeds_tied:
            text += (" Every seed of each configuration scored the same, so the runs look deterministic per "
                     "configuration: the difference is exact on this evaluation and the ranks of the seeds are what "
                     "the test counts, but the spread seeds would add was not observed (the interval's width is "
                     "not a measurement of it), and with the test-set size unknown its own noise is not included.")
        return text
    if c.difference == 0:
        return (f"Not distinguishable: the means are equal (to float precision), {c.method} permutation p = "
                f"{c.p_value:.3g}.")
    if c.smallest_p > ALPHA:
        return (f"Not distinguishable: with these seeds the permutation test cannot give p below "
                f"{c.smallest_p:.3g} whatever the scores (p = {c.p_value:.3g}); at least {c.seeds_floor} seeds per "
                f"configuration are needed for p < {ALPHA}.")
    if c.p_value > ALPHA:
        return f"Not distinguishable from seed noise: {c.method} permutation p = {c.p_value:.3g} ({interval})."
    return (f"Not distinguishable on new data: the seeds separate the configurations on this test set (p = "
            f"{c.p_value:.3g}), but with {_noise_included(c)} the test on new data gives p = {c.p_new_data:.3g} "
            f"and the interval holds 0 ({interval}).")


def seeds_sentence(c: Comparison, n_a: int, n_b: int) -> str:
    """How many seeds (or test examples) a study would need for 80% power, with the floor the test sets."""
    floor = (f"never fewer than {c.seeds_floor}: {c.method} permutation tests with fewer seeds cannot reach "
             f"p < {ALPHA}")
    if c.difference == 0:
        return "The means are equal (to float precision): there is no difference for more seeds to find."
    if math.isfinite(c.seeds_needed):
        return (f"Finding a difference of this size with 80% power would take about {c.seeds_needed:.0f} seeds "
                f"per configuration ({floor}; seed sd {_amount(c.seed_noise_std, c, '')} planned from {n_a} + "
                f"{n_b} seeds).")
    found = (" (This experiment found it all the same: below 80% power is not zero power.)" if c.distinguishable
             else "")
    if c.test_examples_needed is None or c.test_noise_std == 0:
        return (f"A difference this small would need more than {MAX_SEEDS:,} seeds per configuration for 80% power "
                f"against the seed noise (sd {_amount(c.seed_noise_std, c, '')}).{found}")
    here = (f" On this test set alone (seed noise only) about {c.seeds_needed_this_test_set:.0f} seeds per "
            "configuration would separate them." if math.isfinite(c.seeds_needed_this_test_set) else "")
    return (f"80% power on new data is out of reach with these test sets at any number of seeds: their own noise "
            f"(sd {_amount(c.test_noise_std, c, '')}) is too large beside the difference; about "
            f"{c.test_examples_needed:.0f} test examples would be needed.{found}" + here)


@dataclasses.dataclass(frozen=True)
class SequentialVerdict:
    """The answer at one look of an experiment that adds seeds until it can answer (`sequential_verdict`)."""

    settled: bool  # stop adding seeds
    outcome: str  # "different", "equivalent" or "undecided"
    reason: str  # one sentence
    seeds: int = 0  # per configuration at this look
    alpha: float = 0.0  # the level this look tests at (0: this look cannot decide)
    ci_low: float = -math.inf
    ci_high: float = math.inf
    p_value: float = 1.0


def look_levels(max_seeds: int, paired: bool, alpha: float = ALPHA) -> dict[int, float]:
    """The level of the test at each look n (seeds per configuration) an experiment may take, n0..max_seeds.

    A weighted Bonferroni split of alpha over every look that may happen, whatever steps the experiment
    takes: the chance of any false claim over all looks is at most the sum of the levels, alpha, by the union
    bound, with no assumption on how looks depend on each other. Weights grow with n (alpha_n = alpha n / sum),
    spending little on early looks, which have little data, as O'Brien-Fleming's boundaries do. n0 is the first
    look at which the permutation test can reach its level (3 vs 3 seeds never gives p < 0.1): no alpha is
    spent on looks that could not use it.
    """
    for first in range(2, max_seeds + 1):
        looks = range(first, max_seeds + 1)
        levels = {n: alpha * n / sum(looks) for n in looks}
        if permutation.smallest_p(first, first, paired) <= levels[first]:
            return levels
    return {}


def sequential_verdict(a: Sequence[float], b: Sequence[float], *, max_seeds: int, min_effect: float,
                       n_test_a: TestExamples = None, n_test_b: TestExamples = None,
                       paired: bool = False) -> SequentialVerdict:
    """Whether an experiment adding seeds to both configurations in equal steps up to `max_seeds` can stop:
    "different" when the interval at this look's level (`look_levels`) excludes 0 (and the permutation p is
    within it), "equivalent" when the interval lies within +-min_effect, else "undecided" (settled once
    `max_seeds` is reached). Each look's interval includes the test set's own noise, as `compare`'s does.
    Valid under repeated looks: at most 5% of experiments of equal configurations ever end "different", and at
    most 5% of experiments whose difference exceeds min_effect end "equivalent"."""
    if max_seeds < 2 or not min_effect > 0:
        raise ValueError(f"max_seeds={max_seeds}, min_effect={min_effect}: expected max_seeds >= 2 and "
                         "min_effect > 0 (the smallest difference that matters, in the metric's units)")
    a, _ = checked(a, n_test_a, "configuration a")
    b, _ = checked(b, n_test_b, "configuration b")
    n = min(len(a), len(b))
    if len(a) != len(b):
        raise ValueError(f"{len(a)} and {len(b)} seeds: a sequential experiment adds seeds to both "
                         "configurations in equal steps")
    final = n >= max_seeds
    level = look_levels(max_seeds, paired).get(min(n, max_seeds), 0.0)
    if level == 0.0:
        first = min(look_levels(max_seeds, paired), default=None)
        why = (f"no look up to {max_seeds} seeds can reach the level it would need" if first is None else
               f"the rule tests from {first} seeds per configuration on, when the permutation test can reach the "
               "level of that look")
        return SequentialVerdict(final, "undecided", f"Undecided at {n} seeds per configuration: {why}.", n)
    result = analyse(a, b, n_test_a=examples_of(n_test_a), n_test_b=examples_of(n_test_b), paired=paired,
                     alpha=level)
    low, high, p = float(result.ci_low[0]), float(result.ci_high[0]), float(result.p_value[0])
    interval = f"the {1 - level:.2%} interval {low:+.4g} to {high:+.4g}"
    if result.distinguishable[0]:
        outcome, reason = "different", f"{interval} excludes 0 (permutation p = {p:.3g} <= {level:.3g})"
    elif -min_effect < low and high < min_effect:
        outcome, reason = "equivalent", f"{interval} lies within +-{min_effect:g}"
    else:
        outcome = "undecided"
        reason = (f"{interval} contains 0 and reaches beyond +-{min_effect:g}"
                  + ("; the maximum number of seeds is reached" if final else "; add seeds"))
        floor = float(scipy_stats.norm.ppf(1 - level / 2) * result.test_noise_std[0])
        if floor >= min_effect:
            reason += (f" (the test set's own noise alone leaves +-{floor:.3g} at this level, at least min_effect: "
                       "no number of seeds can show equivalence, only a difference)")
    settled = outcome != "undecided" or final
    return SequentialVerdict(settled, outcome, f"{outcome.capitalize()} at {n} seeds per configuration: {reason}.",
                             n, level, low, high, p)
