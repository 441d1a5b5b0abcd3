r"""Train the LSTM (feature sequences) or the CNN (frames) on an extraction output.

    python -m training.main --data_dir=/tmp/extracted --model=lstm --workdir=/tmp/run1 --epochs=20
    python -m training.main --data_dir=/tmp/extracted --model=cnn --augment=zoom,flip_h --workdir=/tmp/run2
    python -m training.main --flagfile=configs/story000_lstm_epoch.flags --data_dir=... --workdir=...

Rerunning the same command with the same --workdir resumes an interrupted run. Results: WORKDIR/metrics.json
(test_accuracy, weights_sha256, ...), history.csv, history.png, best.keras, tensorboard/.
"""

import json
import sys

from absl import app, flags

from training.distribute import DISTRIBUTIONS
from training.input_pipeline import AUGMENTATIONS, BALANCES, ORDERS, SAMPLINGS, InputConfig
from training.models import CNN_ARCHITECTURES, ModelConfig
from training.schedules import MODES
from training.train import TrainConfig, train_and_evaluate

FLAGS = flags.FLAGS


def define_flags():
    """Defines this command's flags (only when it runs as a command, so libraries can be imported together)."""
    flags.DEFINE_string("data_dir", None, "Output folder of pipeline.extract (holds frames/ and sequences/).")
    flags.DEFINE_string("workdir", None, "Where checkpoints, logs and metrics.json go; rerun to resume.")
    flags.DEFINE_enum("model", "lstm", ["lstm", "cnn"], "lstm: over sequences/; cnn: over frames/.")
    flags.DEFINE_integer("epochs", 20, "Epochs (each is one pass, or N draws, over the train split).")
    flags.DEFINE_integer("batch_size", 32, "Examples per batch.")
    flags.DEFINE_integer("seed", 0, "Seed of initialisation, order, draws, dropout and augmentation.")
    # Input pipeline.
    flags.DEFINE_enum("order", "reshuffle", ORDERS, "fixed: one seeded order every epoch; reshuffle: a new seeded "
                      "order per epoch. Both reproducible for a given --seed.")
    flags.DEFINE_enum("sampling", "epoch", SAMPLINGS, "epoch: every example once per epoch; replacement: N uniform "
                      "draws with replacement per epoch (story 000's random.choice; ~63% distinct).")
    flags.DEFINE_enum("balance", "none", BALANCES, "oversample: draw examples with equal probability per class.")
    flags.DEFINE_integer("shuffle_buffer", None, "Shuffle buffer in examples (default: the whole split if it fits "
                         "--shuffle_memory_mb, else as many as fit plus file-order shuffling).")
    flags.DEFINE_integer("shuffle_memory_mb", 2048, "Memory budget of the default shuffle buffers (two epochs' buffers exist at once).")
    flags.DEFINE_string("cache", "", "'memory', a file path prefix, or empty for no cache.")
    flags.DEFINE_bool("deterministic", True, "Deterministic tf.data order and TF ops (bit-reproducible on CPU); "
                      "--nodeterministic is faster.")
    flags.DEFINE_integer("seq_len", None, "Sequences truncated/padded to this length (default: longest in the "
                         "split, at most 300).")
    flags.DEFINE_integer("image_size", 64, "CNN input size; frames are resized to it.")
    flags.DEFINE_list("augment", [], f"Frame augmentations for training, from {','.join(AUGMENTATIONS)}.")
    flags.DEFINE_float("zoom_range", 0.2, "Zoom factor range [1-r, 1+r] for --augment=zoom.")
    # Models.
    flags.DEFINE_integer("lstm_units", 256, "LSTM units (story 000: 2048).")
    flags.DEFINE_integer("dense_units", 128, "Dense layer after the LSTM (story 000: 512).")
    flags.DEFINE_float("dropout", 0.5, "Dropout before the output layer.")
    flags.DEFINE_enum("cnn", "small", CNN_ARCHITECTURES, "CNN architecture: small, or story 002's network.")
    # Optimisation.
    flags.DEFINE_enum("mixed_precision", "auto", ["auto", "off", "float16", "bfloat16"], "Compute dtype policy; "
                      "auto picks float16/bfloat16 on GPUs with tensor cores and float32 otherwise, and logs why.")
    flags.DEFINE_enum("optimizer", "adam", ["adam", "sgd"], "Optimizer.")
    flags.DEFINE_float("learning_rate", 1e-3, "Learning rate (base_lr of the cyclic schedule).")
    flags.DEFINE_float("momentum", 0.0, "SGD momentum.")
    flags.DEFINE_enum("lr_schedule", "constant", ["constant", "cyclic", "plateau"], "cyclic: triangular cyclical "
                      "learning rate (Smith 2017); plateau: ReduceLROnPlateau on val_loss.")
    flags.DEFINE_float("cyclic_max_lr", 6e-3, "Peak learning rate of the cyclic schedule.")
    flags.DEFINE_integer("cyclic_step_size", 0, "Steps per half cycle (0: two epochs).")
    flags.DEFINE_enum("cyclic_mode", "triangular", MODES, "Cyclic schedule shape.")
    flags.DEFINE_float("cyclic_gamma", 1.0, "Decay per step for --cyclic_mode=exp_range.")
    flags.DEFINE_float("plateau_factor", 0.2, "Factor of ReduceLROnPlateau.")
    flags.DEFINE_integer("plateau_patience", 5, "Patience of ReduceLROnPlateau, in epochs.")
    flags.DEFINE_integer("early_stopping_patience", 0, "Stop after this many epochs without a better val_loss (0: off).")
    # Diagnostics.
    flags.DEFINE_integer("collapse_patience", 3, "Flag the run as collapsed after this many consecutive epochs in "
                         "which >= 95% of valid predictions are one class (or outputs barely vary).")
    flags.DEFINE_bool("track_difficulty", False, "Record every train/valid example's confidence in its true label "
                      "each epoch (difficulty_records.csv; costs one forward pass over train per epoch).")
    flags.DEFINE_enum("distribution", "none", DISTRIBUTIONS, "tf.distribute strategy. none: one device. mirrored: "
                      "every GPU of this machine (or --cpu_devices logical CPUs). multi_worker: several hosts, each "
                      "process configured by TF_CONFIG (scripts/launch_multi_worker.py starts local ones). tpu: "
                      "TPUStrategy at --tpu. --batch_size stays the GLOBAL batch: each of R replicas gets "
                      "batch_size / R, so keep batch_size (and the learning rate) when adding devices, or scale "
                      "both together.")
    flags.DEFINE_string("data_service", "", "Address of a tf.data service dispatcher (grpc://host:port) to run the "
                        "training input pipeline on its worker (one worker per job; see README).")
    flags.DEFINE_bool("skip_corrupt", False, "Train on the intact records of damaged shard files (checksums are "
                      "verified; copies of the intact records go to WORKDIR/repaired) and count the skipped ones in "
                      "metrics.json, instead of stopping with an error naming the file.")
    flags.DEFINE_string("tpu", "", "TPU address for --distribution=tpu ('' = the local TPU VM).")
    flags.DEFINE_string("train_split", "train", "The split to train on (the names are the extraction's --splits).")
    flags.DEFINE_list("eval_splits", ["valid", "test"], "The first selects the model (best checkpoint, early "
                      "stopping, plateau, collapse detection); the others are read once, after training, for the "
                      "final evaluation (the first of them gives test_accuracy). A data set without 'test' skips it "
                      "with a log line.")
    flags.DEFINE_integer("cpu_devices", 1, "Split the CPU into this many logical devices (to run "
                         "--distribution=mirrored without GPUs, e.g. in tests).")


