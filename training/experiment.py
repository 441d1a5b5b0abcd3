r"""Run a grid of training configurations x seeds and compare them against seed noise.

Story 000's question, sampling with vs without replacement, in one command:

    python -m training.experiment --workdir=/tmp/exp000 --seeds=10 --vary=sampling=epoch,replacement \
        --data_dir=/tmp/extracted --model=lstm --epochs=15

Every flag that is not the experiment's own goes to `training.main` for every run; `--vary=FLAG=V1,V2` (any
training flag, repeatable) spans the grid. Each run lives in WORKDIR/<configuration>/seed_<n> and is skipped
when its metrics.json exists, so rerunning the command resumes the experiment. Runs train in --parallel warm
worker processes (`training.experiment_workers`), each bit-identical to the same `python -m training.main`
alone. `--seeds=auto --max_seeds=N` adds seeds to every configuration in rounds until the verdict of every pair
is settled or each has N (`training.experiment_progress`). One line per finished run goes to stderr.
Report: WORKDIR/experiment.json, WORKDIR/report.md (also printed) and WORKDIR/experiment.png.
"""

from __future__ import annotations

import itertools
import json
import os
import sys

if __name__ == "__main__":  # before TensorFlow is imported: its start-up chatter is filtered (settings.console)
    from settings import console

    console.quiet_start_up()

from absl import app, flags

from training import experiment_progress
from training.experiment_report import build_report, pairing, plot_report, render_markdown

# TensorFlow (paths), SciPy (statistics) and Matplotlib are imported by the functions that use them, so that
# --help answers at once.

FLAGS = flags.FLAGS


def define_flags():
    """Defines this command's flags (only when it runs as a command, so libraries can be imported together)."""
    flags.DEFINE_string("workdir", None, "Folder of the experiment; one subfolder per configuration and seed.")
    flags.DEFINE_multi_string("vary", [], "FLAG=V1,V2,...: a training flag and the values to compare (repeatable; "
                              "several --vary span their cartesian product).")
    flags.DEFINE_string("seeds", "5", "Seeds per configuration, or auto: start with "
                        f"{experiment_progress.START_SEEDS} and add {experiment_progress.SEED_STEP} to every "
                        "configuration per round until the verdict of every pair is settled or --max_seeds.")
    flags.DEFINE_integer("max_seeds", 20, "--seeds=auto: the most seeds per configuration.")
    flags.DEFINE_float("min_effect", 0.01, "The smallest difference of --metric worth finding (accuracy 0.01 = "
                       "1 point): smaller ones count as equivalent (--seeds=auto and the running verdict).")
    flags.DEFINE_integer("first_seed", 0, "Seeds are first_seed .. first_seed + seeds - 1.")
    flags.DEFINE_string("metric", "test_accuracy", "The metrics.json value to compare.")
    flags.DEFINE_integer("parallel", 0, "Runs training at once, each in a warm worker process (0: one per core, "
                         "as many as the available memory holds at 1 GiB each, at most one per run).")


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


class ExperimentError(ValueError):
    """Runs of the experiment failed; the message names each with its error."""


def run_one(workdir: str, common: list[str], config: dict[str, str], seed: int):
    """(metrics, None) for a finished run (resuming), else (None, the Task that trains it) with the run's
    command.json written. A run folder holding another command's run is refused."""
    import tensorflow as tf

    from dataformat import files
    from dataformat.files import write_atomically
    from training.experiment_workers import Task, needs_fresh_process

    run_dir = os.path.join(workdir, config_name(config), f"seed_{seed}")
    metrics_path = os.path.join(run_dir, "metrics.json")
    flags_of_run = [*common, *(f"--{k}={v}" for k, v in config.items()), f"--seed={seed}"]
    command_path = os.path.join(run_dir, "command.json")
    if tf.io.gfile.exists(command_path):  # resuming: the run must be the one this command asks for
        recorded = json.loads(files.read_text(command_path))
        if recorded != flags_of_run:
            raise ValueError(f"{run_dir} was run with other flags ({' '.join(recorded)}); use another --workdir")
    if tf.io.gfile.exists(metrics_path):
        return dict(json.loads(files.read_text(metrics_path)), metrics_path=metrics_path), None
    tf.io.gfile.makedirs(run_dir)
    write_atomically(command_path, json.dumps(flags_of_run) + "\n")
    return None, Task((config_name(config), seed), tuple(flags_of_run), run_dir, needs_fresh_process(flags_of_run))


