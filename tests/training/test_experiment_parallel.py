"""training.experiment's warm workers and --seeds=auto: a run in a worker equals the same run alone, failures and
dead workers are named per run, and the seed rounds stop when settled or at the budget."""

import io
import json
import os
import signal

import numpy as np
import pytest

from tests.entry_points import run_module

# The smallest real run: a tiny LSTM, 2 epochs, on synthetic sequences written by the extraction's own writers.
TINY_RUN = ("--model=lstm", "--epochs=2", "--lstm_units=8", "--dense_units=4")


@pytest.fixture(scope="module")
def tiny_sequences(tmp_path_factory):
    """2 classes, 12/4/4 videos of 4 frames of 2048 features, the classes half a unit apart."""
    from pipeline.synthetic import SyntheticVideo, write_extraction

    rng = np.random.default_rng(0)
    videos = [SyntheticVideo(f"{split}/v{i}.mp4", i % 2, split=split,
                             features=rng.normal(size=(4, 2048)).astype(np.float32) + (i % 2) - 0.5)
              for split, n in (("train", 12), ("valid", 4), ("test", 4)) for i in range(n)]
    data_dir = str(tmp_path_factory.mktemp("tiny_sequences"))
    write_extraction(data_dir, videos, ("a", "b"), feature_dtype="float16")
    return data_dir


def test_seed_rounds_stop_when_every_verdict_is_settled_and_record_each_round():
    from training.experiment_progress import grow_seeds

    asked = []

    def run_round(seeds):
        asked.append(seeds)
        return {"x": [0.0] * seeds, "y": [1.0] * seeds}

    def verdicts(values):  # settled once both have 7 seeds
        settled = len(values["x"]) >= 7
        return [{"a": "x", "b": "y", "settled": settled, "outcome": "different" if settled else "undecided",
                 "reason": f"{len(values['x'])} seeds"}]

    record = grow_seeds(run_round, verdicts, max_seeds=20, start=3, step=2)
    assert asked == [3, 5, 7]
    assert record["stopped"] == "settled" and record["seeds"] == 7
    assert [r["seeds"] for r in record["rounds"]] == [3, 5, 7]
    assert record["rounds"][-1]["verdicts"][0]["outcome"] == "different"


def test_seed_rounds_stop_at_the_budget_with_the_last_round_cut_to_it():
    from training.experiment_progress import grow_seeds

    asked = []
    never = lambda values: [{"a": "x", "b": "y", "settled": False, "outcome": "undecided", "reason": "-"},
                            {"a": "x", "b": "z", "settled": True, "outcome": "equivalent", "reason": "-"}]
    record = grow_seeds(lambda n: asked.append(n) or {}, never, max_seeds=6, start=3, step=2)
    assert asked == [3, 5, 6] and record["stopped"] == "budget" and record["seeds"] == 6


def test_the_progress_line_counts_runs_shows_the_verdict_from_two_seeds_and_the_time_left():
    from training.experiment_progress import Progress

    seen = []

    def verdicts(values):
        seen.append({k: list(v) for k, v in values.items()})
        return [{"a": "x", "b": "y", "settled": False, "outcome": "undecided", "reason": "wide interval"}]

    out = io.StringIO()
    progress = Progress(["x", "y"], "test_accuracy", verdicts, out)
    progress.plan(6, {("x", 0): {"test_accuracy": 0.5}})  # one resumed run
    first = progress.finished("y", 0, {"test_accuracy": 0.75}, None, 3.0)
    assert first.startswith("[experiment] 2/6 runs; y seed 0: test_accuracy 0.7500 (3 s)")
    assert " vs " not in first and "left" in first and not seen  # 1 seed each: no verdict yet
    progress.finished("x", 1, None, "TrainingError: the loss became nan\nmore", 1.0)
    progress.finished("x", 2, {"test_accuracy": 0.25}, None, 2.0)
    assert not seen  # y has 1 seed
    assert progress.finished("y", 1, {"test_accuracy": 1.0}, None, 2.0) and not seen  # x has no seed 1: no pair
    last = progress.finished("y", 2, {"test_accuracy": 1.0}, None, 2.0)
    assert "x seed 1 FAILED after 1 s: TrainingError: the loss became nan;" in out.getvalue()
    assert "more" not in out.getvalue()
    assert last.startswith("[experiment] 6/6 runs") and "left" not in last
    assert "x vs y: undecided (wide interval)" in last and seen == [{"x": [0.5, 0.25], "y": [0.75, 1.0]}]


