"""Training as a library: `train_and_evaluate(TrainConfig(...), workdir)` returns the metrics it writes.

A run reads its data once: `plan_run` checks the splits it names against the dataset's metadata before any work,
`open_run_data` opens them (checked or repaired, fingerprinted), and the run's input is built by
`run_input_config` with the readers of `training.input_pipeline`; `training.inspect_order` builds the same.
Model selection (best checkpoint, early stopping, plateau) sees the valid split only; the test split is opened
once, after training, for the final evaluation, and `metrics.json` records the order in which splits were read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

import settings
from dataformat import integrity, schema
from settings.hardware import gpu_half_precision
from training import artifacts, distribute
from training.callbacks import BEST, Backup, run_callbacks
from training.config import LR_SCHEDULES, OPTIMIZERS, TrainConfig
from training.data import ExtractedData, open_data
from training.input_pipeline import (InputConfig, feature_statistics, make_eval_dataset, make_train_dataset,
                                     read_with_ids)
from training.models import build_cnn, build_lstm
from training.monitors import CollapseDetector, class_probabilities
from training.schedules import CyclicLearningRate
from training.workdir import BACKUP, open_workdir, run_identity


class TrainingError(ValueError):
    """Training cannot go on; the message says why and what to try."""


class RunPlan(NamedTuple):
    """The splits a run reads (checked against the data by `plan_run`) and every split's metadata, read once."""

    train: str
    selection: str
    finals: tuple[str, ...]
    available: dict  # split name -> SplitInfo, for every split of the dataset

    @property
    def splits(self) -> tuple[str, ...]:
        return (self.train, self.selection, *self.finals)


def plan_run(config: TrainConfig) -> RunPlan:
    """The run's splits, checked against the dataset's metadata before any work: a split the run names but the
    data lacks is an error listing the data's splits, except the default final split `test`, which is skipped
    with a log line (extractions may be split e.g. train=0.8,valid=0.2)."""
    directory = f"{config.data_dir.rstrip('/')}/{config.kind}"
    available = schema.read_splits(config.data_dir, config.kind)
    names = ", ".join(sorted(available))
    classes = next(iter(available.values())).spec.class_names
    if len(classes) < 2:
        raise TrainingError(f"{directory} has {len(classes)} class ({', '.join(classes)}): a classifier needs at "
                            "least 2. Extract a dataset with two or more classes (class folders, or manifest labels)")
    if not config.eval_splits:
        raise TrainingError("--eval_splits is empty: name at least the split that selects the model (e.g. valid)")
    train, selection, finals = config.train_split, config.eval_splits[0], tuple(config.eval_splits[1:])
    if selection == "test" and finals:
        raise TrainingError(f"--eval_splits={','.join(config.eval_splits)}: the first split selects the model (best "
                            "checkpoint, early stopping), which makes its accuracy optimistic; name the selection "
                            "split first and test after it, e.g. --eval_splits=valid,test")
    for split in (train, selection) + finals:
        if split not in available and split != "test":
            raise TrainingError(f"{directory} has no split {split!r} (it has {names}): set --train_split and "
                                "--eval_splits to the names its extraction used")
    if len({train, selection} | set(finals)) != 2 + len(finals):
        raise TrainingError(f"--train_split={train} and --eval_splits={','.join(config.eval_splits)} name a "
                            "split twice: training, model selection and the final evaluation need separate splits")
    for split in (train, selection):
        if split not in available:
            raise TrainingError(f"{directory} has no split {split!r} (it has {names})")
    if "test" in finals and "test" not in available:
        logging.warning("[train] %s has no split 'test' (it has %s): the final evaluation is skipped; the run "
                        "reports the model-selection split %r only", directory, names, selection)
        finals = tuple(s for s in finals if s != "test")
    return RunPlan(train, selection, finals, available)


def open_run_data(config: TrainConfig, plan: RunPlan, repair_dir: str = "", also: tuple[str, ...] = ()
                  ) -> ExtractedData:
    """Every split the run reads (and `also`), opened once: checked (or repaired into `repair_dir`), sized,
    fingerprinted, and the sequence length fixed by the train split (the model is built for one length; the
    other splits are padded or cut to it)."""
    return open_data(config.data_dir, config.kind, [*plan.splits, *also], seq_len=config.input.seq_len,
                     skip_corrupt=config.input.skip_corrupt, repair_dir=config.input.repair_dir or repair_dir,
                     available=plan.available)


