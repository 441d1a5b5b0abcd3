r"""Run a grid of training configurations x seeds and compare them against seed noise.

Story 000's question, sampling with vs without replacement, in one command:

    python -m training.experiment --workdir=/tmp/exp000 --seeds=10 --vary=sampling=epoch,replacement \
        --data_dir=/tmp/extracted --model=lstm --epochs=15

Every flag that is not the experiment's own goes to `training.main` for every run; `--vary=FLAG=V1,V2` (any
training flag, repeatable) spans the grid. Each run lives in WORKDIR/<configuration>/seed_<n>, is a separate
process, and is skipped when its metrics.json exists, so rerunning the command resumes the experiment.
Report: WORKDIR/experiment.json, WORKDIR/report.md (also printed) and WORKDIR/experiment.png.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
from typing import Optional

if __name__ == "__main__":  # before TensorFlow is imported: its start-up chatter is filtered (settings.console)
    from settings import console

    console.quiet_start_up()

from absl import app, flags

# TensorFlow (paths), SciPy (statistics) and Matplotlib are imported by the functions that use them, so that
# --help answers at once.

FLAGS = flags.FLAGS


def define_flags():
    """Defines this command's flags (only when it runs as a command, so libraries can be imported together)."""
    flags.DEFINE_string("workdir", None, "Folder of the experiment; one subfolder per configuration and seed.")
    flags.DEFINE_multi_string("vary", [], "FLAG=V1,V2,...: a training flag and the values to compare (repeatable; "
                              "several --vary span their cartesian product).")
    flags.DEFINE_integer("seeds", 5, "Seeds per configuration.")
    flags.DEFINE_integer("first_seed", 0, "Seeds are first_seed .. first_seed + seeds - 1.")
    flags.DEFINE_string("metric", "test_accuracy", "The metrics.json value to compare.")


def parse_vary(specs: list[str]) -> list[tuple[str, list[str]]]:
    """['sampling=epoch,replacement'] -> [('sampling', ['epoch', 'replacement'])]."""
    out = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"--vary={spec!r}: expected FLAG=VALUE1,VALUE2,...")
        out.append((name.lstrip("-"), values.split(",")))
    return out


