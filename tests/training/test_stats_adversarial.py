"""training.stats against inputs its own tests do not try: equal means that differ by float rounding, values
that are not finite or not accuracies, metrics on a tiny or offset scale, text that contradicts itself, and
seeds with a collapsed run scored on test sets of their own (story 001)."""

import math

import numpy as np
import pytest

from training import significance, stats


def test_equal_scores_in_another_order_do_not_crash():
    """The same three accuracies in another seed order: the means differ by float rounding (1e-16), and
    seeds_needed's integer search overflowed (TypeError from scipy's t.ppf), killing the experiment's report."""
    a, b = [0.57, 0.55, 0.52], [0.52, 0.57, 0.55]
    assert np.mean(a) != np.mean(b)  # the rounding this test is about
    c = stats.compare(a, b, n_test_a=100, n_test_b=100)
    assert not c.distinguishable and c.p_value == 1.0


def test_a_tiny_genuine_difference_does_not_crash_seeds_needed():
    assert significance.seeds_needed(1e-12, 1e-4) >= significance.fewest_seeds(False)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_value_that_is_not_finite_is_refused_by_name(bad):
    """A diverged run (val_loss NaN) reached seeds_needed as 'cannot convert float NaN to integer'."""
    with pytest.raises(ValueError, match="(?i)finite"):
        stats.compare([0.9, 0.91, bad, 0.92], [0.5, 0.51, 0.52, 0.5])


def test_values_outside_0_1_with_a_test_set_size_are_refused_clearly():
    """A loss (or an accuracy in percent) with n_test: a negative binomial variance, then NaN, then a ValueError
    about converting NaN to an integer (compare) or 'math domain error' (summarize)."""
    with pytest.raises(ValueError, match=r"(?i)accurac|\[0, 1\]|between 0 and 1"):
        stats.compare([96.9, 97.0, 96.8, 96.9], [96.2, 96.1, 96.3, 96.2], n_test_a=1000, n_test_b=1000)
    with pytest.raises(ValueError, match=r"(?i)accurac|\[0, 1\]|between 0 and 1"):
        stats.summarize([2.3, 2.4, 2.2], n_test=100)


@pytest.mark.parametrize("scale,offset", [(1e-9, 0.0), (1e-3, 1e6)])
def test_the_p_value_does_not_depend_on_the_metric_scale_or_offset(scale, offset):
    """The tie tolerance 1e-9 (1 + max |value|) is absolute: on a 1e-9 scale, or at an offset of 1e6 with
    differences of 1e-3, every relabeling 'ties' and p = 1 while the interval excludes 0."""
    base, other = np.array([0.1, 0.4, 0.2, 0.5, 0.3]), np.array([0.6, 0.9, 0.7, 1.0, 0.8])
    reference = stats.compare(base, other)
    moved = stats.compare(base * scale + offset, other * scale + offset)
    assert moved.p_value == pytest.approx(reference.p_value)
    assert moved.distinguishable == reference.distinguishable


def test_a_distinguishable_difference_is_not_called_impossible_to_show():
    """96.6% vs 96.0% on 10000 test examples, tight seeds: 'Distinguishable', and in the same report 'No number
    of seeds can show a difference this small on new data'."""
    a = [0.9660, 0.9661, 0.9659, 0.9660, 0.9660]
    b = [0.9600, 0.9601, 0.9599, 0.9600, 0.9600]
    c = stats.compare(a, b, n_test_a=10000, n_test_b=10000)
    assert c.distinguishable
    assert "No number of seeds can show" not in c.seeds_advice


def test_the_verdict_says_whose_test_set_noise_is_included():
    """Only a's size known: a's noise is in the interval, yet the verdict says none is."""
    with_a = stats.compare([0.9, 0.91, 0.92, 0.9], [0.5, 0.51, 0.52, 0.5], n_test_a=10)
    without = stats.compare([0.9, 0.91, 0.92, 0.9], [0.5, 0.51, 0.52, 0.5])
    assert with_a.ci_low < without.ci_low  # a's test-set noise widened it
    assert "its own noise is not included" not in with_a.verdict


@pytest.mark.slow
def test_collapsed_runs_with_separate_test_sets_keep_the_false_positive_rate():
    """Story 001 under the null: each configuration's 5 seeds collapse to chance (0.1) with probability 0.15,
    the others score ~0.9, each configuration on its own 100 test examples (the independent binomial noise the
    interval adds). 'Distinguishable' should be at most ~5%; the quadrature widening lets ~10% through, the
    collapse's spread standing in for the test set's offset."""
    rng = np.random.default_rng(11)
    experiments, seeds, n_test = 3000, 5, 100

    def accuracies():
        theta = np.clip(0.9 + 0.01 * rng.standard_normal((experiments, seeds)), 0, 1)
        theta = np.where(rng.random((experiments, seeds)) < 0.15, 0.1, theta)
        examples = rng.random((experiments, 1, n_test))  # one test set per configuration, shared by its seeds
        return (examples < theta[..., None]).mean(axis=2)

    result = significance.analyse(accuracies(), accuracies(), n_test_a=n_test, n_test_b=n_test)
    rate = float(result.distinguishable.mean())
    print(f"collapsed runs, separate test sets of 100, n=5: false 'distinguishable' {rate:.2%}")
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / experiments), rate


