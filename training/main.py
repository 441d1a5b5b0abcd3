r"""Train the LSTM (feature sequences) or the CNN (frames) on an extraction output.

    python -m training.main --data_dir=/tmp/extracted --model=lstm --workdir=/tmp/run1 --epochs=20
    python -m training.main --data_dir=/tmp/extracted --model=cnn --augment=zoom,flip_h --workdir=/tmp/run2
    python -m training.main --flagfile=configs/story000_lstm_epoch.flags --data_dir=... --workdir=...

Rerunning the same command with the same --workdir resumes an interrupted run. Results: WORKDIR/metrics.json
(test_accuracy, weights_sha256, ...), history.csv, history.png, best.keras, tensorboard/.
"""

import json
import sys

if __name__ == "__main__":  # before TensorFlow is imported: its start-up chatter is filtered (settings.console)
    from settings import console

    console.quiet_start_up()

from absl import app, flags

import settings
from training.config import TrainConfig

FLAGS = flags.FLAGS


def define_flags():
    """Defines this command's flags: --workdir and one per `TrainConfig` setting (only when it runs as a
    command, so libraries can be imported together)."""
    flags.DEFINE_string("workdir", None, "Where checkpoints, logs and metrics.json go; rerun to resume.")
    settings.define_flags(TrainConfig)


def config_from_flags() -> TrainConfig:
    """The TrainConfig that the parsed flags describe."""
    return settings.config_from_flags(TrainConfig, data_dir=FLAGS.data_dir.rstrip("/"))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags()
    except settings.SettingError as e:  # answered before the heavy imports below
        print(f"train: error: {e}", file=sys.stderr)
        return 1
    # TensorFlow is imported here, not above, so that --help answers without loading it.
    from dataformat.files import WriteError
    from dataformat.schema import DataError
    from training.input_pipeline import set_up_reading
    from training.train import TrainingError, train_and_evaluate
    from training.workdir import WorkdirError

    set_up_reading()
    try:
        metrics = train_and_evaluate(config, FLAGS.workdir)
    except (settings.SettingError, DataError, TrainingError, WorkdirError, WriteError) as e:  # ours, never a bug's
        print(f"train: error: {e}", file=sys.stderr)
        return 1
    shown = {k: metrics[k] for k in ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "epochs_run",
                                     "per_class_accuracy", "collapsed", "weights_sha256") if k in metrics}
    print(json.dumps(shown, indent=2))
    return 0


if __name__ == "__main__":
    define_flags()
    flags.mark_flag_as_required("workdir")
    app.run(main)