def run_input_config(config: TrainConfig) -> InputConfig:
    """How the run reads its training split: the --input settings, with the run's dataset kind and seed, and
    inputs in their storage dtype (the model casts them)."""
    return dataclasses.replace(config.input, kind=config.kind, seed=config.seed, inputs_dtype="storage")


def set_up_process(config: TrainConfig) -> tuple[str, str]:
    """Seeds, op determinism and the dtype policy, all process-wide; returns the policy and why it was chosen."""
    keras.utils.set_random_seed(config.seed)
    if config.input.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy, why = choose_precision(config.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    logging.info("[train] precision: %s (%s)", policy, why)
    return policy, why


def choose_precision(requested: str) -> tuple[str, str]:
    """The Keras dtype policy for `--mixed_precision` and a sentence saying why."""
    if requested == "off":
        return "float32", "mixed precision off (--mixed_precision=off)"
    if requested == "float16":
        return "mixed_float16", "float16 compute with dynamic loss scaling (--mixed_precision=float16)"
    if requested == "bfloat16":
        return "mixed_bfloat16", "bfloat16 compute (--mixed_precision=bfloat16)"
    if requested != "auto":
        raise settings.SettingError(f"--mixed_precision={requested!r}: expected auto, off, float16 or bfloat16")
    gpu, why = gpu_half_precision()
    if gpu is None:
        return "float32", ("auto: no GPU; bfloat16 training measured no faster than float32 on a CPU with AVX512_BF16 "
                           "(BUILD_NOTES.md, 'Extraction precision')")
    policy = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16", "float32": "float32"}[gpu]
    return policy, f"auto: {why}" + (" (no loss scaling needed)" if gpu == "bfloat16" else "")


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
        raise settings.SettingError(
            f"--lr_schedule={config.lr_schedule!r}: expected one of {', '.join(LR_SCHEDULES)}")
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=float(config.momentum))
    raise settings.SettingError(f"--optimizer={config.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")


def _for_keras(ds: tf.data.Dataset, num_classes: int) -> tf.data.Dataset:
    if num_classes == 2:  # sigmoid output [B, 1] wants float labels of the same shape
        return ds.map(lambda x, y: (x, tf.cast(y, tf.float32)[:, None]))
    return ds


def _diverged(where, config: TrainConfig, policy: str, workdir: str) -> TrainingError:
    epoch, batch, value = where
    scaling = " Loss scaling was on (float16) and did not prevent it." if policy == "mixed_float16" else ""
    return TrainingError(
        f"the training loss became {value} at epoch {epoch}, batch {batch}; training stopped.{scaling} Try a "
        f"lower --learning_rate (now {config.learning_rate}), check the inputs for extreme values "
        f"(python -m training.inspect_order), or --mixed_precision=off. {workdir}/backup holds the last good epoch; "
        "delete the workdir to start over with other flags.")


def train_and_evaluate(config: TrainConfig, workdir: str) -> dict:
    """Trains `config.model` on the train split, selects on valid, evaluates once on test (see `_train`).

    Raises:
      settings.SettingError, TrainingError, training.workdir.WorkdirError: a setting, split or workdir that
        cannot work (before any training), or a diverged run.
      dataformat.schema.DataError (integrity.CorruptDataError): data that cannot be read; a damaged shard met
        while reading (a record failing its checksum, NaN features) is named with the file and record or video.
    """
    try:
        return _train(config, workdir)
    except tf.errors.InvalidArgumentError as e:
        if "assertion failed: [" not in e.message:
            raise
        # The reader's checks (preprocess.make_batch_parser): a message naming the examples, not a traceback.
        raise integrity.CorruptDataError(e.message.split("assertion failed: [", 1)[1].split("\n")[0]) from None
    except tf.errors.DataLossError as e:
        kind = config.kind
        plan = plan_run(config)
        found = [integrity.describe_damage(plan.available[s], f"{config.data_dir}/{kind} {s}") for s in plan.splits]
        found = [f for f in found if f]
        raise integrity.CorruptDataError(
            "; ".join(found) if found else f"reading {config.data_dir}/{kind} failed: {e.message}") from None


