"""training.stats: the tie case of story 000 by hand, the permutation tests against SciPy's, and the promises
by simulation (vectorised; the heavier grids are slow): at most 5% false positives under the null with tied
discrete accuracies, 95% interval coverage, the power seeds_needed promises, and a sequential rule that stays
within 5% over repeated looks. `python -m pytest tests/training/test_stats.py -s` prints the measured rates."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from training import permutation, significance, stats
from training.significance import analyse

STORY_A, STORY_B = [0.11, 0.11, 0.11], [0.12, 0.13, 0.13]  # the LSTM runs of story 000's check, N = 100


def within(rate, target, trials):
    """`rate` <= `target` up to three binomial standard errors of `trials` simulated experiments."""
    return rate <= target + 3 * math.sqrt(target * (1 - target) / trials)


# --- The tie case ----------------------------------------------------------------------------------------------


def test_three_tied_accuracies_are_not_a_difference():
    """Welch's test on three equal scores (zero variance) said p = 0.038, 'distinguishable', and about 1 seed
    per configuration; the test set's 100 examples alone are noisier than the 0.017 difference."""
    c = stats.compare(STORY_A, STORY_B, n_test_a=100, n_test_b=100)
    assert not c.distinguishable
    assert c.p_value == pytest.approx(0.1) and c.smallest_p == pytest.approx(0.1)  # 2 of 20 relabelings
    assert c.test == "exact permutation test (all 20 relabelings of the seeds)"
    assert (c.ci_low, c.ci_high) == (-math.inf, math.inf)  # 3 vs 3 seeds cannot exclude anything at 95%
    assert "cannot give p below 0.1" in c.verdict and "at least 4 seeds" in c.verdict
    assert c.seeds_needed == math.inf and "test examples would be needed" in c.seeds_advice
    assert 4000 < c.test_examples_needed < 8000  # 7.85 (0.11 0.89 + 0.127 0.873) / 0.0167^2
    assert c.seeds_floor == 4 and c.seeds_needed_this_test_set >= 4
    assert c.test_noise_std == pytest.approx(0.048, abs=0.002)


def test_zero_variances_on_both_sides_never_give_a_verdict_or_too_few_seeds():
    equal = stats.compare([0.11] * 3, [0.11] * 3, n_test_a=100, n_test_b=100)
    assert equal.p_value == 1.0 and not equal.distinguishable and equal.seeds_needed == math.inf
    apart = stats.compare([0.5] * 3, [0.6] * 3)  # both variances 0: Welch said p = 0 and "2 seeds"
    assert not apart.distinguishable and apart.p_value == pytest.approx(0.1)
    assert apart.seeds_needed == 4  # the fewest with which 4 vs 4 can reach p = 2/70
    counted = stats.compare([0.5] * 4, [0.6] * 4, n_test_a=100, n_test_b=100)
    assert counted.p_value == pytest.approx(2 / 70)  # the seeds separate them on this test set ...
    assert not counted.distinguishable and counted.ci_low < 0 < counted.ci_high  # ... not on new data
    assert "Not distinguishable on new data" in counted.verdict and counted.seeds_needed == math.inf


def test_clear_differences_are_distinguishable():
    rng = np.random.default_rng(0)
    c = stats.compare(0.9 + 0.005 * rng.standard_normal(10), 0.8 + 0.005 * rng.standard_normal(10),
                      n_test_a=20000, n_test_b=20000)
    assert c.distinguishable and c.p_value < 1e-3 and 0.09 < c.ci_low < c.difference < c.ci_high < 0.115
    assert c.test.startswith("Monte Carlo")  # C(20, 10) = 184756 relabelings: sampled, with a fixed seed


def test_pairing_cancels_the_noise_a_seed_shares():
    """The same seed's runs share most of their noise: paired, the constant gain shows; unpaired it drowns."""
    shared = np.array([0.80, 0.86, 0.83, 0.90, 0.78, 0.88])
    a, b = shared + 0.01, shared
    assert stats.compare(a, b, paired=True).p_value == pytest.approx(2 / 64)
    assert stats.compare(a, b).p_value > 0.5
    assert stats.compare(a, b, paired=True).method == "paired"
    with pytest.raises(ValueError, match="one value per seed"):
        stats.compare(a, b[:5], paired=True)