def run_grid(pool, workdir: str, common: list[str], configs: list[dict[str, str]], seeds: list[int],
             progress: experiment_progress.Progress) -> dict[str, list[dict]]:
    """Trains (or resumes) every configuration with every seed on `pool`, seed by seed across configurations;
    returns each configuration's metrics in seed order. A failed run does not stop the others: they finish,
    then ExperimentError names every failed run (a rerun trains only those)."""
    finished, tasks = {}, []
    for seed in seeds:
        for config in configs:
            metrics, task = run_one(workdir, common, config, seed)
            if task is None:
                finished[(config_name(config), seed)] = metrics
            else:
                tasks.append(task)
    progress.plan(len(finished) + len(tasks), finished)
    failed = []
    for outcome in pool.run(tasks):
        name, seed = outcome.task.key
        progress.finished(name, seed, outcome.metrics, outcome.error, outcome.seconds)
        if outcome.error:
            failed.append(f"{name} seed {seed} ({outcome.task.workdir}): {outcome.error}")
        else:
            finished[outcome.task.key] = dict(outcome.metrics,
                                              metrics_path=os.path.join(outcome.task.workdir, "metrics.json"))
    if failed:
        raise ExperimentError(f"{len(failed)} of {len(tasks)} runs failed (each run's output is in its "
                              "train.log; rerun the command to retry them):\n  " + "\n  ".join(failed))
    return {config_name(c): [finished[(config_name(c), s)] for s in seeds] for c in configs}


def run_experiment(workdir: str, common: list[str], vary: list[tuple[str, list[str]]], seeds: list[int] | None,
                   metric: str = "test_accuracy", *, parallel: int = 0, first_seed: int = 0, max_seeds: int = 0,
                   min_effect: float = 0.01, progress_stream=None) -> dict:
    """Runs (or resumes) the grid and writes experiment.json, report.md and experiment.png. `seeds=None`: seeds
    are added in rounds from `first_seed` until every pair's verdict is settled or each has `max_seeds`."""
    import tensorflow as tf

    from dataformat.files import write_atomically
    from training.experiment_workers import WorkerPool, default_parallel, worker_memory

    tf.io.gfile.makedirs(workdir)
    configs = configurations(vary)
    names = [config_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"--vary values give clashing run names {names}: use paths with different last components")
    if seeds is None and len(configs) < 2:
        raise ValueError("--seeds=auto compares configurations: give --vary with at least two values")
    runs = len(configs) * (len(seeds) if seeds is not None else max(experiment_progress.START_SEEDS,
                                                                     experiment_progress.SEED_STEP))
    workers, why = (parallel, "--parallel") if parallel else default_parallel(runs, worker_memory(
        [[*common, *(f"--{k}={v}" for k, v in c.items())] for c in configs]))
    budget = len(seeds) if seeds is not None else max_seeds

    def verdicts(values):
        # Paired only when every run of both configurations is in `values` (a round's end, not mid-round).
        paired = {(a, b): pairing(results[a], results[b])[0] for a, b in itertools.combinations(names, 2)
                  if len(results[a]) == len(values[a]) == len(results[b]) == len(values[b])}
        return experiment_progress.pair_verdicts(values, max_seeds=budget, min_effect=min_effect,
                                                 n_test=_test_examples_by_configuration(results, metric),
                                                 paired=paired)

    progress = experiment_progress.Progress(names, metric, verdicts, progress_stream)
    results: dict[str, list[dict]] = {n: [] for n in names}
    every_seed = list(seeds) if seeds is not None else list(range(first_seed, first_seed + max_seeds))
    with WorkerPool(workers) as pool:
        def run_round(n: int) -> dict[str, list[float]]:
            done = len(results[names[0]])
            new = run_grid(pool, workdir, common, configs, every_seed[done:n], progress)
            for name in names:
                results[name] += new[name]
            return {name: [r[metric] for r in runs] for name, runs in results.items()}

        if seeds is None:
            sequential = experiment_progress.grow_seeds(run_round, verdicts, max_seeds=max_seeds)
        else:
            sequential = {"rounds": [{"seeds": len(seeds), "verdicts": verdicts(run_round(len(seeds)))}]}
    report = build_report(results, metric)
    report["command"] = {"common_flags": common, "vary": vary, "seeds": [r["seed"] for r in results[names[0]]],
                         "parallel": workers, "parallel_why": why}
    report["sequential"] = dict(sequential, min_effect=min_effect, max_seeds=budget)
    write_atomically(os.path.join(workdir, "experiment.json"), json.dumps(report, indent=2, allow_nan=False) + "\n")
    markdown = render_markdown(report)
    write_atomically(os.path.join(workdir, "report.md"), markdown)
    plot_report(report, os.path.join(workdir, "experiment.png"))
    return report


