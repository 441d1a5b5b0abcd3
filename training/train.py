"""Training as a library: `train_and_evaluate(TrainConfig(...), workdir)` returns the metrics it writes.

Model selection (best checkpoint, early stopping, plateau) sees the valid split only; the test split is opened
once, after training, for the final evaluation, and `metrics.json` records the order in which splits were read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

import settings
from dataformat import files, integrity, schema
from dataformat.files import TMP_MARKER, atomic_path, write_atomically
from settings import check_choices, require, setting
from training import artifacts, distribute
from training.input_pipeline import ExtractedData, InputConfig, make_dataset, open_data
from training.models import ModelConfig, build_cnn, build_lstm
from training.monitors import CollapseDetector, DifficultyRecorder, class_probabilities
from training.workdir import BACKUP, open_workdir, run_identity
from training.schedules import MODES, CyclicLearningRate

MODELS = ("lstm", "cnn")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cyclic", "plateau")
PRECISIONS = ("auto", "off", "float16", "bfloat16")
BEST = "best.keras"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on; each setting is a flag of `training.main` (see `settings`)."""

    data_dir: str = setting(help="Output folder of pipeline.extract (holds frames/ and sequences/).")
    model: str = setting("lstm", "lstm reads sequences/, cnn reads frames/.", choices=MODELS)
    epochs: int = setting(20, "Epochs (each is one pass, or N draws, over the train split).")
    seed: int = setting(0, "Seed of initialisation, order, draws, dropout and augmentation.")
    train_split: str = setting("train", "The split to train on (the names are the extraction's --splits).")
    eval_splits: tuple[str, ...] = setting(
        ("valid", "test"), "The first selects the model (best checkpoint, early stopping, plateau, collapse "
        "detection); the others are read once, after training, for the final evaluation (the first of them gives "
        "test_accuracy). Checked before any work; data without a 'test' split skips it with a log line.")
    input: InputConfig = InputConfig()
    arch: ModelConfig = ModelConfig()
    mixed_precision: str = setting("auto", "Compute dtype policy: auto picks float16/bfloat16 on GPUs with tensor "
                                   "cores and float32 otherwise, and logs why.", choices=PRECISIONS)
    optimizer: str = setting("adam", "Optimizer.", choices=OPTIMIZERS)
    learning_rate: float = setting(1e-3, "Learning rate (the base of the cyclic schedule).")
    momentum: float = setting(0.0, "SGD momentum.")
    lr_schedule: str = setting("constant", "cyclic: triangular cyclical learning rate (Smith 2017, the --cyclic_* "
                               "settings); plateau: ReduceLROnPlateau on the model-selection split's loss.",
                               choices=LR_SCHEDULES)
    cyclic_max_lr: float = setting(6e-3, "Peak learning rate of the cyclic schedule.")
    cyclic_step_size: int = setting(0, "Steps per half cycle; 0: two epochs' worth (Smith suggests 2-10 epochs).")
    cyclic_mode: str = setting("triangular", "Cyclic schedule shape.", choices=MODES)
    cyclic_gamma: float = setting(1.0, "Decay per step for --cyclic_mode=exp_range.")
    plateau_factor: float = setting(0.2, "Factor of ReduceLROnPlateau.")
    plateau_patience: int = setting(5, "Patience of ReduceLROnPlateau, in epochs.")
    early_stopping_patience: int = setting(0, "Stop after this many epochs without a better validation loss "
                                           "(0: off).")
    collapse_patience: int = setting(3, "Flag the run as collapsed after this many consecutive epochs in which at "
                                     "least 95% of validation predictions are one class (or outputs barely vary).")
    track_difficulty: bool = setting(False, "Record every train/valid example's confidence in its true label each "
                                     "epoch (difficulty_records.csv, for training.difficulty; costs one forward "
                                     "pass over train per epoch).")
    distribution: str = setting(
        "none", "tf.distribute strategy. none: one device. mirrored: every GPU of this machine (or --cpu_devices "
        "logical CPUs). multi_worker: several hosts, each process configured by TF_CONFIG "
        "(scripts/launch_multi_worker.py starts local ones). tpu: TPUStrategy at --tpu. --batch_size stays the "
        "global batch: each of R replicas gets batch_size / R.", choices=distribute.DISTRIBUTIONS)
    tpu: str = setting("", "TPU address for --distribution=tpu (empty: the local TPU VM).")
    cpu_devices: int = setting(1, "Split the CPU into this many logical devices, to run --distribution=mirrored "
                               "without GPUs (e.g. in tests).")

    def validate(self) -> None:
        """Checks every setting before the strategy is built and the data read (the nested configs check theirs
        when they are made); each error names the flag and the values it takes."""
        check_choices(self)
        require(self.epochs >= 1, "epochs", self.epochs, "at least 1")
        for name in ("learning_rate", "cyclic_max_lr"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, value, "a positive number")
        if self.lr_schedule == "cyclic":
            require(self.cyclic_max_lr >= self.learning_rate, "cyclic_max_lr", self.cyclic_max_lr,
                    f"at least --learning_rate ({self.learning_rate}), the bottom of the cycle")
        require(0 <= self.momentum < 1, "momentum", self.momentum, "a fraction in [0, 1)")
        require(self.cyclic_step_size >= 0, "cyclic_step_size", self.cyclic_step_size, ">= 0 (0: two epochs)")
        require(0 < self.cyclic_gamma <= 1, "cyclic_gamma", self.cyclic_gamma, "a number in (0, 1]")
        require(0 < self.plateau_factor < 1, "plateau_factor", self.plateau_factor, "a fraction in (0, 1)")
        for name in ("plateau_patience", "early_stopping_patience"):
            require(getattr(self, name) >= 0, name, getattr(self, name), ">= 0 epochs")
        require(self.collapse_patience >= 1, "collapse_patience", self.collapse_patience, "at least 1 epoch")
        require(self.cpu_devices >= 1, "cpu_devices", self.cpu_devices, "at least 1")

    @property
    def kind(self) -> str:
        """The dataset the model reads: sequences/ for the LSTM, frames/ for the CNN."""
        return schema.SEQUENCES if self.model == "lstm" else schema.FRAMES


