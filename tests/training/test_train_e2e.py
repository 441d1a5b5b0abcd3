"""End to end on a real extraction of the sample videos: `python -m training.main` where the command itself is
under test (flags, exit status, messages, a kill), the library's `train_and_evaluate` in this process otherwise
(flax's train_test.py style: the same code without paying TensorFlow's start-up per run)."""

import json
import os
import subprocess
import sys

import pytest

from tests.entry_points import ROOT, run_module

pytestmark = pytest.mark.slow


def train(data_dir, workdir, *args):
    """`python -m training.main` with `args`; its metrics.json."""
    result = run_module("training.main", f"--data_dir={data_dir}", f"--workdir={workdir}", *args, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f)


def test_the_command_trains_well_above_chance_and_records_everything(extracted_samples, tmp_path):
    metrics = train(extracted_samples, tmp_path, "--model=lstm", "--epochs=12", "--lstm_units=64",
                    "--dense_units=32", "--track_difficulty")
    assert metrics["num_classes"] == 3
    # Chance is 1/3. The test split is one recording session per class (5 videos each), so accuracy moves in
    # large steps; the LSTM on random-weight features misses one whole session on every seed tried (0.667).
    assert metrics["test_accuracy"] >= 0.6, metrics["test_accuracy"]
    for key in ("test_loss", "val_accuracy", "val_loss", "per_class_accuracy", "confusion_matrix", "epochs_run",
                "seed", "weights_sha256", "data_fingerprint", "versions", "config"):
        assert key in metrics, key
    # The project's settings only (the TrainConfig), not absl's own flags.
    assert metrics["config"]["arch"]["lstm_units"] == 64 and "flags" not in metrics
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["test_examples"]
    # Model selection used valid only; the test split was read once, last.
    assert [s["split"] for s in metrics["splits_read"]] == ["train", "valid", "test"]
    assert metrics["splits_read"][-1]["phase"] == "final evaluation"
    for name in ("best.keras", "history.csv", "history.png", "tensorboard"):
        assert os.path.exists(tmp_path / name), name
    with open(tmp_path / "history.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + metrics["epochs_run"]
    with open(tmp_path / "difficulty_records.csv") as f:  # one record per train and valid sequence per epoch
        assert len(f.read().strip().splitlines()) == 1 + (60 + 15) * metrics["epochs_run"]


def test_the_cnn_trains_well_above_chance_on_augmented_frames(extracted_samples, tmp_path, train_here):
    metrics = train_here(extracted_samples, tmp_path, model="cnn", epochs=4, augment=("flip_h", "flip_v", "zoom"),
                         image_size=32, batch_size=16)
    assert metrics["test_accuracy"] >= 0.6, metrics["test_accuracy"]
    assert metrics["test_examples"] == 60 and tuple(metrics["config"]["input"]["augment"]) == ("flip_h", "flip_v", "zoom")
    assert [s["split"] for s in metrics["splits_read"]] == ["train", "valid", "test"]
    with open(tmp_path / "history.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + metrics["epochs_run"]


def test_same_seed_gives_bit_identical_weights_other_seed_does_not(extracted_samples, tmp_path, train_here):
    settings = dict(model="lstm", epochs=2, lstm_units=32, dense_units=16, deterministic=True)
    a = train_here(extracted_samples, tmp_path / "a", **settings, seed=1)
    b = train_here(extracted_samples, tmp_path / "b", **settings, seed=1)
    c = train_here(extracted_samples, tmp_path / "c", **settings, seed=2)
    assert a["weights_sha256"] == b["weights_sha256"]
    assert a["test_loss"] == b["test_loss"] and a["val_loss"] == b["val_loss"]
    assert c["weights_sha256"] != a["weights_sha256"]


def test_cyclic_schedule_and_sgd_run(extracted_samples, tmp_path, train_here):
    metrics = train_here(extracted_samples, tmp_path, model="lstm", epochs=4, lstm_units=32, dense_units=16,
                         lr_schedule="cyclic", optimizer="sgd", momentum=0.9, learning_rate=0.001, cyclic_max_lr=0.05,
                         sampling="replacement")
    assert metrics["epochs_run"] == 4 and metrics["config"]["lr_schedule"] == "cyclic"


def test_a_run_stuck_on_one_class_is_flagged_collapsed(extracted_samples, tmp_path, train_here):
    # SGD with a learning rate of 100 kills the one ReLU unit between the LSTM and the output: the output is then
    # the same for every input, one class for everything, and accuracy sits at that class's share (story 001's
    # "stuck at 50%", with 3 classes). With 8 units the run oscillated between collapsed and not, depending on
    # the features; one unit collapses on every seed tried (0, 1, 2).
    metrics = train_here(extracted_samples, tmp_path, model="lstm", epochs=5, optimizer="sgd", learning_rate=100,
                         lstm_units=16, dense_units=1, collapse_patience=2)
    assert metrics["collapsed"] is True, metrics["collapse_history"]
    assert metrics["collapse_epoch"] in (0, 1, 2)
    assert metrics["test_accuracy"] < 0.5


def test_experiment_reports_seed_noise(extracted_samples, tmp_path, capsys):
    from training.experiment import run_experiment

    common = [f"--data_dir={extracted_samples}", "--model=lstm", "--epochs=1", "--lstm_units=16", "--dense_units=8"]
    result = run_module("training.experiment", f"--workdir={tmp_path}", "--seeds=2",
                        "--vary=sampling=epoch,replacement", *common, "--metric=test_loss", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "experiment.json") as f:
        report = json.load(f)
    assert set(report["configurations"]) == {"sampling=epoch", "sampling=replacement"}
    assert all(c["n"] == 2 and c["collapsed_runs"] >= 0 for c in report["configurations"].values())
    (cmp,) = report["comparisons"]
    # 2 vs 2 seeds cannot exclude anything: the interval's ends are unbounded, null in JSON (no Infinity).
    assert cmp["ci_low"] is None and cmp["ci_high"] is None
    assert "sampling=epoch vs sampling=replacement" in result.stdout
    assert (tmp_path / "experiment.png").exists() and (tmp_path / "report.md").exists()
    # Resuming (the library, in this process): nothing is trained again and the numbers are the same.
    vary = [("sampling", ["epoch", "replacement"])]
    again = run_experiment(str(tmp_path), common, vary, [0, 1], "test_loss")
    assert "[experiment]" not in capsys.readouterr().out
    assert json.loads(json.dumps(again["configurations"])) == report["configurations"]
    # Resuming with other common flags would mix runs of different experiments: refused.
    with pytest.raises(ValueError, match="was run with other flags"):
        run_experiment(str(tmp_path), [*common, "--epochs=3"], vary, [0, 1], "test_loss")
    # One seed has no seed noise to compare with (it printed a CI of [-inf, inf]; zero failed in numpy).
    one = run_module("training.experiment", f"--workdir={tmp_path / 'one'}", "--seeds=1", *common, timeout=300)
    assert one.returncode == 1 and "--seeds=1: expected at least 2" in one.stderr


def test_killed_run_resumes_after_its_last_completed_epoch_to_identical_weights(extracted_samples, tmp_path,
                                                                              train_here, caplog):
    import signal
    import time

    common = ["--model=lstm", "--epochs=8", "--lstm_units=32", "--dense_units=16", "--deterministic"]
    # The reference runs in this process, the killed and resumed run in others: the bits must agree across both.
    reference = train_here(extracted_samples, tmp_path / "uninterrupted", model="lstm", epochs=8, lstm_units=32,
                           dense_units=16, deterministic=True)
    tmp_path = tmp_path / "killed"
    args = [sys.executable, "-m", "training.main", f"--data_dir={extracted_samples}", f"--workdir={tmp_path}", *common]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    history = tmp_path / "history.csv"
    deadline = time.time() + 300
    while time.time() < deadline and (not history.exists() or len(history.read_text().splitlines()) < 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "metrics.json").exists()
    done = len(history.read_text().splitlines()) - 1
    assert 2 <= done < 8
    with open(tmp_path / "backup" / "latest.json") as f:
        completed = json.load(f)["completed_epochs"]
    # Resuming with other flags would mix two runs in one record, and a killed LSTM resumed as a CNN dies in a
    # Keras shape error. Both are refused before any work, naming what differs.
    from training.workdir import WorkdirError

    for other, difference in ((dict(batch_size=16), "--batch_size: 32 there, 16 now"),
                              (dict(model="cnn"), "--model: 'lstm' there, 'cnn' now")):
        with pytest.raises(WorkdirError, match=difference):
            train_here(extracted_samples, tmp_path, **dict(dict(model="lstm", epochs=8, lstm_units=32,
                                                                dense_units=16, deterministic=True), **other))
    resumed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {tmp_path} at epoch {completed + 1} ({completed} completed)" in resumed.stderr
    # Keras and the input pipeline agree on the epoch: the resumed run starts exactly where the backup ends.
    assert f"Epoch {completed + 1}/8" in resumed.stdout + resumed.stderr
    with open(tmp_path / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["epochs_run"] == 8
    # Same input order per epoch, same optimizer state, same dropout generator state: bit-identical weights.
    assert metrics["weights_sha256"] == reference["weights_sha256"]
    assert [int(r.split(",")[0]) for r in history.read_text().splitlines()[1:]] == list(range(8))
    assert not (tmp_path / "backup").exists()  # removed once metrics.json is written
    # Rerunning a finished run does not train again.
    caplog.set_level("INFO")
    again = train_here(extracted_samples, tmp_path, model="lstm", epochs=8, lstm_units=32, dense_units=16,
                       deterministic=True)
    assert "finished run" in caplog.text and again["weights_sha256"] == reference["weights_sha256"]
    with pytest.raises(WorkdirError, match="finished its 8 epochs"):  # it printed the old metrics and exited 0
        train_here(extracted_samples, tmp_path, model="lstm", epochs=9, lstm_units=32, dense_units=16,
                   deterministic=True)


def write_sequences(data_dir, lengths):
    """An extraction output (`pipeline.synthetic`) with {split: [(label, T), ...]}: float32 features whose mean is
    the label, video ids `{split}_{i}.mp4`."""
    import numpy as np

    from pipeline.synthetic import SyntheticVideo, write_extraction

    rng = np.random.default_rng(0)
    videos = [SyntheticVideo(f"{split}_{i}.mp4", label, split, features=rng.normal(size=(t, 2048)) + label)
              for split, examples in lengths.items() for i, (label, t) in enumerate(examples)]
    write_extraction(data_dir, videos, ("a", "b"), feature_dtype="float32")


def test_longer_sequences_in_valid_and_test_are_cut_to_the_train_length(tmp_path, train_here):
    data = tmp_path / "data"
    write_sequences(str(data), {"train": [(i % 2, 3) for i in range(16)], "valid": [(i % 2, 7) for i in range(6)],
                                "test": [(i % 2, 5) for i in range(6)]})
    metrics = train_here(data, tmp_path / "run", model="lstm", epochs=2, lstm_units=8, dense_units=8)
    assert metrics["test_examples"] == 6 and metrics["num_classes"] == 2


def test_non_finite_loss_stops_training_with_a_clear_message(extracted_samples, tmp_path, train_here):
    from training.train import TrainingError

    with pytest.raises(TrainingError) as raised:
        train_here(extracted_samples, tmp_path, model="lstm", epochs=3, lstm_units=16, dense_units=8,
                   optimizer="sgd", learning_rate=1e30)
    message = str(raised.value)
    assert "the training loss became" in message and "at epoch 1, batch" in message
    assert "--learning_rate" in message
    assert not (tmp_path / "metrics.json").exists()


def test_the_run_names_its_splits_and_a_missing_test_split_is_skipped(tmp_path, train_here):
    """Extractions may name their splits anything (--splits=fit=0.8,select=0.2): training follows
    --train_split/--eval_splits, checks them before any work, and skips a missing default test split."""
    from training.train import TrainingError

    data = tmp_path / "data"
    write_sequences(str(data), {"fit": [(i % 2, 3) for i in range(16)], "select": [(i % 2, 3) for i in range(6)]})
    small = ["--model=lstm", "--epochs=2", "--lstm_units=8", "--dense_units=8"]

    wrong = run_module("training.main", f"--data_dir={data}", f"--workdir={tmp_path / 'w'}", *small, timeout=300)
    assert wrong.returncode == 1
    assert "has no split 'train' (it has fit, select)" in wrong.stderr and "--train_split" in wrong.stderr
    assert not (tmp_path / "w" / "history.csv").exists()  # refused before training

    small = dict(model="lstm", epochs=2, lstm_units=8, dense_units=8, train_split="fit")
    metrics = train_here(data, tmp_path / "run", **small, eval_splits=("select", "test"))
    assert [s["split"] for s in metrics["splits_read"]] == ["fit", "select"]
    assert metrics["final_evaluation"] == {} and "test_accuracy" not in metrics
    assert 0 <= metrics["val_accuracy"] <= 1

    with pytest.raises(TrainingError, match="name a split twice"):
        train_here(data, tmp_path / "twice", **small, eval_splits=("select", "fit"))
    assert not (tmp_path / "twice" / "history.csv").exists()
    # Refused: --eval_splits=test,valid would select the model on test and report valid as test_accuracy.
    with pytest.raises(TrainingError, match="the first split selects the model"):
        train_here(data, tmp_path / "on_test", **small, eval_splits=("test", "select"))


def test_features_with_nan_stop_training_naming_the_video(tmp_path, train_here):
    """A NaN in a shard stops training naming the video; unchecked, it trained to a finite loss and was
    diagnosed as a collapse."""
    import numpy as np

    from dataformat.integrity import CorruptDataError
    from tests.training.test_corrupt_data import rewrite

    data = tmp_path / "data"
    write_sequences(str(data), {"train": [(i % 2, 3) for i in range(16)], "valid": [(i % 2, 3) for i in range(6)],
                                "test": [(i % 2, 3) for i in range(6)]})

    def poison(example):
        if example.features.feature["video_id"].bytes_list.value[0] == b"train_5.mp4":
            example.features.feature["features"].bytes_list.value[0] = np.full((3, 2048), np.nan, np.float32).tobytes()

    rewrite(data, poison)
    with pytest.raises(CorruptDataError, match=r"features hold NaN or Inf .*train_5.mp4"):
        train_here(data, tmp_path / "run", model="lstm", epochs=2, lstm_units=8, dense_units=8)


def test_a_remote_workdir_gets_every_artifact(tmp_path, train_here):
    """gs:// workdirs go through the same file layer as local ones; TensorFlow's ram:// file system stands in
    for GCS (history.png used to be saved through matplotlib's local-path API and failed there)."""
    import tensorflow as tf

    from training import difficulty

    data = tmp_path / "data"
    write_sequences(str(data), {"train": [(i % 2, 3) for i in range(16)], "valid": [(i % 2, 3) for i in range(6)],
                                "test": [(i % 2, 3) for i in range(6)]})
    workdir = f"ram://{tmp_path.name}/run"  # one name per test: ram:// lives as long as this process
    train_here(data, workdir, epochs=2, track_difficulty=True, lstm_units=8, dense_units=8)
    records = difficulty.load_records([workdir])
    difficulty.write_report(difficulty.summarize_examples(records, {}), f"ram://{tmp_path.name}/report")
    run = tf.io.gfile.listdir(workdir)
    for name in ("metrics.json", "history.csv", "history.png", "best.keras", "difficulty_records.csv", "predictions.csv",
                 "tensorboard/"):
        assert name in run or name.rstrip("/") in run, (name, run)
    assert not [n for n in run if ".tmp-" in n]
    assert len(records) == (16 + 6) * 2
    assert {"difficulty.csv", "difficulty.png"} <= set(tf.io.gfile.listdir(f"ram://{tmp_path.name}/report"))


def test_one_class_is_warned_about_by_extraction_and_refused_by_training_before_any_work(tmp_path, train_here):
    """One class is warned about by the extraction and refused by training before any work; unchecked, it
    trained two epochs of a softmax over one class, then crashed with an IndexError in the evaluation."""
    from pipeline.job import ExtractConfig, run_extraction
    from tools.samples import write_samples
    from training.train import TrainingError

    write_samples(str(tmp_path / "videos"), seed=0, num_classes=1, sessions=4, clips=1, seconds=1.0, video_fps=4,
                  width=32, height=32)
    summary = run_extraction(ExtractConfig(output_dir=str(tmp_path / "out"), input_dir=str(tmp_path / "videos"),
                                           fps=2, image_size=75, weights="none"))
    assert any("only one class ('circle')" in w for w in summary["split_warnings"]), summary["split_warnings"]
    with pytest.raises(TrainingError, match="has 1 class \\(circle\\): a classifier needs at least 2"):
        train_here(tmp_path / "out", tmp_path / "run", epochs=2)
    assert not (tmp_path / "run").exists()