# --- Against independent implementations ----------------------------------------------------------------------


def test_exact_p_values_match_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.integers(80, 95, 4) / 100, rng.integers(85, 99, 5) / 100  # ties included

    def distance(x, y, axis):  # two-sided as |T*| >= |T|, not SciPy's default doubling of one side
        return np.abs(np.mean(x, axis=axis) - np.mean(y, axis=axis))

    expected = scipy_stats.permutation_test((a, b), distance, vectorized=True, n_resamples=np.inf,
                                            alternative="greater").pvalue
    assert stats.compare(a, b).p_value == pytest.approx(expected)
    d = rng.normal(0.01, 0.01, 7)
    expected = scipy_stats.permutation_test((d,), lambda x, axis: np.abs(np.mean(x, axis=axis)), vectorized=True,
                                            n_resamples=np.inf, permutation_type="samples",
                                            alternative="greater").pvalue
    assert stats.compare(d + 0.5, np.full(7, 0.5), paired=True).p_value == pytest.approx(expected)


def test_monte_carlo_p_values_are_reproducible_and_near_the_exact_one():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 8), rng.normal(0.8, 1, 9)  # C(17, 8) = 24310 relabelings: sampled
    p = stats.compare(a, b).p_value
    assert stats.compare(a, b).p_value == p
    exact = scipy_stats.permutation_test((a, b), lambda x, y, axis: np.mean(x, axis) - np.mean(y, axis),
                                         vectorized=True, n_resamples=np.inf).pvalue
    assert abs(p - exact) < 0.01


def test_the_interval_is_the_inverted_test():
    """Without a test-set size the interval is exactly the shifts the permutation test does not reject."""
    a, b = np.array([1.0, 2.5, 3.0, 4.5, 5.0]), np.array([4.0, 6.0, 6.5, 8.0, 9.5])
    c = stats.compare(a, b)
    rel = permutation.unpaired(5, 5)
    z = np.concatenate([a, b])[None]
    for bound, inward in ((c.ci_low, 1), (c.ci_high, -1)):
        assert permutation.p_values(z, rel, bound + inward * 1e-6)[0] > 0.05
        assert permutation.p_values(z, rel, bound - inward * 1e-3)[0] <= 0.05


def test_seeds_needed_plans_with_a_floor_and_the_test_set():
    z2 = (1.959964 + 0.841621) ** 2
    assert significance.seeds_needed(0.1, 0.0) == 4  # no spread: still the fewest a test can use
    assert significance.seeds_needed(0.1, 0.0, paired=True) == 6
    assert significance.seeds_needed(0.0, 1.0) == math.inf
    assert significance.seeds_needed(0.01, 1e-4, test_set_variance=0.01**2 / z2) == math.inf
    n = significance.seeds_needed(0.01, 5e-4)  # normal approximation 39.2; t makes it a little more
    assert 40 <= n <= 42
    assert significance.seeds_needed(0.01, 5e-4, test_set_variance=1e-6) > n
    assert significance.fewest_seeds(False) == 4 and significance.fewest_seeds(True) == 6


# --- Sequential rule -------------------------------------------------------------------------------------------


def test_sequential_verdicts():
    early = stats.sequential_verdict(STORY_A, STORY_B, max_seeds=10, min_effect=0.01, n_test_a=100, n_test_b=100)
    assert (early.settled, early.outcome) == (False, "undecided")
    rng = np.random.default_rng(3)
    clear = stats.sequential_verdict(0.9 + 0.01 * rng.standard_normal(8), 0.8 + 0.01 * rng.standard_normal(8),
                                     max_seeds=10, min_effect=0.01, n_test_a=10000, n_test_b=10000)
    assert (clear.settled, clear.outcome) == (True, "different") and "excludes 0" in clear.reason
    same = stats.sequential_verdict(0.9 + 1e-3 * rng.standard_normal(10), 0.9 + 1e-3 * rng.standard_normal(10),
                                    max_seeds=10, min_effect=0.01)
    assert (same.settled, same.outcome) == (True, "equivalent")
    small_test = stats.sequential_verdict(0.9 + 1e-3 * rng.standard_normal(10), 0.9 + 1e-3 * rng.standard_normal(10),
                                          max_seeds=10, min_effect=0.01, n_test_a=100, n_test_b=100)
    assert (small_test.settled, small_test.outcome) == (True, "undecided")
    assert "no number of seeds can show equivalence" in small_test.reason
    with pytest.raises(ValueError, match="equal steps"):
        stats.sequential_verdict([1, 2, 3], [1, 2], max_seeds=5, min_effect=0.1)
    assert sum(stats.look_levels(10, False).values()) == pytest.approx(0.05)
    assert sum(stats.look_levels(30, True).values()) == pytest.approx(0.05)