def plan_splits(config: TrainConfig) -> tuple[str, str, tuple[str, ...]]:
    """(train split, model-selection split, final-evaluation splits) of this run, checked against the data before
    any work: a split the run names but the data lacks is an error listing the data's splits, except the default
    final split `test`, which is skipped with a log line (extractions may be split e.g. train=0.8,valid=0.2)."""
    directory = f"{config.data_dir.rstrip('/')}/{config.kind}"
    try:
        available = sorted(schema.read_splits(config.data_dir, config.kind))
    except ValueError as e:
        raise TrainingError(str(e)) from None
    if not config.eval_splits:
        raise TrainingError("--eval_splits is empty: name at least the split that selects the model (e.g. valid)")
    train, selection, finals = config.train_split, config.eval_splits[0], tuple(config.eval_splits[1:])
    if selection == "test" and finals:
        raise TrainingError(f"--eval_splits={','.join(config.eval_splits)}: the first split selects the model (best "
                            "checkpoint, early stopping), which makes its accuracy optimistic; name the selection "
                            "split first and test after it, e.g. --eval_splits=valid,test")
    for split in (train, selection) + finals:
        if split not in available and split != "test":
            raise TrainingError(f"{directory} has no split {split!r} (it has {', '.join(available)}): set "
                                "--train_split and --eval_splits to the names its extraction used")
    if len({train, selection} | set(finals)) != 2 + len(finals):
        raise TrainingError(f"--train_split={train} and --eval_splits={','.join(config.eval_splits)} name a "
                            "split twice: training, model selection and the final evaluation need separate splits")
    for split in (train, selection):
        if split not in available:
            raise TrainingError(f"{directory} has no split {split!r} (it has {', '.join(available)})")
    if "test" in finals and "test" not in available:
        logging.warning("[train] %s has no split 'test' (it has %s): the final evaluation is skipped; the run "
                        "reports the model-selection split %r only", directory, ", ".join(available), selection)
        finals = tuple(s for s in finals if s != "test")
    return train, selection, finals