def test_default_parallel_is_bounded_by_cores_memory_and_runs():
    from training.experiment_workers import default_parallel

    cores = len(os.sched_getaffinity(0))
    assert default_parallel(1)[0] == 1
    assert default_parallel(1000)[0] <= cores
    assert default_parallel(1000, per_worker_bytes=1 << 50)[0] == 1  # nothing fits: still one
    assert "cores" in default_parallel(3)[1]


@pytest.mark.slow
def test_a_run_in_a_warm_worker_after_another_run_equals_the_same_run_alone(tiny_sequences, tmp_path):
    from training.experiment_workers import Task, WorkerPool

    common = (f"--data_dir={tiny_sequences}", *TINY_RUN)
    # The first run changes what a run sets process-wide: precision policy, sampling, op determinism, seeds.
    first = Task(("first", 1), (*common, "--seed=1", "--sampling=replacement", "--mixed_precision=bfloat16",
                                "--nodeterministic"), str(tmp_path / "first"))
    second = Task(("second", 0), (*common, "--seed=0"), str(tmp_path / "second"))
    with WorkerPool(1) as pool:
        pids = []
        outcomes = list(pool.run([first, second], on_start=lambda task, pid: pids.append(pid)))
    assert [o.error for o in outcomes] == [None, None] and len(set(pids)) == 1  # one warm process
    alone = run_module("training.main", *second.args, f"--workdir={tmp_path / 'alone'}", timeout=600)
    assert alone.returncode == 0, alone.stderr[-3000:]
    with open(tmp_path / "alone" / "metrics.json") as f:
        expected = json.load(f)
    assert outcomes[1].metrics["weights_sha256"] == expected["weights_sha256"]
    assert outcomes[1].metrics["test_loss"] == expected["test_loss"]
    assert "Epoch 2/2" in (tmp_path / "second" / "train.log").read_text()  # the run's output, in its folder


@pytest.mark.slow
def test_a_failed_run_and_a_killed_worker_fail_only_their_runs_and_the_worker_is_replaced(tiny_sequences,
                                                                                            tmp_path):
    from training.experiment_workers import Task, WorkerPool

    common = (f"--data_dir={tiny_sequences}", *TINY_RUN)
    bad = Task(("bad", 0), (*common, "--train_split=nosuch"), str(tmp_path / "bad"))
    killed = Task(("killed", 0), common, str(tmp_path / "killed"))
    good = Task(("good", 0), common, str(tmp_path / "good"))

    def kill_one(task, pid):
        if task is killed:
            os.kill(pid, signal.SIGKILL)

    with WorkerPool(1) as pool:
        outcomes = {o.task.key[0]: o for o in pool.run([bad, killed, good], on_start=kill_one)}
    assert outcomes["bad"].error.startswith("TrainingError: ") and "has no split 'nosuch'" in outcomes["bad"].error
    assert "worker process died (killed by SIGKILL" in outcomes["killed"].error
    assert outcomes["good"].error is None and outcomes["good"].metrics["epochs_run"] == 2


@pytest.mark.slow
def test_seeds_auto_adds_rounds_until_the_budget_and_records_them(tiny_sequences, tmp_path):
    # Two names for one configuration: the same runs, so no verdict can find a difference, and with a smallest
    # effect of interest of 1e-4 on val_loss, 4 seeds cannot show equivalence either: every round runs.
    result = run_module("training.experiment", f"--workdir={tmp_path}", "--seeds=auto", "--max_seeds=4",
                        "--min_effect=0.0001", "--vary=learning_rate=0.001,0.0010", "--parallel=2",
                        f"--data_dir={tiny_sequences}", *TINY_RUN, "--metric=val_loss", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "experiment.json") as f:
        report = json.load(f)
    sequential = report["sequential"]
    assert [r["seeds"] for r in sequential["rounds"]] == [3, 4] and sequential["stopped"] == "budget"
    assert report["command"]["seeds"] == [0, 1, 2, 3] and report["command"]["parallel"] == 2
    assert all(c["n"] == 4 for c in report["configurations"].values())
    lines = [line for line in result.stderr.splitlines() if line.startswith("[experiment] ")]
    assert len(lines) == 8 and lines[-1].startswith("[experiment] 8/8 runs")
    assert "learning_rate=0.001 vs learning_rate=0.0010: undecided" in lines[-1]
    assert "budget (--max_seeds=4) was spent" in result.stdout