# --- Simulations -----------------------------------------------------------------------------------------------


def binomial_runs(rng, experiments, seeds, p=0.11, examples=100):
    """Accuracies k/N of runs whose correct count is Binomial(N, p): discrete, and often tied."""
    return rng.binomial(examples, p, (experiments, seeds)) / examples


NULL_GRID = [(3, 4000), (5, 4000), (10, 2000), (30, 1000)]


@pytest.mark.parametrize("seeds,experiments", NULL_GRID)
@pytest.mark.parametrize("is_paired", [False, True])
def test_false_positive_rate_under_the_null_with_ties(seeds, experiments, is_paired):
    rng = np.random.default_rng(seeds)
    a, b = binomial_runs(rng, experiments, seeds), binomial_runs(rng, experiments, seeds)
    rel = permutation.relabelings_for(seeds, seeds, is_paired)
    p = permutation.p_values(a - b if is_paired else np.concatenate([a, b], axis=1), rel)
    rate = float(np.mean(p <= 0.05))
    print(f"null, {'paired' if is_paired else 'unpaired'} n={seeds}: {rate:.3%} of {experiments} p <= 0.05")
    assert within(rate, 0.05, experiments)


def coverage(rng, experiments, seeds, examples, seed_sd, p_a=0.11, p_b=0.11):
    """Share of experiments whose interval holds the true difference on new data: each configuration is scored
    on one test set (its sampling error shared by all its seeds, independent between the configurations: the
    worst case), its seeds spread around that by `seed_sd`, rounded to whole test examples."""
    def runs(p):
        test_set = rng.normal(0, math.sqrt(p * (1 - p) / examples), (experiments, 1))
        return np.round(np.clip(p + test_set + seed_sd * rng.standard_normal((experiments, seeds)), 0, 1)
                        * examples) / examples
    result = analyse(runs(p_a), runs(p_b), n_test_a=examples, n_test_b=examples)
    truth = p_a - p_b
    return float(np.mean((result.ci_low <= truth) & (truth <= result.ci_high))), float(
        np.mean(result.distinguishable))


@pytest.mark.parametrize("seeds,experiments", [(3, 1000), (5, 1000)])
def test_interval_coverage_on_new_data(seeds, experiments):
    rng = np.random.default_rng(10 + seeds)
    covered, claimed = coverage(rng, experiments, seeds, 100, 0.01)
    print(f"coverage n={seeds}, N=100, seed sd 0.01: {covered:.1%}; false 'distinguishable' {claimed:.2%}")
    assert within(1 - covered, 0.05, experiments) and within(claimed, 0.05, experiments)


@pytest.mark.slow
@pytest.mark.parametrize("seeds,examples,seed_sd", [(10, 100, 0.01), (30, 100, 0.01), (10, 1000, 0.02),
                                                    (10, 10000, 0.005), (5, 100, 0.0)])
def test_interval_coverage_grid(seeds, examples, seed_sd):
    experiments = 400
    covered, claimed = coverage(np.random.default_rng(seeds + examples), experiments, seeds, examples, seed_sd,
                                p_a=0.9, p_b=0.9)
    print(f"coverage n={seeds}, N={examples}, seed sd {seed_sd}: {covered:.1%}; false claims {claimed:.2%}")
    assert within(1 - covered, 0.05, experiments) and within(claimed, 0.05, experiments)


def test_seeds_needed_delivers_its_power():
    """Seed noise only: the seeds seeds_needed asks for (planned with the true sd) find the difference about
    80% of the time."""
    difference, sd = 0.01, 0.012
    n = int(significance.seeds_needed(difference, 2 * sd**2))
    rng = np.random.default_rng(4)
    experiments = 400
    a = 0.9 + difference + sd * rng.standard_normal((experiments, n))
    b = 0.9 + sd * rng.standard_normal((experiments, n))
    power = float(np.mean(permutation.p_values(np.concatenate([a, b], axis=1), permutation.unpaired(n, n)) <= 0.05))
    print(f"power with {n} seeds per configuration: {power:.1%}")
    assert power >= 0.8 - 3 * math.sqrt(0.16 / experiments)