def config_from_flags() -> TrainConfig:
    """The TrainConfig that the parsed flags describe."""
    return TrainConfig(
        data_dir=FLAGS.data_dir.rstrip("/"),
        model=FLAGS.model,
        epochs=FLAGS.epochs,
        seed=FLAGS.seed,
        input=InputConfig(
            batch_size=FLAGS.batch_size, order=FLAGS.order, sampling=FLAGS.sampling, balance=FLAGS.balance,
            shuffle_buffer=FLAGS.shuffle_buffer, shuffle_memory_mb=FLAGS.shuffle_memory_mb, cache=FLAGS.cache,
            deterministic=FLAGS.deterministic, seq_len=FLAGS.seq_len, image_size=FLAGS.image_size,
            augment=tuple(FLAGS.augment), zoom_range=FLAGS.zoom_range, data_service=FLAGS.data_service,
            skip_corrupt=FLAGS.skip_corrupt,
        ),
        arch=ModelConfig(lstm_units=FLAGS.lstm_units, dense_units=FLAGS.dense_units, dropout=FLAGS.dropout,
                         cnn=FLAGS.cnn),
        optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate, momentum=FLAGS.momentum,
        lr_schedule=FLAGS.lr_schedule, cyclic_max_lr=FLAGS.cyclic_max_lr, cyclic_step_size=FLAGS.cyclic_step_size,
        cyclic_mode=FLAGS.cyclic_mode, cyclic_gamma=FLAGS.cyclic_gamma, plateau_factor=FLAGS.plateau_factor,
        plateau_patience=FLAGS.plateau_patience, early_stopping_patience=FLAGS.early_stopping_patience,
        mixed_precision=FLAGS.mixed_precision,
        collapse_patience=FLAGS.collapse_patience,
        track_difficulty=FLAGS.track_difficulty,
        distribution=FLAGS.distribution, tpu=FLAGS.tpu, cpu_devices=FLAGS.cpu_devices,
        train_split=FLAGS.train_split, eval_splits=tuple(FLAGS.eval_splits),
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.data_dir or not FLAGS.workdir:
        raise app.UsageError("--data_dir and --workdir are required")
    try:
        config = config_from_flags()
        metrics = train_and_evaluate(config, FLAGS.workdir, flags=FLAGS.flag_values_dict())
    except ValueError as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 1
    shown = {k: metrics[k] for k in ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "epochs_run",
                                     "per_class_accuracy", "collapsed", "weights_sha256") if k in metrics}
    print(json.dumps(shown, indent=2))
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
