"""The settings of one training run (`TrainConfig`, with the model's `ModelConfig` and the reader's `InputConfig`):
one declaration per flag of `training.main` (see `settings`), with the constants they are declared with. Each
config checks itself when it is made.

A leaf: it imports nothing heavy (no TensorFlow or Keras), so `python -m training.main --help` answers at once.
The implementation (`training.train`, `models`, `schedules`, `distribute`) imports its constants from here, never
the other way round.
"""

from __future__ import annotations

import dataclasses

from dataformat import schema
from settings import at_least, between, check_settings, positive, require, setting
from training.input_config import InputConfig

MODELS = ("lstm", "cnn")
CNN_ARCHITECTURES = ("small", "story002")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cyclic", "plateau")
CYCLIC_MODES = ("triangular", "triangular2", "exp_range")  # `schedules.CyclicLearningRate`
PRECISIONS = ("auto", "off", "float16", "bfloat16")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker", "tpu")  # `distribute.make_strategy`
MAX_SEED = 2**32 - 1  # NumPy's seeds (keras.utils.set_random_seed seeds it) are 0 .. 2**32 - 1
FRACTION = between(0, 1, high_open=True)  # [0, 1): a dropout rate, a momentum


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture settings: LSTM -> Dense(relu) -> Dropout -> output (story 000: 2048, 512, 0.5), or a CNN.
    Each is a flag of `training.main` (see `settings`)."""

    lstm_units: int = setting(256, "LSTM units (story 000's model, docs/diagnosing.md: 2048).", bounds=at_least(1))
    dense_units: int = setting(128, "Units of the Dense(relu) layer after the LSTM (story 000's model: 512).",
                               bounds=at_least(1))
    dropout: float = setting(0.5, "Dropout before the output layer.", bounds=FRACTION)
    cnn: str = setting("small", "CNN architecture: small (three conv blocks and global pooling) or story002 "
                       "(the three-dog CNN of story 002, docs/diagnosing.md).", choices=CNN_ARCHITECTURES)

    def __post_init__(self):
        check_settings(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on; each setting is a flag of `training.main` (see `settings`)."""

    data_dir: str = setting(help="Output folder of pipeline.extract (holds frames/ and sequences/).")
    model: str = setting("lstm", "lstm reads sequences/, cnn reads frames/.", choices=MODELS)
    epochs: int = setting(20, "Epochs (each is one pass, or N draws, over the train split).", bounds=at_least(1))
    seed: int = setting(0, "Seed of initialisation, order, draws, dropout and augmentation.",
                        bounds=between(0, MAX_SEED, note="2**32 - 1, NumPy's range"))
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
    learning_rate: float = setting(1e-3, "Learning rate (the base of the cyclic schedule).", bounds=positive())
    momentum: float = setting(0.0, "SGD momentum.", bounds=FRACTION)
    lr_schedule: str = setting("constant", "cyclic: triangular cyclical learning rate (Smith 2017, the --cyclic_* "
                               "settings); plateau: ReduceLROnPlateau on the model-selection split's loss.",
                               choices=LR_SCHEDULES)
    cyclic_max_lr: float = setting(6e-3, "Peak learning rate of the cyclic schedule.", bounds=positive())
    cyclic_step_size: int = setting(0, "Steps per half cycle; 0: two epochs' worth (Smith suggests 2-10 epochs).",
                                    bounds=at_least(0))
    cyclic_mode: str = setting("triangular", "Cyclic schedule shape.", choices=CYCLIC_MODES)
    cyclic_gamma: float = setting(1.0, "Decay per step for --cyclic_mode=exp_range.",
                                  bounds=between(0, 1, low_open=True))
    plateau_factor: float = setting(0.2, "Factor of ReduceLROnPlateau.",
                                    bounds=between(0, 1, low_open=True, high_open=True))
    plateau_patience: int = setting(5, "Patience of ReduceLROnPlateau, in epochs.", bounds=at_least(0))
    early_stopping_patience: int = setting(0, "Stop after this many epochs without a better validation loss "
                                           "(0: off).", bounds=at_least(0))
    collapse_patience: int = setting(3, "Flag the run as collapsed after this many consecutive epochs in which at "
                                     "least 95% of validation predictions are one class (or outputs barely vary).",
                                     bounds=at_least(1))
    track_difficulty: bool = setting(False, "Record every train/valid example's confidence in its true label each "
                                     "epoch (difficulty_records.csv, for training.difficulty; costs one forward "
                                     "pass over train per epoch).")
    distribution: str = setting(
        "none", "tf.distribute strategy. none: one device. mirrored: every GPU of this machine (or --cpu_devices "
        "logical CPUs). multi_worker: several hosts, each process configured by TF_CONFIG "
        "(scripts/launch_multi_worker.py starts local ones). tpu: TPUStrategy at --tpu. --batch_size stays the "
        "global batch: each of R replicas gets batch_size / R.", choices=DISTRIBUTIONS)
    tpu: str = setting("", "TPU address for --distribution=tpu (empty: the local TPU VM).")
    cpu_devices: int = setting(1, "Split the CPU into this many logical devices, to run --distribution=mirrored "
                               "without GPUs (e.g. in tests).", bounds=at_least(1))

    def __post_init__(self):
        """Every setting is checked when the config is made, before the strategy is built and the data read (the
        nested configs checked theirs when they were made); each error names the flag and the values it takes."""
        check_settings(self)
        if self.lr_schedule == "cyclic":
            require(self.cyclic_max_lr >= self.learning_rate, "cyclic_max_lr", self.cyclic_max_lr,
                    f"at least --learning_rate ({self.learning_rate}), the bottom of the cycle")

    @property
    def kind(self) -> str:
        """The dataset the model reads: sequences/ for the LSTM, frames/ for the CNN."""
        return schema.SEQUENCES if self.model == "lstm" else schema.FRAMES
