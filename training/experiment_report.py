"""What an experiment found: each configuration's summary and each pair's comparison (`training.stats`), as
experiment.json, report.md and experiment.png; `training.experiment` runs the grid, `tools.report` shows the
result on the page."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Optional


STATISTICS_VERSION = 2  # experiment.json: comparisons carry method, verdict, test-set sizes (`upgrade_report`)


def _test_examples(runs: list[dict], metric: str) -> Optional[list[int]]:
    """The test-set size of each run, when the metric is an accuracy counted on the test split; else None
    (a loss has no binomial floor, and metrics.json does not record the valid split's size)."""
    if metric != "test_accuracy" or not all(isinstance(r.get("test_examples"), int) for r in runs):
        return None
    return [r["test_examples"] for r in runs]


def pairing(runs_a: list[dict], runs_b: list[dict]) -> tuple[bool, str]:
    """Whether two configurations' runs pair by seed, and why: only when they ran the same seeds and, for every
    seed, both digests in metrics.json's "pairing" (initial weights, first epoch's input order) are equal."""
    seeds_a, seeds_b = [r["seed"] for r in runs_a], [r["seed"] for r in runs_b]
    if sorted(seeds_a) != sorted(seeds_b) or len(set(seeds_a)) != len(seeds_a):
        return False, "unpaired: the configurations ran different seeds"
    by_seed = {r["seed"]: r for r in runs_b}
    for run in runs_a:
        mine, theirs = run.get("pairing") or {}, by_seed[run["seed"]].get("pairing") or {}
        for key, what, differ in (("initial_weights_sha256", "initial weights", "differ"),
                                  ("first_epoch_order_sha256", "first epoch's input order", "differs")):
            if not mine.get(key) or not theirs.get(key):
                return False, (f"unpaired: seed {run['seed']} has a run without the digest of its {what} in "
                               "metrics.json (written by an older version), so sharing cannot be checked")
            if mine[key] != theirs[key]:
                return False, (f"unpaired: with seed {run['seed']} the {what} {differ} between the configurations, "
                               "so a seed's runs do not share their noise")
    return True, (f"paired: for each of the {len(runs_a)} seeds both configurations started from the same initial "
                  "weights and read the first epoch in the same order (equal digests in metrics.json), so the "
                  "noise a seed puts into both cancels in their per-seed difference")


def build_report(results: dict[str, list[dict]], metric: str) -> dict:
    """Per-configuration summaries (with the test-set size of accuracies), pairwise comparisons (paired when
    the digests say the runs of a seed share their start, `pairing`) and collapse counts."""
    from training import stats

    for name, runs in results.items():
        if any(metric not in r for r in runs):
            raise ValueError(f"the runs of {name} have no {metric!r} (a data set without a test split has no "
                             "test_* metrics): choose --metric=val_accuracy or val_loss")
    results = {name: sorted(runs, key=lambda r: r["seed"]) for name, runs in results.items()}
    values = {name: [r[metric] for r in runs] for name, runs in results.items()}
    examples = {name: _test_examples(runs, metric) for name, runs in results.items()}
    for name, runs in results.items():
        _check_runs(name, runs, metric, examples[name] is not None)
    report = {"metric": metric, "statistics_version": STATISTICS_VERSION, "configurations": {}, "comparisons": []}
    for name, runs in results.items():
        summary = stats.summarize(values[name], examples[name])
        report["configurations"][name] = dict(
            dataclasses.asdict(summary), seeds=[r["seed"] for r in runs], values=values[name],
            collapsed_runs=sum(bool(r.get("collapsed")) for r in runs))
    for a, b in itertools.combinations(values, 2):
        if len(values[a]) > 1 and len(values[b]) > 1:
            paired, why = pairing(results[a], results[b])
            comparison = stats.compare(values[a], values[b], n_test_a=examples[a], n_test_b=examples[b],
                                       paired=paired, pairing_reason=why, points=metric.endswith("accuracy"))
            report["comparisons"].append(dict(dataclasses.asdict(comparison), a=a, b=b))
    return json_safe(report)


def _check_runs(name: str, runs: list[dict], metric: str, counted: bool) -> None:
    """A clear error for a run whose value cannot be compared, naming its metrics.json."""
    for r in runs:
        x = r[metric]
        where = f"{name} seed {r.get('seed')} ({r.get('metrics_path', 'its metrics.json')})"
        if not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ValueError(f"{where}: {metric} = {x!r} is not a finite number (a diverged run?): rerun it with "
                             "other settings or remove its run directory")
        if counted and not 0 <= x <= 1:
            raise ValueError(f"{where}: {metric} = {x!r} is not an accuracy between 0 and 1")


_INFINITE_ENDS = {"ci_low": -math.inf, "ci_high": math.inf, "seeds_needed": math.inf,
                  "seeds_needed_this_test_set": math.inf}


def json_safe(value):
    """The report with every infinite number as null (JSON has no Infinity); `restore_infinities` reads it."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def restore_infinities(report: dict) -> dict:
    """An experiment.json as written (nulls for unbounded interval ends and unreachable seed counts) with
    those numbers infinite again."""
    def restored(entry: dict) -> dict:
        return {k: (_INFINITE_ENDS[k] if v is None and k in _INFINITE_ENDS else v) for k, v in entry.items()}
    return dict(report, configurations={n: restored(c) for n, c in report["configurations"].items()},
                comparisons=[restored(c) for c in report.get("comparisons", [])])


def better_text(c: dict, metric: str) -> str:
    """Which configuration scored better: higher, or lower for a metric that ends in "loss"."""
    if c["difference"] == 0:
        return "neither (equal means)"
    lower_is_better = metric.endswith("loss")
    a_better = (c["difference"] < 0) if lower_is_better else (c["difference"] > 0)
    return f"{c['a'] if a_better else c['b']} ({'lower' if lower_is_better else 'higher'} {metric})"


def upgrade_report(report: dict) -> dict:
    """An experiment.json as this version writes it. One written before the statistics had methods and verdicts
    is compared again from its values (unpaired: its runs' digests are not in it; without the test set's noise:
    its size is not in it), and says so in "recomputed"."""
    from training import stats

    report = restore_infinities(report)
    if report.get("statistics_version", 1) >= STATISTICS_VERSION:
        return report
    configurations = {name: dict(c, test_examples=None, test_noise_std=0.0)
                      for name, c in report["configurations"].items()}
    comparisons = []
    for old in report.get("comparisons", []):
        a, b = configurations[old["a"]]["values"], configurations[old["b"]]["values"]
        comparison = stats.compare(a, b, pairing_reason="unpaired: an older experiment.json has no pairing digests",
                                   points=report["metric"].endswith("accuracy"))
        comparisons.append(dict(dataclasses.asdict(comparison), a=old["a"], b=old["b"]))
    return dict(report, configurations=configurations, comparisons=comparisons,
                statistics_version=STATISTICS_VERSION,
                recomputed="written by an older version (Welch's test): compared again from its values, unpaired "
                           "and without the test set's own noise (neither the runs' digests nor the test-set size "
                           "are in it); rerun the experiment command to get both")


def _difference(x: float, metric: str) -> str:
    """Accuracies as percentage points, other metrics as they are."""
    return f"{100 * x:+.2f} points" if metric.endswith("accuracy") else f"{x:+.4f}"


def _counted(c: dict) -> str:
    """What a comparison's interval counts: the test set's own noise only where its size is known."""
    a, b = c.get("test_examples_a"), c.get("test_examples_b")
    if a and b:
        return "seed noise and the test sets' own noise"
    if a or b:
        return f"seed noise and {c['a'] if a else c['b']}'s test-set noise; the other's test-set size is unknown"
    return "seed noise only: the test-set size is unknown"


def examples_label(c: dict) -> str:
    """'N = 100' beside an accuracy counted on 100 test examples; 'N unknown' otherwise."""
    return f"N = {c['test_examples']}" if c.get("test_examples") else "N unknown"


def render_markdown(report: dict) -> str:
    report = upgrade_report(report)
    metric = report["metric"]
    lines = [f"| configuration | seeds | mean {metric} | test examples | seed std | test-set sd | 95% CI | min | max "
             "| collapsed |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, c in report["configurations"].items():
        lines.append(f"| {name} | {c['n']} | {c['mean']:.4f} | {examples_label(c)} | {c['std']:.4f} | "
                     f"{c['test_noise_std']:.4f} | [{c['ci_low']:.4f}, {c['ci_high']:.4f}] | {c['minimum']:.4f} | "
                     f"{c['maximum']:.4f} | {c['collapsed_runs']} |")
    if report.get("recomputed"):
        lines += ["", f"Note: {report['recomputed']}."]
    for cmp in report["comparisons"]:
        lines += ["", f"**{cmp['a']} vs {cmp['b']}**: difference {_difference(cmp['difference'], metric)} (95% "
                  f"interval {_difference(cmp['ci_low'], metric)} to {_difference(cmp['ci_high'], metric)}, "
                  f"{_counted(cmp)}), p = {cmp['p_value']:.3g} ({cmp['test']}); better: "
                  f"{better_text(cmp, metric)}.",
                  "", f"- Analysis: {cmp['method_reason']}.", f"- Verdict: {cmp['verdict']}",
                  f"- Seeds needed: {cmp['seeds_advice']}"]
    return "\n".join(lines) + "\n"


def plot_report(report: dict, path: str) -> None:
    """Box plot of the metric per configuration with every seed as a dot; each label gives the test-set size."""
    from training import artifacts

    plt = artifacts.pyplot()
    names = list(report["configurations"])
    data = [report["configurations"][n]["values"] for n in names]
    fig, ax = plt.subplots(figsize=(max(4, 2 * len(names)), 4))
    ax.boxplot(data)
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n{examples_label(report['configurations'][n])}"
                                             for n in names])
    for i, values in enumerate(data, start=1):
        jitter = [i + 0.08 * ((k % 5) - 2) for k in range(len(values))]
        ax.plot(jitter, values, "o", alpha=0.6)
    ax.set_ylabel(report["metric"])
    artifacts.save_figure(fig, path)
