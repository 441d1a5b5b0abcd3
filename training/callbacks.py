"""The Keras callbacks of a training run: what it records each epoch (history.csv, best.keras, the crash-safe
backup a rerun resumes from) and what stops it (a non-finite loss), plus `run_callbacks`, the list a run uses.
The monitors that judge a run from the outside (collapse, difficulty) are in `training.monitors`.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from dataformat import files
from dataformat.files import TMP_MARKER, atomic_path, write_atomically
from training import artifacts
from training.monitors import CollapseDetector, DifficultyRecorder
from training.workdir import BACKUP, WorkdirError

BEST = "best.keras"


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model with the lowest val_loss to `path`, atomically (a kill mid-write never leaves a corrupt
    best.keras), starting from the best val_loss already in the history of a resumed run (Keras'
    ModelCheckpoint forgets it and would overwrite a better model with the first epoch after a resume)."""

    def __init__(self, path: str, best: float = float("inf")):
        super().__init__()
        self.path = path
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_loss")
        if value is None or not value < self.best:
            return
        self.best = value
        with atomic_path(self.path, suffix=".keras") as tmp:
            self.model.save(tmp)


class HistoryCsv(keras.callbacks.Callback):
    """history.csv, one row per epoch (epoch, then the logged metrics in name order, as Keras' CSVLogger writes
    it), rewritten atomically after every epoch through the project's file layer. Keras' CSVLogger appends in
    place (a kill mid-write leaves a half row) and fails on gs:// paths (it asks tf.io.gfile.GFile for `closed`)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        lines = files.read_text(self.path).splitlines() if tf.io.gfile.exists(self.path) else []
        header = lines[0].split(",") if lines else ["epoch"] + sorted(logs)
        row = [str(epoch)] + [str(logs.get(k, "NA")) for k in header[1:]]
        write_atomically(self.path, "\n".join((lines or [",".join(header)]) + [",".join(row)]) + "\n")


class LearningRateLog(keras.callbacks.Callback):
    """Adds the learning rate to each epoch's logs (so history.csv has it): `learning_rate`, the rate of the
    epoch's last step, and `learning_rate_min` / `learning_rate_max` over its steps (a cyclic schedule moves
    within an epoch; a constant one gives three equal columns). Must come before `HistoryCsv` in the list."""

    def __init__(self):
        super().__init__()
        self._rates: list[float] = []

    def _current(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        self._rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self._rates.append(self._current())  # the rate this step is taken with

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        rates = self._rates or [self._current()]
        logs.update(learning_rate=rates[-1], learning_rate_min=min(rates), learning_rate_max=max(rates))


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops at the first batch whose loss is NaN or infinite and remembers where.

    Under --mixed_precision=float16 Keras' LossScaleOptimizer has already skipped steps whose *gradients*
    overflowed and lowered the loss scale; a non-finite *loss* means the forward pass itself diverged.
    """

    def __init__(self):
        super().__init__()
        self.where = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.where = (self._epoch + 1, batch + 1, float(loss))
            self.model.stop_training = True


def rng_state_variables(model: keras.Model) -> list:
    """The state variables of the model's random seed generators (dropout, ...), in a stable order.

    Keras 3 saves weights and optimizer state in .keras files but not these, so a model restored from a backup
    would draw other dropout masks than the uninterrupted run did; Backup saves and restores them itself.
    """
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class Backup(keras.callbacks.Callback):
    """Crash-safe backup for resuming: after every epoch the whole model (weights and optimizer state) is saved
    as backup/epoch-NNNNN.keras through a temporary name, then backup/latest.json is atomically pointed at it,
    then older backups are deleted. A kill at any moment leaves latest.json naming a complete file. (Keras'
    BackupAndRestore writes its weights file in place: a kill mid-write left a backup that could not be loaded.)
    """

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def on_epoch_end(self, epoch, logs=None):
        tf.io.gfile.makedirs(self.directory)
        name = f"epoch-{epoch + 1:05d}.keras"
        with atomic_path(os.path.join(self.directory, name), suffix=".keras") as tmp:
            self.model.save(tmp)
        rng = [np.asarray(v.numpy()).tolist() for v in rng_state_variables(self.model)]
        write_atomically(os.path.join(self.directory, "latest.json"),
                         json.dumps({"completed_epochs": epoch + 1, "model": name, "rng_states": rng}) + "\n")
        for old in tf.io.gfile.listdir(self.directory):
            if old.startswith("epoch-") and old != name and TMP_MARKER not in old:
                tf.io.gfile.remove(os.path.join(self.directory, old))

    @staticmethod
    def restore(directory: str):
        """(completed epochs, the compiled model to continue) of an interrupted run, or (0, None)."""
        latest = os.path.join(directory, "latest.json")
        if not tf.io.gfile.exists(latest):
            return 0, None
        with tf.io.gfile.GFile(latest) as f:
            record = json.load(f)
        model = keras.models.load_model(os.path.join(directory, record["model"]), safe_mode=True)
        states = record.get("rng_states", [])
        variables = rng_state_variables(model)
        if len(states) != len(variables):
            raise WorkdirError(f"{latest}: {len(states)} saved random generator states for a model with "
                             f"{len(variables)}; the backup does not belong to this model (delete {directory})")
        for variable, state in zip(variables, states):
            variable.assign(np.asarray(state, dtype=variable.dtype))
        return int(record["completed_epochs"]), model


def run_callbacks(config, workdir: str, valid_ds: tf.data.Dataset, difficulty_inputs: Optional[dict]):
    """The callbacks of a run of `config` (a `training.config.TrainConfig`): (callbacks for fit, the non-finite-loss
    stopper, the collapse detector, the difficulty recorder or None).

    Order matters for a kill between two callbacks: the history row and the best checkpoint are written before
    the backup marks the epoch done, so a resumed run redoes (never skips) a half-recorded epoch. Everything
    here writes through a temporary name and a rename.
    """
    best_so_far = min((float(r["val_loss"]) for r in artifacts.read_history(workdir) if r.get("val_loss")),
                      default=float("inf"))
    non_finite = StopOnNonFiniteLoss()
    collapse = CollapseDetector(valid_ds.map(lambda x, y: x), patience=config.collapse_patience)
    callbacks = [
        LearningRateLog(),  # before HistoryCsv: it adds the rate to the logs HistoryCsv writes
        HistoryCsv(os.path.join(workdir, artifacts.HISTORY_CSV)),
        BestCheckpoint(os.path.join(workdir, BEST), best=best_so_far),
        Backup(os.path.join(workdir, BACKUP)),
        keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard"), profile_batch=0),
        non_finite,
        collapse,
    ]
    if config.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau("val_loss", factor=config.plateau_factor,
                                                           patience=config.plateau_patience))
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping("val_loss", patience=config.early_stopping_patience))
    difficulty = DifficultyRecorder(difficulty_inputs) if difficulty_inputs is not None else None
    if difficulty is not None:
        callbacks.append(difficulty)
    return callbacks, non_finite, collapse, difficulty