def _train(config: TrainConfig, workdir: str) -> dict:
    """Trains `config.model` on the train split, selects on the first eval split, evaluates once on the others.

    Rerunning with the same workdir resumes from the last completed epoch, if the data and settings are the
    run's (`training.workdir`). Under --distribution=multi_worker every worker process calls this; the chief
    writes WORKDIR, the others WORKDIR/workers/worker-N.

    Returns:
      The metrics also written to WORKDIR/metrics.json.
    """
    plan = plan_run(config)  # before any heavy work (the config checked itself when it was made)
    distribute.split_cpu(config.cpu_devices)  # before anything initialises TensorFlow's devices
    strategy = distribute.make_strategy(config.distribution, config.tpu)
    this = distribute.role(strategy)
    per_replica = distribute.check_batch_size(config.input.batch_size, this)
    workdir = distribute.worker_workdir(workdir, this)
    data = open_run_data(config, plan, repair_dir=os.path.join(workdir, "repaired"))
    # A rerun resumes (or returns the finished metrics) only with the data and settings the run started with.
    finished = open_workdir(workdir, run_identity(settings.flag_values(config), data.fingerprint))
    if finished is not None:
        return finished
    precision = set_up_process(config)
    input_config = run_input_config(config)
    num_classes = len(data.spec.class_names)
    per_worker_input = config.distribution in distribute.PER_WORKER_INPUT
    context = tf.distribute.InputContext(this.workers, this.worker, this.replicas) if per_worker_input else None
    steps = data.steps_per_epoch(plan.train, input_config.batch_size, context)
    start_epoch, model = _model_to_train(config, data, input_config, plan.train, steps, strategy, workdir)

    def train_input(input_context=None):
        batches, _ = make_train_dataset(data, plan.train, input_config, start_epoch=start_epoch,
                                        num_epochs=max(1, config.epochs - start_epoch), input_context=input_context)
        return _for_keras(batches, num_classes)

    # One global dataset that Keras splits across this machine's replicas, or (multi-worker, TPU) one input
    # pipeline per worker, each reading its own share of the split (training.data.share_of).
    train_ds = strategy.distribute_datasets_from_function(train_input) if per_worker_input else train_input()
    valid_ds = _for_keras(make_eval_dataset(data, plan.selection, input_config), num_classes)
    difficulty_inputs = ({s: read_with_ids(data, s, input_config) for s in (plan.train, plan.selection)}
                         if config.track_difficulty else None)
    callbacks, non_finite, collapse, difficulty = run_callbacks(config, workdir, valid_ds, difficulty_inputs)
    model.fit(train_ds, epochs=config.epochs, initial_epoch=start_epoch, steps_per_epoch=steps,
              validation_data=valid_ds, callbacks=callbacks, verbose=2, shuffle=False)  # tf.data shuffles
    if non_finite.where:
        raise _diverged(non_finite.where, config, precision[0], workdir)
    metrics = _evaluate(config, workdir, model, data, plan, input_config, valid_ds, collapse, precision)
    metrics["distribution"] = {"strategy": config.distribution, "replicas": this.replicas,
                               "workers": this.workers, "worker": this.worker, "chief": this.chief,
                               "global_batch_size": config.input.batch_size,
                               "per_replica_batch_size": per_replica,
                               "steps_per_epoch": steps}
    if difficulty is not None:
        artifacts.write_difficulty_records(workdir, difficulty.records)
    metrics["pairing"] = artifacts.pairing_record(workdir, first_epoch_order_sha256(data, plan.train, input_config))
    artifacts.write_metrics(workdir, metrics)
    # Only now is the run finished: a kill before this point resumes from the backup.
    tf.io.gfile.rmtree(os.path.join(workdir, BACKUP))
    artifacts.plot_history(workdir)
    return metrics


def _model_to_train(config: TrainConfig, data: ExtractedData, input_config: InputConfig, train_split: str,
                    steps: int, strategy, workdir: str) -> tuple[int, keras.Model]:
    """(the epoch to start at, the model): a resumed run continues the backed-up model (weights, optimizer state,
    step count); only a fresh run builds one. Variables (restored or new) are created in the strategy's scope,
    so they are mirrored across replicas."""
    with strategy.scope():
        start_epoch, model = Backup.restore(os.path.join(workdir, BACKUP))
        if model is None:
            model = _new_model(config, data, input_config, train_split, steps)
            artifacts.record_initial_weights(workdir, model)
    if start_epoch:
        logging.warning("[train] resuming %s at epoch %d (%d completed)", workdir, start_epoch + 1, start_epoch)
    # Keep only the history of epochs the backup holds: none for a fresh start; on resume, not the row of an
    # epoch that was logged but killed before its backup (it is trained again).
    artifacts.truncate_history(workdir, start_epoch)
    return start_epoch, model