@pytest.mark.slow
def test_seeds_needed_delivers_its_power_with_the_test_set():
    """The verdict (permutation p and the interval with the test set's noise) at the seeds planned for both."""
    difference, sd, examples = 0.03, 0.01, 2000
    test_var = 2 * 0.9 * 0.1 / examples
    n = int(significance.seeds_needed(difference, 2 * sd**2, test_set_variance=test_var))
    rng = np.random.default_rng(5)
    experiments = 300
    offsets = rng.normal(0, math.sqrt(0.09 / examples), (2, experiments, 1))
    a = 0.9 + difference + offsets[0] + sd * rng.standard_normal((experiments, n))
    b = 0.9 + offsets[1] + sd * rng.standard_normal((experiments, n))
    power = float(np.mean(analyse(a, b, n_test_a=examples, n_test_b=examples).distinguishable))
    print(f"power with the test set, {n} seeds: {power:.1%}")
    assert power >= 0.8 - 3 * math.sqrt(0.16 / experiments)


def sequential_rates(rng, experiments, max_seeds, difference, min_effect, is_paired, examples=None,
                     equivalence=True):
    """Shares of experiments (looks after every seed, 2..max_seeds) that end "different" and "equivalent"
    (the interval is computed only where the permutation p could make a look "different", unless
    `equivalence`)."""
    sd = 0.01
    a = 0.5 + difference + sd * rng.standard_normal((experiments, max_seeds))
    b = 0.5 + sd * rng.standard_normal((experiments, max_seeds))
    outcome = np.zeros(experiments, int)  # 0 undecided, 1 different, 2 equivalent
    for n, level in sorted(stats.look_levels(max_seeds, is_paired).items()):
        live = np.flatnonzero(outcome == 0)
        if not equivalence:
            rel = permutation.relabelings_for(n, n, is_paired)
            z = a[live, :n] - b[live, :n] if is_paired else np.concatenate([a[live, :n], b[live, :n]], axis=1)
            live = live[permutation.p_values(z, rel) <= level]
        result = analyse(a[live, :n], b[live, :n], n_test_a=examples, n_test_b=examples, paired=is_paired,
                         alpha=level)
        outcome[live[result.distinguishable]] = 1
        inside = ~result.distinguishable & (result.ci_low > -min_effect) & (result.ci_high < min_effect)
        outcome[live[inside & equivalence]] = 2
    return float(np.mean(outcome == 1)), float(np.mean(outcome == 2))


@pytest.mark.parametrize("is_paired", [False, True])
def test_sequential_rule_keeps_its_level_over_repeated_looks(is_paired):
    different, _ = sequential_rates(np.random.default_rng(6), 1000, 10, 0.0, 0.005, is_paired, equivalence=False)
    print(f"sequential {'paired' if is_paired else 'unpaired'}, looks 2..10: false 'different' {different:.1%}")
    assert within(different, 0.05, 1000)


@pytest.mark.slow
@pytest.mark.parametrize("is_paired", [False, True])
def test_sequential_rule_claims_equivalence_at_the_margin_rarely(is_paired):
    different, equivalent = sequential_rates(np.random.default_rng(7), 300, 10, 0.012, 0.012, is_paired)
    print(f"sequential {'paired' if is_paired else 'unpaired'}, looks 2..10, difference = min_effect: "
          f"false 'equivalent' {equivalent:.1%} ('different' {different:.1%})")
    assert within(equivalent, 0.05, 300)


@pytest.mark.slow
@pytest.mark.parametrize("is_paired", [False, True])
def test_sequential_rule_over_thirty_looks(is_paired):
    different, _ = sequential_rates(np.random.default_rng(8), 1000, 30, 0.0, 0.005, is_paired, examples=10000,
                                    equivalence=False)
    print(f"sequential {'paired' if is_paired else 'unpaired'}, looks 2..30: false 'different' {different:.1%}")
    assert within(different, 0.05, 1000)
