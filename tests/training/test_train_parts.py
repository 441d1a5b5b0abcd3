"""The pieces of a training run, in process on a tiny model: settings, optimizer, history, best checkpoint, backup."""

import json
import os
import re

import keras
import numpy as np
import pytest

from training import artifacts
from training.schedules import CyclicLearningRate
from training.callbacks import Backup, BestCheckpoint, HistoryCsv, rng_state_variables
from training.train import TrainConfig, make_optimizer


def tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dropout(0.5, seed=1),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    return model


def fit_one_step(model):
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    model.fit(x, np.arange(8) % 2, epochs=1, verbose=0)


@pytest.mark.parametrize("flag, value", [
    ("optimizer", "rmsprop"), ("lr_schedule", "cosine"), ("model", "gru"), ("mixed_precision", "int8"),
    ("epochs", 0), ("distribution", "ring"), ("cyclic_mode", "sine"), ("cnn", "vgg"),
    # Range checks: otherwise accepted, or refused with a raw error deep inside Keras or tf.data.
    ("learning_rate", -1.0), ("learning_rate", float("nan")), ("zoom_range", 5.0), ("seq_len", 0), ("seq_len", -5),
    ("image_size", 0), ("batch_size", 0), ("shuffle_buffer", 0), ("dropout", 1.0), ("momentum", 1.5),
    ("collapse_patience", 0), ("plateau_factor", 2.0),
    # Seeds outside NumPy's range: otherwise a NumPy traceback after run.json was written, and the workdir then
    # refused the corrected seed.
    ("seed", -1), ("seed", 2**32)])
def test_bad_settings_are_refused_before_any_work_naming_the_flag_and_its_range(flag, value):
    from tests.training.conftest import make_config

    with pytest.raises(ValueError, match=rf"--{flag}='?{re.escape(str(value))}'?: expected"):
        make_config("unused", **{flag: value})  # a config checks itself when it is made


def test_optimizer_factory():
    assert isinstance(make_optimizer(TrainConfig(data_dir="x"), steps=10), keras.optimizers.Adam)
    sgd = make_optimizer(TrainConfig(data_dir="x", optimizer="sgd", momentum=0.9, learning_rate=0.1), steps=10)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9
    cyclic = make_optimizer(TrainConfig(data_dir="x", lr_schedule="cyclic", learning_rate=1e-3, cyclic_max_lr=6e-3),
                            steps=10)
    schedule = cyclic.learning_rate if isinstance(cyclic.learning_rate, CyclicLearningRate) else cyclic._learning_rate
    assert isinstance(schedule, CyclicLearningRate)
    assert float(schedule(20)) == pytest.approx(6e-3)  # default half cycle: two epochs of 10 steps


def test_history_rows_append_atomically_and_survive_a_resume(tmp_path):
    path = str(tmp_path / artifacts.HISTORY_CSV)
    history = HistoryCsv(path)
    history.on_epoch_end(0, {"loss": 1.5, "val_loss": 2.0, "accuracy": 0.5})
    HistoryCsv(path).on_epoch_end(1, {"loss": 1.0, "val_loss": 1.8, "accuracy": 0.75})  # a resumed run
    assert (tmp_path / artifacts.HISTORY_CSV).read_text().splitlines() == [
        "epoch,accuracy,loss,val_loss", "0,0.5,1.5,2.0", "1,0.75,1.0,1.8"]
    assert [r["loss"] for r in artifacts.read_history(str(tmp_path))] == ["1.5", "1.0"]
    assert os.listdir(tmp_path) == [artifacts.HISTORY_CSV]


def test_best_checkpoint_keeps_the_lowest_val_loss_also_across_a_resume(tmp_path):
    path = str(tmp_path / "best.keras")
    model = tiny_model()
    best = BestCheckpoint(path, best=1.0)  # a resumed run whose history already reached 1.0
    best.set_model(model)
    best.on_epoch_end(0, {"val_loss": 1.2})
    assert not os.path.exists(path)
    best.on_epoch_end(1, {"val_loss": 0.9})
    saved = os.path.getmtime(path)
    best.on_epoch_end(2, {"val_loss": 0.95})
    assert os.path.getmtime(path) == saved and best.best == 0.9
    assert sorted(os.listdir(tmp_path)) == ["best.keras"]


def test_backup_restores_weights_optimizer_and_dropout_state(tmp_path):
    directory = str(tmp_path / "backup")
    model = tiny_model()
    fit_one_step(model)
    backup = Backup(directory)
    backup.set_model(model)
    backup.on_epoch_end(0)
    fit_one_step(model)
    backup.on_epoch_end(1)
    assert sorted(os.listdir(directory)) == ["epoch-00002.keras", "latest.json"]  # older backups deleted
    assert json.loads((tmp_path / "backup" / "latest.json").read_text())["completed_epochs"] == 2
    epochs, restored = Backup.restore(directory)
    assert epochs == 2
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(rng_state_variables(model), rng_state_variables(restored)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(restored.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) > 0
    assert Backup.restore(str(tmp_path / "none")) == (0, None)


def test_test_accuracy_comes_from_the_split_named_test():
    """test_accuracy is the split named test, not the second of --eval_splits=valid,holdout,test."""
    def evaluation(accuracy):
        return {"accuracy": accuracy, "loss": 1.0, "examples": 4, "per_class_accuracy": {}, "confusion_matrix": []}

    record = artifacts.metrics_record(
        config=TrainConfig(data_dir="x"), final={"holdout": evaluation(0.25), "test": evaluation(0.75)},
        class_names=("a", "b"), val_loss=1.0, val_accuracy=0.5, epochs_run=1, model=tiny_model(), precision={},
        splits_read=[], data_fingerprint="f")
    assert record["test_accuracy"] == 0.75 and record["final_evaluation"]["holdout"]["accuracy"] == 0.25


def test_an_experiment_checks_every_run_before_training_any():
    """An unknown --vary flag is found before any run trains, not after the first one."""
    from training.experiment import check_runs

    check_runs(["--data_dir=d", "--model=lstm"], [("sampling", ["epoch", "replacement"])])
    with pytest.raises(ValueError, match="'sampeling' is not a flag of training.main"):
        check_runs(["--data_dir=d"], [("sampeling", ["epoch"])])
    with pytest.raises(ValueError, match="configuration learning_rate=-1: --learning_rate=-1.0: expected"):
        check_runs(["--data_dir=d"], [("learning_rate", ["0.01", "-1"])])
    with pytest.raises(ValueError, match="configuration batch_size=abc: .*batch_size"):
        check_runs(["--data_dir=d"], [("batch_size", ["abc"])])