def test_an_experiment_whose_configurations_score_alike_gets_its_report():
    """build_report after all the training: two configurations with the same accuracies on other seeds."""
    from training.experiment import build_report

    def runs(scores):
        return [{"seed": s, "test_accuracy": x, "test_examples": 100} for s, x in enumerate(scores)]

    report = build_report({"replacement": runs([0.57, 0.55, 0.52]), "epoch": runs([0.52, 0.57, 0.55])},
                          "test_accuracy")
    assert not report["comparisons"][0]["distinguishable"]


def test_the_interval_holds_0_whenever_the_test_keeps_it():
    """Tied accuracies (val_accuracy: no test-set size): p keeps 0, but the inverted test's endpoint came out as
    +-1e-17 instead of 0 (float rounding of a tie, which p_values tolerates and shift_interval does not), so the
    interval 'excluded' 0 in ~4.6% of random 4 vs 4 experiments on k/10 accuracies (e.g. [0.5] * 4 against
    [0.6, 0.5, 0.5, 0.6]: p = 0.43, interval -0.1 to -2.8e-17 in a batch). Paired, compare shows it directly."""
    c = stats.compare([0.52, 0.6, 0.6, 0.55, 0.55, 0.53, 0.56], [0.51, 0.57, 0.57, 0.57, 0.51, 0.51, 0.53],
                      paired=True)
    assert c.p_value > 0.05
    assert c.ci_low <= 0 <= c.ci_high, (c.ci_low, c.ci_high)
    rng = np.random.default_rng(2)
    a, b = rng.integers(5, 7, (2000, 4)) / 10, rng.integers(5, 7, (2000, 4)) / 10
    result = significance.analyse(a, b)
    kept = result.p_value > 0.05
    assert np.all((result.ci_low[kept] <= 0) & (0 <= result.ci_high[kept]))


def test_seeds_that_all_tie_are_called_deterministic_not_measured():
    """Every seed of each configuration scored the same, N unknown: the permutation test is still exact (no
    variance enters it: 5 vs 5 all apart is 2 of 252 relabelings), so the verdict stands, but the text must not
    pass the zero-width interval off as a measured seed noise."""
    c = stats.compare([0.12] * 5, [0.11] * 5)
    assert c.distinguishable and c.seeds_tied and c.p_value == pytest.approx(2 / 252)
    assert "deterministic" in c.verdict and "was not observed" in c.verdict
    spread = stats.compare([0.12, 0.13, 0.12, 0.12, 0.12], [0.11] * 5)
    assert not spread.seeds_tied and "deterministic" not in spread.verdict


def test_accuracy_text_is_in_points_and_says_which_is_better(tmp_path):
    """Fractions in the verdict beside points in the table; which configuration won; JSON without Infinity."""
    import json

    from training.experiment import build_report, render_markdown

    def runs(scores, n=100):
        return [{"seed": s, "test_accuracy": x, "test_examples": n} for s, x in enumerate(scores)]

    report = build_report({"wide": runs([0.9, 0.91, 0.92, 0.9]), "narrow": runs([0.5, 0.51, 0.52, 0.5]),
                           "tiny": runs([0.1, 0.1, 0.1])}, "test_accuracy")
    text = json.dumps(report, allow_nan=False)  # Infinity is not JSON: unbounded ends are null
    comparison = report["comparisons"][0]
    assert " points" in comparison["verdict"] and "+0.4" not in comparison["verdict"]
    markdown = render_markdown(json.loads(text))
    assert "better: wide (higher test_accuracy)" in markdown
    losses = build_report({"a": [{"seed": s, "val_loss": x} for s, x in enumerate([0.3, 0.31, 0.32, 0.3])],
                           "b": [{"seed": s, "val_loss": x} for s, x in enumerate([0.9, 0.91, 0.92, 0.9])]},
                          "val_loss")
    assert "better: a (lower val_loss)" in render_markdown(losses)
    assert "seed noise only: the test-set size is unknown" in render_markdown(losses)  # no test-set noise counted


@pytest.mark.parametrize("values,n_test,match", [
    ([0.9, 0.91, 0.92], [100, 100], "2 test-set sizes for 3 runs"),
    ([0.9, 0.91, 0.92], 100.5, "whole number"),
])
def test_test_set_sizes_that_do_not_fit_are_refused(values, n_test, match):
    with pytest.raises(ValueError, match=match):
        stats.compare(values, [0.5, 0.5, 0.6], n_test_a=n_test)


def test_the_experiment_names_the_run_whose_value_is_not_finite():
    from training.experiment import build_report

    runs = [{"seed": s, "val_loss": x, "metrics_path": f"/w/a/seed_{s}/metrics.json"}
            for s, x in enumerate([0.3, math.nan, 0.2])]
    with pytest.raises(ValueError, match=r"seed_1/metrics.json.*not a finite"):
        build_report({"a": runs, "b": [dict(r, val_loss=0.5) for r in runs]}, "val_loss")