def _test_examples_by_configuration(results: dict[str, list[dict]], metric: str) -> dict[str, int]:
    """Each configuration's test examples, for an accuracy on the test split (its binomial noise)."""
    if metric != "test_accuracy":
        return {}
    return {name: runs[0]["test_examples"] for name, runs in results.items() if runs and "test_examples" in runs[0]}


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


def parse_seeds(value: str, first_seed: int, max_seeds: int) -> list[int] | None:
    """--seeds: the seeds of every configuration, or None for auto (--max_seeds checked as their budget).
    Raises SettingError for anything else."""
    import settings

    if value.strip().lower() == "auto":
        settings.require(max_seeds >= experiment_progress.START_SEEDS, "max_seeds", max_seeds,
                         f"at least {experiment_progress.START_SEEDS}, the first round of --seeds=auto")
        check_seeds(first_seed, max_seeds)
        return None
    try:
        count = int(value)
    except ValueError:
        raise settings.SettingError(f"--seeds={value!r}: expected a number of seeds or auto") from None
    check_seeds(first_seed, count)
    return list(range(first_seed, first_seed + count))


def main(argv):
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required")
    try:
        seeds = parse_seeds(FLAGS.seeds, FLAGS.first_seed, FLAGS.max_seeds)
        vary = parse_vary(FLAGS.vary)
        check_runs(argv[1:], vary)
        if FLAGS.parallel < 0:
            raise ValueError(f"--parallel={FLAGS.parallel}: expected 0 (as many as the machine holds) or more")
        report = run_experiment(FLAGS.workdir, argv[1:], vary, seeds, FLAGS.metric,
                                parallel=FLAGS.parallel, first_seed=FLAGS.first_seed, max_seeds=FLAGS.max_seeds,
                                min_effect=FLAGS.min_effect)
    except ValueError as e:
        print(f"experiment: error: {e}", file=sys.stderr)
        return 1
    print(render_markdown(report))
    sequential = report["sequential"]
    if seeds is None:
        print(f"--seeds=auto stopped at {sequential['seeds']} seeds per configuration: "
              + ("every verdict settled." if sequential["stopped"] == "settled"
                 else f"the budget (--max_seeds={FLAGS.max_seeds}) was spent with verdicts unsettled."))
    for v in sequential["rounds"][-1]["verdicts"]:
        print(f"Verdict {v['a']} vs {v['b']} (smallest difference of interest {FLAGS.min_effect}): {v['outcome']}"
              f" - {v['reason']}")
    data_dir = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--data_dir=")), "DATA_DIR")
    print(f"To see every seed, the data and the hardest examples on one page:\n  python -m tools.report "
          f"--data_dir={data_dir} --runs={FLAGS.workdir} --output_dir={FLAGS.workdir}/report")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
