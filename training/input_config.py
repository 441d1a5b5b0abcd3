"""How a split is read (`InputConfig`): the settings shared by the readers (`training.input_pipeline`) and the
batch preprocessing (`training.preprocess`); its fields with help text are flags of `training.main`."""

from __future__ import annotations

import dataclasses
from typing import Optional

from dataformat import schema
from settings import at_least, between, check_settings, setting

ORDERS = ("fixed", "reshuffle")
SAMPLINGS = ("epoch", "replacement")
BALANCES = ("none", "oversample")
AUGMENTATIONS = ("zoom", "flip_h", "flip_v")
INPUTS_DTYPES = ("storage", "float32")
MIN_IMAGE_SIZE = 8  # the small CNN halves the frame three times
MAX_DEFAULT_SEQ_LEN = 300  # the longest --seq_len chosen for the user (`training.data`)


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """How one split is read. Defaults are the fast, reproducible choices. Fields with help text are flags of
    `training.main` (see `settings`); the others are for library callers:

    kind: 'sequences' (features [T, 2048] per video) or 'frames' (one JPEG frame per example); needed only when
      `make_dataset` is given a path (an `ExtractedData` knows its kind). No default: reading the wrong
      dataset silently is worse than an error.
    shuffle: False reads in file order (evaluation).
    seed: the seed of the order, draws and augmentation (`training.train` sets it from --seed).
    with_metadata: yield dicts with video_id, group, label (and frame_index) besides the inputs.
    decode: False skips producing inputs (no JPEG decoding): for tools that only look at the order.
    repair_dir: where `skip_corrupt` copies the intact records (default a temporary folder).
    inputs_dtype: 'storage' yields inputs as stored, for the model to cast in its first layer (on the
      accelerator, where it is free; `training.models` does): features in the dataset's feature dtype (float16,
      uint8 quantized, or float32), frames as uint8. 'float32' yields values: float32 features (uint8 ones
      dequantized, padding rows kept all-zero) and float32 frames in [0, 255].
    """

    kind: Optional[str] = setting(None, choices=schema.DATASET_KINDS)
    batch_size: int = setting(32, "Examples per batch; the last batch of an epoch may be smaller.",
                              bounds=at_least(1))
    order: str = setting("reshuffle", "fixed: one seeded order repeated every epoch; reshuffle: a new seeded order "
                         "per epoch. Both reproducible by --seed.", choices=ORDERS)
    sampling: str = setting("epoch", "epoch: every example exactly once per epoch; replacement: N uniform draws "
                            "with replacement per epoch (N = split size, like random.choice; ~63% distinct).",
                            choices=SAMPLINGS)
    balance: str = setting("none", "oversample: draws N examples per epoch with equal probability per class (with "
                           "replacement).", choices=BALANCES)
    shuffle: bool = True
    shuffle_buffer: Optional[int] = setting(
        None, "Examples in the shuffle buffer. Default: the whole split if two epochs' buffers fit "
        "--shuffle_memory_mb (a uniform shuffle), otherwise as many as fit plus a seeded shuffle of the shard file "
        "order (logged).", bounds=at_least(1, note="leave it out for the default"),
        shown_default="the whole split if it fits")
    shuffle_memory_mb: int = setting(2048, "Memory budget of the default shuffle buffers (two epochs' buffers "
                                     "exist at once).", bounds=at_least(1))
    cache: str = setting("", "`memory`, a file path prefix for tf.data's on-disk cache, or empty for none.")
    deterministic: bool = setting(True, "tf.data keeps element order across parallel stages and TF ops are "
                                  "deterministic (bit-reproducible on CPU); --nodeterministic is faster and not "
                                  "reproducible.")
    seed: int = 0
    seq_len: Optional[int] = setting(
        None, f"Sequences are truncated or zero-padded (and masked) to this many frames. Default: the train "
        f"split's longest video (sequences/metadata.json), at most {MAX_DEFAULT_SEQ_LEN}.",
        bounds=between(1, 100_000, note="leave it out for the longest video"),
        shown_default=f"longest video, at most {MAX_DEFAULT_SEQ_LEN}")
    image_size: int = setting(64, "CNN input size: frames are resized to image_size x image_size.",
                              bounds=between(MIN_IMAGE_SIZE, 1024))
    augment: tuple[str, ...] = setting((), "Frame augmentations, applied in the graph to the training split only.",
                                       choices=AUGMENTATIONS)
    zoom_range: float = setting(0.2, "--augment=zoom draws a zoom factor uniformly from [1 - r, 1 + r] "
                                "(ImageDataGenerator's zoom_range).", bounds=between(0, 1, high_open=True))
    with_metadata: bool = False
    decode: bool = True
    data_service: str = setting(
        "", "Address of a tf.data service dispatcher (`grpc://host:5050`): reading, shuffling, decoding and "
        "augmentation run on its worker and this process only receives batches. Each worker produces the whole "
        "dataset (ShardingPolicy.OFF keeps the exact epochs and order), so give one job one worker.")
    skip_corrupt: bool = setting(
        False, "Train on the intact records of damaged shard files (checksums are verified; metrics.json counts "
        "the skipped ones) instead of stopping with an error naming the file and record.")
    repair_dir: str = ""
    inputs_dtype: str = setting("storage", choices=INPUTS_DTYPES)

    def __post_init__(self):
        check_settings(self)
