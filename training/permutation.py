"""Permutation tests of a difference in means and the intervals they give, vectorised over a batch of experiments.

Unpaired: the seeds' values of two configurations are pooled and relabelled (every split of the pooled values
into groups of the two sizes). Paired: each seed's difference keeps its size and its sign is flipped. The
statistic is the difference of means (the mean difference, paired); the p-value is two-sided and counts ties as
at least as extreme, so it stays valid for discrete values such as accuracies k/N where runs tie.

Every relabeling is enumerated while there are at most `EXACT_LIMIT` of them (3 vs 3 seeds: 20; 3 paired
seeds: 2^3 = 8); beyond that, `MONTE_CARLO` random relabelings from a fixed seed plus the observed one, so a
report is reproducible and the p-value stays valid ((1 + count) / (1 + draws), Phipson & Smyth 2010).

The interval inverts the test under a shift model: it holds every shift `delta` of the first configuration for
which the test of (a - delta) against b does not reject. Its coverage is that of the test (exact), at any number
of seeds; when no relabeling could ever reject (3 vs 3 seeds at 5%: the smallest p is 2/20), it is infinite.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
from scipy import special

EXACT_LIMIT = 20_000
MONTE_CARLO = 10_000
MONTE_CARLO_SEED = 2021
_CHUNK_ELEMENTS = 4_000_000  # batch rows x relabelings evaluated at once (32 MB of float64)


@dataclasses.dataclass(frozen=True)
class Relabelings:
    """The relabelings a test ranges over. The statistic of relabeling r on the pooled values z (a then b, or
    the paired differences) is `z @ weights[:, r]`; shifting the first sample by -delta moves it by
    -delta * slope[r]. Column 0 is the observed labeling."""

    weights: np.ndarray  # (values, relabelings)
    slope: np.ndarray  # (relabelings,)
    exact: bool

    @property
    def contrasts(self) -> bool:
        """Whether every relabeling's weights sum to 0 (unpaired): then the statistic ignores an offset added to
        all values, and the values are centred before it is taken, so that rounding stays relative to their
        spread."""
        return bool(np.all(np.abs(self.weights.sum(axis=0)) < 1e-12))

    @property
    def count(self) -> int:
        return self.weights.shape[1]

    @property
    def smallest_p(self) -> float:
        """The smallest two-sided p-value any data can give: relabelings whose statistic moves exactly like the
        observed one (itself, and the swap of the groups when they have one size) always count."""
        return float(np.mean(np.abs(self.slope) >= 1 - 1e-12))


def unpaired(n_a: int, n_b: int) -> Relabelings:
    """Every split of n_a + n_b pooled values into groups of n_a and n_b (or MONTE_CARLO random ones)."""
    n = n_a + n_b
    if math.comb(n, n_a) <= EXACT_LIMIT:
        members = np.zeros((math.comb(n, n_a), n), bool)
        for r, chosen in enumerate(itertools.combinations(range(n), n_a)):  # the first is the observed labeling
            members[r, list(chosen)] = True
        exact = True
    else:
        rng = np.random.default_rng(MONTE_CARLO_SEED)
        ranks = np.argsort(rng.random((MONTE_CARLO, n)), axis=1)
        members = np.concatenate([np.arange(n)[None] < n_a, ranks < n_a])
        exact = False
    weights = np.where(members, 1.0 / n_a, -1.0 / n_b).T
    return Relabelings(weights, weights[:n_a].sum(axis=0), exact)


def paired(n: int) -> Relabelings:
    """Every sign pattern of n paired differences (or MONTE_CARLO random ones)."""
    if 2**n <= EXACT_LIMIT:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None]) & 1)  # row 0: all +1, the observed
        exact = True
    else:
        rng = np.random.default_rng(MONTE_CARLO_SEED)
        signs = np.concatenate([np.ones((1, n), int), rng.choice([-1, 1], size=(MONTE_CARLO, n))])
        exact = False
    weights = signs.T / n
    return Relabelings(weights.astype(np.float64), weights.sum(axis=0), exact)


def smallest_p(n_a: int, n_b: int, is_paired: bool) -> float:
    """`Relabelings.smallest_p` of the test `relabelings_for` would build, without building it."""
    if is_paired:
        return 2 / 2**n_a if 2**n_a <= EXACT_LIMIT else 1 / (MONTE_CARLO + 1)
    count = math.comb(n_a + n_b, n_a)
    return (2 if n_a == n_b else 1) / count if count <= EXACT_LIMIT else 1 / (MONTE_CARLO + 1)


def relabelings_for(n_a: int, n_b: int, is_paired: bool) -> Relabelings:
    return paired(n_a) if is_paired else unpaired(n_a, n_b)


RELATIVE_TIE = 1e-9  # statistics closer than this fraction of the values' spread are equal
PRECISION_TIE = 1e-13  # ... or than this fraction of the values' magnitude (their float precision, summed)


def prepared(z: np.ndarray, rel: Relabelings) -> tuple[np.ndarray, np.ndarray]:
    """The batch z ready for the statistic (centred per row when the statistic ignores offsets) and each row's
    tie tolerance: RELATIVE_TIE of the centred values' largest magnitude plus PRECISION_TIE of the raw values'
    (what float rounding of the inputs and of sums in another order can move). Relative, so p and the
    interval do not change when every value is rescaled or offset (the metric's units)."""
    z = np.atleast_2d(np.asarray(z, np.float64))
    raw = np.abs(z).max(axis=1, keepdims=True)
    if rel.contrasts:
        z = z - z.mean(axis=1, keepdims=True)
    return z, RELATIVE_TIE * np.abs(z).max(axis=1, keepdims=True) + PRECISION_TIE * raw


def p_values(z: np.ndarray, rel: Relabelings, shift=0.0) -> np.ndarray:
    """Two-sided p-values of the batch z (rows of pooled values or paired differences) for the hypothesis that
    the first configuration's values minus `shift` (per row) are exchangeable with the second's."""
    z, tie = prepared(z, rel)
    shift = np.broadcast_to(np.asarray(shift, np.float64), z.shape[:1])
    out = np.empty(len(z))
    rows = max(1, _CHUNK_ELEMENTS // rel.count)
    for start in range(0, len(z), rows):
        zs, d = z[start:start + rows], shift[start:start + rows, None]
        stats = zs @ rel.weights - d * rel.slope[None]
        observed = np.abs(stats[:, :1])
        # Ties count as extreme; the tolerance absorbs float rounding of equal sums taken in another order.
        tolerance = tie[start:start + rows] + RELATIVE_TIE * np.abs(d)
        out[start:start + rows] = np.mean(np.abs(stats) >= observed - tolerance, axis=1)
    return out


def p_values_with_noise(z: np.ndarray, rel: Relabelings, noise_std) -> np.ndarray:
    """Two-sided p-values of the batch z for "the configurations do not differ on new data" when the observed
    statistic T also carries an independent normal error E of sd `noise_std` (per row: the test sets' sampling,
    which the seeds do not show): p = mean_r P(|S_r + E| >= |T|), where S_r is relabeling r's statistic on the
    values with the observed difference taken out (the first configuration shifted onto the second; paired:
    the differences centred), the seed noise alone, outliers and collapsed runs included. Rows with noise_std 0
    get `p_values`."""
    z, _ = prepared(z, rel)
    noise = np.broadcast_to(np.asarray(noise_std, np.float64), z.shape[:1])
    out = p_values(z, rel)
    rows = max(1, _CHUNK_ELEMENTS // rel.count)
    for start in range(0, len(z), rows):
        sd = noise[start:start + rows, None]
        if not np.any(sd > 0):
            continue
        zs = z[start:start + rows]
        observed = np.abs(zs @ rel.weights[:, :1])
        residual = zs - (zs @ rel.weights[:, :1]) * (rel.weights[:, 0] > 0)[None]  # shift the first group
        if not rel.contrasts:
            residual = zs - zs.mean(axis=1, keepdims=True)
        seed = residual @ rel.weights
        with np.errstate(divide="ignore", invalid="ignore"):
            tail = special.ndtr((seed - observed) / sd) + special.ndtr((-observed - seed) / sd)
        out[start:start + rows] = np.where(sd[:, 0] > 0, np.mean(tail, axis=1), out[start:start + rows])
    return out


def shift_interval(z: np.ndarray, estimate: np.ndarray, rel: Relabelings, alpha: float) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """(low, high) per row: the smallest and largest shift the test at level `alpha` does not reject; +-inf
    where no shift is ever rejected.

    Exact, by a sweep: relabeling r counts as extreme at shift d when |T_r - d slope_r| >= |T_obs - d|, a
    quadratic condition with negative leading coefficient (|slope_r| < 1), so it holds on one closed interval
    of d between the roots (T_r - T_obs) / (slope_r - 1) and (T_r + T_obs) / (slope_r + 1). A shift is kept
    while more than alpha * count relabelings count, those with |slope| = 1 (always counted) included. Each
    interval is widened by the tie tolerance `p_values` uses (a tie within it counts), over 1 - |slope_r|, the
    least rate at which the two sides of the condition part.
    """
    z, tie = prepared(z, rel)
    if rel.smallest_p > alpha:
        return np.full(len(z), -np.inf), np.full(len(z), np.inf)
    moving = np.abs(rel.slope) < 1 - 1e-12
    needed = alpha * rel.count - np.count_nonzero(~moving)  # kept while the count of intervals exceeds this
    slope = rel.slope[moving]
    low, high = np.empty(len(z)), np.empty(len(z))
    rows = max(1, _CHUNK_ELEMENTS // rel.count)
    for start in range(0, len(z), rows):
        stats = z[start:start + rows] @ rel.weights
        observed, stats = stats[:, :1], stats[:, moving]
        roots = np.stack([(stats - observed) / (slope - 1), (stats + observed) / (slope + 1)])
        widen = 2 * tie[start:start + rows] / (1 - np.abs(slope))  # 2: the tolerance grows with |d| too
        ends = np.concatenate([roots.min(axis=0) - widen, roots.max(axis=0) + widen], axis=1)  # openings, closings
        # By position; at one position openings first (the intervals are closed): a stable sort keeps them so.
        steps = np.where(np.argsort(ends, axis=1, kind="stable") < stats.shape[1], 1, -1)
        ends = np.sort(ends, axis=1)
        count = np.cumsum(steps, axis=1)
        kept_after = count > needed
        kept_before = (count - steps) > needed
        low[start:start + rows] = np.where(kept_after, ends, np.inf).min(axis=1)
        high[start:start + rows] = np.where(kept_before & (steps < 0), ends, -np.inf).max(axis=1)
    return low, high
