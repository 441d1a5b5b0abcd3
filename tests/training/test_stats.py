"""The statistics against values computed by hand (and matching R's t.test)."""

import math

import numpy as np
import pytest

from training.stats import compare, seeds_needed, summarize

A = [1, 2, 3, 4, 5]
B = [2, 4, 6, 8, 10]


def test_summary_uses_student_t_interval():
    s = summarize(A)
    assert (s.n, s.mean, s.minimum, s.maximum) == (5, 3.0, 1.0, 5.0)
    assert s.std == pytest.approx(math.sqrt(2.5))
    # t(0.975, 4) = 2.776445; half width = 2.776445 * 1.581139 / sqrt(5) = 1.963243
    assert (s.ci_low, s.ci_high) == pytest.approx((3 - 1.963243, 3 + 1.963243), abs=1e-5)


def test_welch_comparison_matches_hand_computation():
    c = compare(A, B)
    # se = sqrt(2.5/5 + 10/5) = 1.581139; t = -3 / se = -1.897367; Welch df = 6.25 / (0.0625 + 1) = 5.882353
    assert c.difference == -3.0
    assert c.p_value == pytest.approx(0.10753, abs=2e-4)  # R: t.test(1:5, seq(2, 10, 2))$p.value
    # t(0.975, 5.882353) = 2.45875 -> half width 3.887742 (R: -6.887742 0.887742)
    assert (c.ci_low, c.ci_high) == pytest.approx((-6.887742, 0.887742), abs=1e-5)
    assert not c.distinguishable


def test_clear_differences_are_distinguishable():
    rng = np.random.default_rng(0)
    c = compare(0.9 + 0.005 * rng.standard_normal(10), 0.8 + 0.005 * rng.standard_normal(10))
    assert c.distinguishable and c.p_value < 1e-10 and c.ci_low > 0.09


def test_seeds_needed_follows_the_normal_power_formula():
    # (1.959964 + 0.841621)^2 * (2.5 + 10) / 3^2 = 10.90 -> 11 seeds per configuration
    assert seeds_needed(3.0, math.sqrt(2.5), math.sqrt(10)) == 11
    assert seeds_needed(0.0, 1.0, 1.0) == math.inf
    # Story 000: 0.7 points apart with a 0.5-point seed std needs about 8 seeds, not 3.
    assert seeds_needed(0.007, 0.005, 0.005) == 9


def test_identical_constant_samples_are_not_a_difference():
    c = compare([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    assert c.p_value == 1.0 and not c.distinguishable and c.seeds_needed == math.inf