def first_epoch_order_sha256(data: ExtractedData, split: str, input_config: InputConfig) -> str:
    """SHA-256 of the (video_id, frame_index) sequence the run's first epoch fed the model, rebuilt as
    training.inspect_order rebuilds it (metadata only, no decoding; the order is a function of the settings and
    seed): two runs with equal digests read their examples in one order."""
    with_ids = dataclasses.replace(input_config, with_metadata=True, decode=False)
    batches, _ = make_train_dataset(data, split, with_ids, num_epochs=1)
    digest = hashlib.sha256()
    for batch in batches.as_numpy_iterator():
        frames = batch.get(schema.FRAME_INDEX, np.full(len(batch[schema.LABEL]), -1))
        for video, frame in zip(batch[schema.VIDEO_ID], frames):
            digest.update(b"%s#%d\n" % (video, int(frame)))
    return digest.hexdigest()


def _new_model(config: TrainConfig, data: ExtractedData, input_config: InputConfig, train_split: str,
               steps: int) -> keras.Model:
    """A compiled model for a fresh run; the LSTM reads the train split once for its standardisation."""
    num_classes = len(data.spec.class_names)
    if config.model == "lstm":
        mean, variance = feature_statistics(data, train_split, input_config)
        model = build_lstm(num_classes, data.seq_len, data.spec.feature_dim, mean, variance, config.arch,
                           input_dtype=data.spec.feature_dtype, quantization=data.spec.quantization)
    else:
        model = build_cnn(num_classes, input_config.image_size, config.arch, input_dtype="uint8")
    loss = "binary_crossentropy" if num_classes == 2 else "sparse_categorical_crossentropy"
    model.compile(optimizer=make_optimizer(config, steps), loss=loss, metrics=["accuracy"])
    return model


def _evaluate(config: TrainConfig, workdir: str, model: keras.Model, data: ExtractedData, plan: RunPlan,
              input_config: InputConfig, valid_ds: tf.data.Dataset, collapse: CollapseDetector,
              precision: tuple[str, str]) -> dict:
    """The metrics of the selected model (best.keras, else the trained `model`): valid, then each final split,
    read here for the first and only time; the collapse verdict on the model as it ended."""
    best_path = os.path.join(workdir, BEST)
    if tf.io.gfile.exists(best_path):
        model = keras.models.load_model(best_path, safe_mode=True)
    val_loss, val_accuracy = model.evaluate(valid_ds, verbose=0)
    collapse.check_final(class_probabilities(model.predict(valid_ds.map(lambda x, y: x), verbose=0)),
                         split=plan.selection)
    splits_read = [{"split": plan.train, "phase": "fit"}, {"split": plan.selection, "phase": "model selection"}]
    final, predictions = {}, []
    for split in plan.finals:
        splits_read.append({"split": split, "phase": "final evaluation"})
        inputs, ids = read_with_ids(data, split, input_config)  # the examples' ids, in the inputs' order
        probabilities = model.predict(inputs, verbose=0)
        collapse.check_final(class_probabilities(probabilities), split=split)
        final[split] = artifacts.evaluation(ids[schema.LABEL], probabilities, data.spec.class_names)
        predictions.append((split, ids, class_probabilities(probabilities)))
    artifacts.write_predictions(workdir, predictions)
    metrics = artifacts.metrics_record(
        config=config, final=final, class_names=data.spec.class_names, val_loss=val_loss,
        val_accuracy=val_accuracy, epochs_run=len(artifacts.read_history(workdir)), model=model,
        precision={"policy": precision[0], "reason": precision[1]}, splits_read=splits_read,
        data_fingerprint=data.fingerprint)
    metrics["val_examples"] = data.info(plan.selection).num_examples  # the N of val_accuracy
    if input_config.skip_corrupt:
        metrics["corrupt_records_skipped"] = dict(data.skipped)
    metrics.update(collapsed=collapse.collapsed, collapse_epoch=collapse.collapse_epoch,
                   recovered_collapses=collapse.recovered_collapses,
                   final_model_collapsed=collapse.final_model_collapsed, collapse_history=collapse.history)
    return metrics