def choose_precision(requested: str) -> tuple[str, str]:
    """The Keras dtype policy for `--mixed_precision` and a sentence saying why."""
    if requested == "off":
        return "float32", "mixed precision off (--mixed_precision=off)"
    if requested == "float16":
        return "mixed_float16", "float16 compute with dynamic loss scaling (--mixed_precision=float16)"
    if requested == "bfloat16":
        return "mixed_bfloat16", "bfloat16 compute (--mixed_precision=bfloat16)"
    if requested != "auto":
        raise ValueError(f"--mixed_precision={requested!r}: expected auto, off, float16 or bfloat16")
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "float32", "auto: no GPU, and float16/bfloat16 compute is slower than float32 on CPUs"
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
    if capability >= (8, 0):
        return "mixed_bfloat16", f"auto: GPU compute capability {capability} has bfloat16 tensor cores (no loss scaling needed)"
    if capability >= (7, 0):
        return "mixed_float16", f"auto: GPU compute capability {capability} has float16 tensor cores"
    return "float32", f"auto: GPU compute capability {capability} has no tensor cores"


def feature_statistics(data: ExtractedData, config: InputConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and variance of the frame features of `split` (the train split), ignoring padding."""
    stats_config = dataclasses.replace(config, shuffle=False, sampling="epoch", balance="none", cache="",
                                       with_metadata=False, batch_size=64, data_service="", inputs_dtype="float32")
    total = total_sq = None
    count = 0
    for inputs, _ in make_dataset(data, split, stats_config).as_numpy_iterator():
        rows = inputs.reshape(-1, inputs.shape[-1]).astype(np.float64)
        rows = rows[np.any(rows != 0, axis=1)]
        total = rows.sum(0) if total is None else total + rows.sum(0)
        total_sq = (rows**2).sum(0) if total_sq is None else total_sq + (rows**2).sum(0)
        count += len(rows)
    mean = total / count
    variance = np.maximum(total_sq / count - mean**2, 1e-12 * np.maximum(mean**2, 1e-30))
    return mean.astype(np.float32), variance.astype(np.float32)


def make_optimizer(config: TrainConfig, steps: int) -> keras.optimizers.Optimizer:
    """The optimizer and learning rate (schedule) of `config`; `steps` per epoch size the default cycle."""
    # float(): a library caller's TrainConfig(learning_rate=100) is an int, which Keras refuses.
    if config.lr_schedule == "cyclic":
        step_size = config.cyclic_step_size or 2 * steps
        lr = CyclicLearningRate(float(config.learning_rate), float(config.cyclic_max_lr), step_size,
                                config.cyclic_mode, float(config.cyclic_gamma))
    elif config.lr_schedule in ("constant", "plateau"):
        lr = float(config.learning_rate)
    else:
        raise ValueError(f"--lr_schedule={config.lr_schedule!r}: expected one of {', '.join(LR_SCHEDULES)}")
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=float(config.momentum))
    raise ValueError(f"--optimizer={config.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")


def _for_keras(ds: tf.data.Dataset, num_classes: int) -> tf.data.Dataset:
    if num_classes == 2:  # sigmoid output [B, 1] wants float labels of the same shape
        return ds.map(lambda x, y: (x, tf.cast(y, tf.float32)[:, None]))
    return ds


def _inputs_and_ids(data: ExtractedData, split: str, eval_config: InputConfig):
    """A split's inputs in a fixed order, and the ids and labels of its examples in that order."""
    with_ids = dataclasses.replace(eval_config, with_metadata=True)
    ids = {schema.VIDEO_ID: [], schema.FRAME_INDEX: [], schema.LABEL: []}
    for batch in make_dataset(data, split, with_ids).as_numpy_iterator():
        ids[schema.VIDEO_ID] += [v.decode() for v in batch[schema.VIDEO_ID]]
        ids[schema.FRAME_INDEX] += list(batch.get(schema.FRAME_INDEX, np.full(len(batch[schema.LABEL]), -1)))
        ids[schema.LABEL] += list(batch[schema.LABEL])
    ids[schema.LABEL] = np.array(ids[schema.LABEL])
    return make_dataset(data, split, eval_config).map(lambda x, y: x), ids


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


class TrainingError(ValueError):
    """Training cannot go on; the message says why and what to try."""


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
            raise ValueError(f"{latest}: {len(states)} saved random generator states for a model with "
                             f"{len(variables)}; the backup does not belong to this model (delete {directory})")
        for variable, state in zip(variables, states):
            variable.assign(np.asarray(state, dtype=variable.dtype))
        return int(record["completed_epochs"]), model


def train_and_evaluate(config: TrainConfig, workdir: str, flags: Optional[dict] = None) -> dict:
    """Trains `config.model` on the train split, selects on valid, evaluates once on test (see `_train`).

    A damaged shard met while reading (a record failing its checksum) becomes an error naming the file and
    the record, found by checking every shard of the three splits.
    """
    try:
        return _train(config, workdir, flags)
    except tf.errors.InvalidArgumentError as e:
        if "assertion failed: [" not in e.message:
            raise
        # The reader's checks (input_pipeline._parser): a message naming the examples, not a traceback.
        raise integrity.CorruptDataError(e.message.split("assertion failed: [", 1)[1].split("\n")[0]) from None
    except tf.errors.DataLossError as e:
        kind = config.kind
        train, selection, finals = plan_splits(config)
        found = [integrity.describe_damage(schema.split_info(config.data_dir, kind, s), f"{config.data_dir}/{kind} {s}")
                 for s in (train, selection, *finals)]
        found = [f for f in found if f]
        raise integrity.CorruptDataError(
            "; ".join(found) if found else f"reading {config.data_dir}/{kind} failed: {e.message}") from None


def _set_up_process(config: TrainConfig) -> tuple[str, str]:
    """Seeds, op determinism and the dtype policy, all process-wide; returns the policy and why it was chosen."""
    keras.utils.set_random_seed(config.seed)
    if config.input.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy, why = choose_precision(config.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    logging.info("[train] precision: %s (%s)", policy, why)
    return policy, why


def _new_model(config: TrainConfig, data: ExtractedData, input_config: InputConfig, train_split: str,
               steps: int) -> keras.Model:
    """A compiled model for a fresh run; the LSTM reads the train split once for its standardisation."""
    num_classes = len(data.spec.class_names)
    if config.model == "lstm":
        mean, variance = feature_statistics(data, input_config, train_split)
        model = build_lstm(num_classes, data.seq_len, data.spec.feature_dim, mean, variance, config.arch,
                           input_dtype=data.spec.feature_dtype, quantization=data.spec.quantization)
    else:
        model = build_cnn(num_classes, input_config.image_size, config.arch, input_dtype="uint8")
    loss = "binary_crossentropy" if num_classes == 2 else "sparse_categorical_crossentropy"
    model.compile(optimizer=make_optimizer(config, steps), loss=loss, metrics=["accuracy"])
    return model


def _callbacks(config: TrainConfig, workdir: str, valid_ds: tf.data.Dataset, difficulty_inputs: Optional[dict]):
    """(callbacks for fit, the non-finite-loss stopper, the collapse detector, the difficulty recorder or None).

    Order matters for a kill between two callbacks: the history row and the best checkpoint are written before
    the backup marks the epoch done, so a resumed run redoes (never skips) a half-recorded epoch. Everything
    here writes through a temporary name and a rename.
    """
    best_so_far = min((float(r["val_loss"]) for r in artifacts.read_history(workdir) if r.get("val_loss")),
                      default=float("inf"))
    non_finite = StopOnNonFiniteLoss()
    collapse = CollapseDetector(valid_ds.map(lambda x, y: x), patience=config.collapse_patience)
    callbacks = [
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


def _diverged(where, config: TrainConfig, policy: str, workdir: str) -> TrainingError:
    epoch, batch, value = where
    scaling = " Loss scaling was on (float16) and did not prevent it." if policy == "mixed_float16" else ""
    return TrainingError(
        f"the training loss became {value} at epoch {epoch}, batch {batch}; training stopped.{scaling} Try a "
        f"lower --learning_rate (now {config.learning_rate}), check the inputs for extreme values "
        f"(python -m training.inspect_order), or --mixed_precision=off. {workdir}/backup holds the last good epoch; "
        "delete the workdir to start over with other flags.")


def _evaluate(model: keras.Model, data: ExtractedData, valid_ds: tf.data.Dataset, selection_split: str,
              final_splits: tuple[str, ...], eval_config: InputConfig, collapse: CollapseDetector,
              splits_read: list) -> tuple[float, float, dict]:
    """(val_loss, val_accuracy, {final split: evaluation}) of the selected model; the final splits are read
    here for the first and only time."""
    val_loss, val_accuracy = model.evaluate(valid_ds, verbose=0)
    collapse.check_final(class_probabilities(model.predict(valid_ds.map(lambda x, y: x), verbose=0)),
                         split=selection_split)
    final = {}
    for split in final_splits:
        splits_read.append({"split": split, "phase": "final evaluation"})
        final_ds = make_dataset(data, split, eval_config)
        labels = np.concatenate([y for _, y in final_ds.as_numpy_iterator()])
        probabilities = model.predict(final_ds.map(lambda x, y: x), verbose=0)
        collapse.check_final(class_probabilities(probabilities), split=split)
        final[split] = artifacts.evaluation(labels, probabilities, data.spec.class_names)
    return val_loss, val_accuracy, final


def _train(config: TrainConfig, workdir: str, flags: Optional[dict] = None) -> dict:
    """Trains `config.model` on the train split, selects on the first eval split, evaluates once on the others.

    Rerunning with the same workdir after a kill resumes from the last completed epoch. Under
    --distribution=multi_worker every worker process calls this; the chief writes WORKDIR, the others
    WORKDIR/workers/worker-N.

    Returns:
      The metrics also written to WORKDIR/metrics.json.
    """
    config.validate()
    train_split, selection_split, final_splits = plan_splits(config)  # before any heavy work
    distribute.split_cpu(config.cpu_devices)  # before anything initialises TensorFlow's devices
    strategy = distribute.make_strategy(config.distribution, config.tpu)
    this = distribute.role(strategy)
    per_replica = distribute.check_batch_size(config.input.batch_size, this)
    workdir = distribute.worker_workdir(workdir, this)
    input_config = dataclasses.replace(config.input, kind=config.kind, seed=config.seed, inputs_dtype="storage")
    # Every split the run reads, opened once: checked (or repaired), sized, fingerprinted, and the sequence length
    # fixed by the train split (the model is built for one length; the other splits are padded or cut to it).
    data = open_data(config.data_dir, config.kind, [train_split, selection_split, *final_splits],
                     seq_len=input_config.seq_len, skip_corrupt=input_config.skip_corrupt,
                     repair_dir=input_config.repair_dir or os.path.join(workdir, "repaired"))
    # A rerun resumes (or returns the finished metrics) only with the data and settings the run started with.
    finished = open_workdir(workdir, run_identity(settings.flag_values(config), data.fingerprint))
    if finished is not None:
        return finished
    policy, why = _set_up_process(config)
    num_classes = len(data.spec.class_names)
    per_worker_input = config.distribution in distribute.PER_WORKER_INPUT
    context = tf.distribute.InputContext(this.workers, this.worker, this.replicas) if per_worker_input else None
    steps = data.steps_per_epoch(train_split, input_config, context)

    # A resumed run continues the backed-up model (weights, optimizer state, step count); only a fresh run builds
    # one. Variables (restored or new) are created in the strategy's scope, so they are mirrored across replicas.
    with strategy.scope():
        start_epoch, model = Backup.restore(os.path.join(workdir, BACKUP))
        if model is None:
            model = _new_model(config, data, input_config, train_split, steps)
    if start_epoch:
        logging.warning("[train] resuming %s at epoch %d (%d completed)", workdir, start_epoch + 1, start_epoch)
    # Keep only the history of epochs the backup holds: none for a fresh start; on resume, not the row of an
    # epoch that was logged but killed before its backup (it is trained again).
    artifacts.truncate_history(workdir, start_epoch)

    def train_input(input_context=None):
        return _for_keras(make_dataset(data, train_split, input_config, start_epoch=start_epoch,
                                       num_epochs=max(1, config.epochs - start_epoch),
                                       input_context=input_context), num_classes)

    # One global dataset that Keras splits across this machine's replicas, or (multi-worker, TPU) one input
    # pipeline per worker, each reading its own share of the split (input_pipeline.share_of).
    train_ds = strategy.distribute_datasets_from_function(train_input) if per_worker_input else train_input()
    eval_config = dataclasses.replace(input_config, shuffle=False, sampling="epoch", balance="none",
                                      augment=(), cache="memory", data_service="")
    valid_ds = _for_keras(make_dataset(data, selection_split, eval_config), num_classes)
    difficulty_inputs = ({s: _inputs_and_ids(data, s, eval_config) for s in (train_split, selection_split)}
                         if config.track_difficulty else None)
    callbacks, non_finite, collapse, difficulty = _callbacks(config, workdir, valid_ds, difficulty_inputs)
    model.fit(train_ds, epochs=config.epochs, initial_epoch=start_epoch, steps_per_epoch=steps,
              validation_data=valid_ds, callbacks=callbacks, verbose=2)
    if non_finite.where:
        raise _diverged(non_finite.where, config, policy, workdir)

    best_path = os.path.join(workdir, BEST)
    if tf.io.gfile.exists(best_path):
        model = keras.models.load_model(best_path, safe_mode=True)
    splits_read = [{"split": train_split, "phase": "fit"}, {"split": selection_split, "phase": "model selection"}]
    val_loss, val_accuracy, final = _evaluate(model, data, valid_ds, selection_split, final_splits, eval_config,
                                              collapse, splits_read)
    metrics = artifacts.metrics_record(
        config=config, flags=flags, final=final, class_names=data.spec.class_names, val_loss=val_loss,
        val_accuracy=val_accuracy, epochs_run=len(artifacts.read_history(workdir)),
        model=model, precision={"policy": policy, "reason": why}, splits_read=splits_read,
        data_fingerprint=data.fingerprint,
    )
    if input_config.skip_corrupt:
        metrics["corrupt_records_skipped"] = dict(data.skipped)
    metrics["distribution"] = {"strategy": config.distribution, "replicas": this.replicas,
                               "workers": this.workers, "worker": this.worker, "chief": this.chief,
                               "global_batch_size": config.input.batch_size, "per_replica_batch_size": per_replica,
                               "steps_per_epoch": steps}
    metrics.update(collapsed=collapse.collapsed, collapse_epoch=collapse.collapse_epoch,
                   recovered_collapses=collapse.recovered_collapses,
                   final_model_collapsed=collapse.final_model_collapsed, collapse_history=collapse.history)
    if difficulty is not None:
        artifacts.write_difficulty_records(workdir, difficulty.records)
    artifacts.write_metrics(workdir, metrics)
    # Only now is the run finished: a kill before this point resumes from the backup.
    tf.io.gfile.rmtree(os.path.join(workdir, BACKUP))
    artifacts.plot_history(workdir)
    return metrics
