"""What `training.experiment` says while it runs and how `--seeds=auto` decides when to stop.

`Progress` writes one line to stderr per finished run: runs done of the total, the run's value (or its error),
the running verdict of every pair of configurations once each has 2 seeds, and the time left estimated from the
rate of the runs trained so far (resumed runs cost nothing and are left out of the rate).

`grow_seeds` is the `--seeds=auto` loop: every configuration gets `start` seeds, then `step` more each round,
until `training.stats.sequential_verdict` has settled every pair or each configuration has `max_seeds`.
"""

from __future__ import annotations

import itertools
import sys
import time
from typing import Callable, Optional, TextIO

START_SEEDS = 3  # the first round: 3 seeds give a first estimate of seed noise (2 give a spread with 1 df)
SEED_STEP = 2  # seeds added per configuration each round


def pair_verdicts(values: dict[str, list[float]], *, max_seeds: int, min_effect: float,
                  n_test: Optional[dict[str, int]] = None,
                  paired: Optional[dict[tuple[str, str], bool]] = None) -> list[dict]:
    """`sequential_verdict` of every pair of configurations: [{a, b, settled, outcome, reason}, ...]. `values`
    hold the same seeds in the same order for every configuration; `paired[(a, b)]`: the runs of a and b pair
    by seed (`training.experiment_report.pairing`; unpaired when not given)."""
    from training import stats

    n_test, paired = n_test or {}, paired or {}
    verdicts = []
    for a, b in itertools.combinations(values, 2):
        v = stats.sequential_verdict(values[a], values[b], max_seeds=max_seeds, min_effect=min_effect,
                                     n_test_a=n_test.get(a), n_test_b=n_test.get(b),
                                     paired=paired.get((a, b), False))
        verdicts.append({"a": a, "b": b, "settled": bool(v.settled), "outcome": v.outcome, "reason": v.reason})
    return verdicts


def grow_seeds(run_round: Callable[[int], dict[str, list[float]]], verdicts: Callable[[dict], list[dict]], *,
               max_seeds: int, start: int = START_SEEDS, step: int = SEED_STEP) -> dict:
    """Runs rounds of `run_round(seeds per configuration) -> {configuration: values}` until every verdict of
    `verdicts(values)` is settled or the budget is spent; returns what happened, round by round."""
    seeds = min(start, max_seeds)
    rounds = []
    while True:
        values = run_round(seeds)
        found = verdicts(values)
        rounds.append({"seeds": seeds, "verdicts": found})
        if all(v["settled"] and v["outcome"] != "undecided" for v in found):
            stopped = "settled"
            break
        # The rule settles an undecided pair at its last look (max_seeds): that is the budget, not an answer.
        if seeds >= max_seeds or all(v["settled"] for v in found):
            stopped = "budget"
            break
        seeds = min(seeds + step, max_seeds)
    return {"start": start, "step": step, "max_seeds": max_seeds, "rounds": rounds, "stopped": stopped,
            "seeds": seeds}


class Progress:
    """The progress line (see the module docstring)."""

    def __init__(self, names: list[str], metric: str, verdicts: Callable[[dict], list[dict]],
                 stream: Optional[TextIO] = None):
        self.metric, self.verdicts = metric, verdicts
        self.stream = stream or sys.stderr
        self.total = self.done = self.trained = 0
        self.started = time.monotonic()
        self.values: dict[str, dict[int, float]] = {name: {} for name in names}  # in the grid's order

    def plan(self, total: int, finished: dict[tuple[str, int], dict]) -> None:
        """A round of `total` runs begins, of which `finished` (resumed runs) are already done."""
        self.total += total
        for (name, seed), metrics in finished.items():
            self.done += 1
            self.values[name][seed] = metrics.get(self.metric)

    def finished(self, name: str, seed: int, metrics: Optional[dict], error: Optional[str], seconds: float) -> str:
        self.done += 1
        self.trained += 1
        parts = [f"[experiment] {self.done}/{self.total} runs"]
        if error:
            parts.append(f"{name} seed {seed} FAILED after {seconds:.0f} s: {error.splitlines()[0]}")
        else:
            value = metrics.get(self.metric)
            self.values[name][seed] = value
            parts.append(f"{name} seed {seed}: {self.metric} {_number(value)} ({seconds:.0f} s)")
        parts += self._verdicts()
        left = self.total - self.done
        if left and self.trained:
            rate = (time.monotonic() - self.started) / self.trained
            parts.append(f"about {_duration(rate * left)} left")
        line = "; ".join(parts)
        print(line, file=self.stream, flush=True)
        return line

    def _verdicts(self) -> list[str]:
        # The seeds every configuration has finished, in seed order: a comparison needs the same seeds on both sides.
        common = set.intersection(*(set(s for s, v in by_seed.items() if v is not None)
                                    for by_seed in self.values.values())) if self.values else set()
        values = {n: [by_seed[s] for s in sorted(common)] for n, by_seed in self.values.items()}
        if len(values) < 2 or min(len(v) for v in values.values()) < 2:
            return []
        return [f"{v['a']} vs {v['b']}: {v['outcome']}" + ("" if v["settled"] else f" ({v['reason']})")
                for v in self.verdicts(values)]


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"