def configurations(vary: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    """The grid: one {flag: value} per configuration, in the order given."""
    if not vary:
        return [{}]
    names = [name for name, _ in vary]
    return [dict(zip(names, values)) for values in itertools.product(*(v for _, v in vary))]


def config_name(config: dict[str, str]) -> str:
    """'flag=value,...'; a path value is named by its last component (e.g. data_dir=split_by_frame)."""
    return ",".join(f"{k}={os.path.basename(v.rstrip('/')) if '/' in v else v}" for k, v in config.items()) or "baseline"


def run_one(workdir: str, common: list[str], config: dict[str, str], seed: int) -> dict:
    """Trains one configuration with one seed in its own process (or reuses a finished run)."""
    import tensorflow as tf

    from dataformat import files
    from dataformat.files import write_atomically

    run_dir = os.path.join(workdir, config_name(config), f"seed_{seed}")
    metrics_path = os.path.join(run_dir, "metrics.json")
    flags_of_run = [*common, *(f"--{k}={v}" for k, v in config.items()), f"--seed={seed}"]
    command_path = os.path.join(run_dir, "command.json")
    if tf.io.gfile.exists(command_path):  # resuming: the run must be the one this command asks for
        recorded = json.loads(files.read_text(command_path))
        if recorded != flags_of_run:
            raise ValueError(f"{run_dir} was run with other flags ({' '.join(recorded)}); use another --workdir")
    if not tf.io.gfile.exists(metrics_path):
        tf.io.gfile.makedirs(run_dir)
        write_atomically(command_path, json.dumps(flags_of_run) + "\n")
        args = [sys.executable, "-m", "training.main", *flags_of_run, f"--workdir={run_dir}"]
        print(f"[experiment] {config_name(config)} seed {seed}: training", flush=True)
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"run {run_dir} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return dict(json.loads(files.read_text(metrics_path)), metrics_path=metrics_path)


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


def run_experiment(workdir: str, common: list[str], vary: list[tuple[str, list[str]]], seeds: list[int],
                   metric: str = "test_accuracy") -> dict:
    """Runs (or resumes) the grid and writes experiment.json, report.md and experiment.png."""
    import tensorflow as tf

    from dataformat.files import write_atomically

    tf.io.gfile.makedirs(workdir)
    names = [config_name(c) for c in configurations(vary)]
    if len(set(names)) != len(names):
        raise ValueError(f"--vary values give clashing run names {names}: use paths with different last components")
    results = {}
    for config in configurations(vary):
        results[config_name(config)] = [run_one(workdir, common, config, seed) for seed in seeds]
    report = build_report(results, metric)
    report["command"] = {"common_flags": common, "vary": vary, "seeds": seeds}
    write_atomically(os.path.join(workdir, "experiment.json"), json.dumps(report, indent=2, allow_nan=False) + "\n")
    markdown = render_markdown(report)
    write_atomically(os.path.join(workdir, "report.md"), markdown)
    plot_report(report, os.path.join(workdir, "experiment.png"))
    return report


def parse_flags(argv: list[str]) -> list[str]:
    """absl parses the experiment's flags; the rest go to every `training.main` run. An argument neither knows
    is refused here, naming the nearest flag of either, before any run starts."""
    import settings
    from training.config import TrainConfig

    training_flags = flags.FlagValues()
    settings.define_flags(TrainConfig, flag_values=training_flags)
    known = {**settings.absl_flags(FLAGS), **settings.absl_flags(training_flags)}
    try:
        refused = settings.refused_arguments(FLAGS.read_flags_from_files(argv[1:], force_gnu=False), known)
        if refused:
            raise flags.Error("\n  ".join(refused))
        return FLAGS(argv, known_only=True)
    except flags.Error as e:
        sys.exit(f"experiment: error: {e}\nPass --helpshort to see the flags.")


def check_runs(common: list[str], vary: list[tuple[str, list[str]]]) -> None:
    """Parses and validates the flags of every configuration as `training.main` will, before any run trains: an
    unknown flag, a value of the wrong type or out of range is found now, not after hours of other runs."""
    import settings
    from training.config import TrainConfig

    known = {f.name for f in settings.flags_of(TrainConfig)}
    for name, _ in vary:
        if name not in known:
            raise ValueError(f"--vary={name}=...: {name!r} is not a flag of training.main")
    if "seed" in [*(n for n, _ in vary), *(a.lstrip("-").partition("=")[0] for a in common if a.startswith("-"))]:
        raise ValueError("--seed: the experiment sets each run's seed itself; give --seeds and --first_seed")
    for config in configurations(vary):
        values = flags.FlagValues()
        settings.define_flags(TrainConfig, flag_values=values)
        args = [*common, *(f"--{k}={v}" for k, v in config.items())]
        try:
            values(["training.main", *args])
            settings.config_from_flags(TrainConfig, values)  # checks itself as it is made
        except (flags.Error, ValueError) as e:
            raise ValueError(f"configuration {config_name(config)}: {e}") from None


def check_seeds(first_seed: int, seeds: int) -> None:
    """Raises SettingError unless --first_seed .. --first_seed + --seeds - 1 are at least 2 seeds that
    `training.main` takes."""
    import settings
    from training.config import MAX_SEED

    settings.require(seeds >= 2, "seeds", seeds, "at least 2 (seed noise, and with it a confidence interval, is "
                     "measured between seeds)")
    settings.require(0 <= first_seed <= MAX_SEED - seeds + 1, "first_seed", first_seed,
                     f"0..{MAX_SEED - seeds + 1} (every seed of the runs is in 0..{MAX_SEED})")


def main(argv):
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required")
    seeds = list(range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds))
    try:
        check_seeds(FLAGS.first_seed, FLAGS.seeds)
        check_runs(argv[1:], parse_vary(FLAGS.vary))
        report = run_experiment(FLAGS.workdir, argv[1:], parse_vary(FLAGS.vary), seeds, FLAGS.metric)
    except ValueError as e:
        print(f"experiment: error: {e}", file=sys.stderr)
        return 1
    print(render_markdown(report))
    data_dir = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--data_dir=")), "DATA_DIR")
    print(f"To see every seed, the data and the hardest examples on one page:\n  python -m tools.report "
          f"--data_dir={data_dir} --runs={FLAGS.workdir} --output_dir={FLAGS.workdir}/report")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
