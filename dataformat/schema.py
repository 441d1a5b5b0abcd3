"""The on-disk format of an extraction output: the one place that declares it.

An extraction writes two TFDS folder datasets next to each other:

    OUTPUT_DIR/frames/     one example per sampled frame   (for the CNN)
    OUTPUT_DIR/sequences/  one example per video           (for the LSTM)

Both are loadable with TFDS alone, no project code needed:

    tfds.builder_from_directory(OUTPUT_DIR + '/sequences').as_dataset(split='train', as_supervised=True)

and say what they are and how they were made through TFDS' own fields (`dataformat.card`: the dataset card).

The Beam writer (`pipeline.transforms`), the TFDS metadata (`dataformat.shards`) and the tf.data reader
(`training`) all build their `tfds.features.FeaturesDict` with the functions below, so the writer and the
readers cannot drift apart. Changing a name, dtype or shape here changes the public contract: bump
`FORMAT_VERSION` and say so in README.md ("Output format").
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

# TFDS (and with it TensorFlow) is imported by the functions that build its objects: the names and constants
# here are what the configuration modules import (`pipeline.config`, `training.input_config`), and importing
# them must not cost seconds (`--help`).

class DataError(ValueError):
    """The data on disk cannot be read as asked (not an extraction output, a missing split, another format
    version, damaged files): the message names the file and says what to do."""


# Version of the layout below; written as the TFDS dataset version of both folder datasets.
# 1.1.0 added `max_num_frames` to sequences/metadata.json; readers of 1.0.0 outputs fall back to the data.
FORMAT_VERSION = "1.1.0"

FRAMES = "frames"
SEQUENCES = "sequences"
DATASET_KINDS = (FRAMES, SEQUENCES)  # the two datasets of an output; a "kind" everywhere

# The files beside the two datasets (README, "Output format").
SPLITS_CSV = "splits.csv"  # every input video: its group, label, split, sampled frames and status
SPLITS_CSV_COLUMNS = ("video_id", "group", "label", "split", "frames", "status")
FAILURES_JSONL = "failures.jsonl"  # one {path, video_id, error} per input that could not be extracted
WARNINGS_JSONL = "warnings.jsonl"  # one {video_id, warning} per video kept with a warning
SUMMARY_JSON = "summary.json"

# TFDS' default naming, which `tfds.builder_from_directory` expects: frames-train.tfrecord-00000-of-00004.
FILENAME_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
FILE_FORMAT = "tfrecord"

# InceptionV3 with include_top=False, pooling='avg' gives one 2048-d vector per frame.
FEATURE_DIM = 2048
FEATURE_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}
# Where a uint8 dataset's dequantization constants live: `metadata.json` of sequences/, which TFDS loads as
# `builder.info.metadata` (see `Quantization`).
QUANTIZATION = "quantization"
# Also in sequences/metadata.json: {split: frames of its longest video}, what readers pad sequences to.
MAX_NUM_FRAMES = "max_num_frames"
# In the metadata.json of both datasets: {split: [SHA-256 of each shard file, in shard order]}, computed while
# writing (`dataformat.shards`); what identifies the data's content (`integrity.fingerprint`). Outputs written
# before it have none (readers hash the files instead). Old readers keep working: they ignore the key.
SHARD_SHA256 = "shard_sha256"
# The files of a TFDS folder dataset that describe it (metadata.json is TFDS' `info.metadata`).
METADATA_FILES = ("dataset_info.json", "features.json", "metadata.json")


def sequences_metadata(max_num_frames: dict, quantization: Optional["Quantization"] = None) -> dict:
    """sequences/metadata.json (TFDS' `info.metadata`): written the same way by every writer."""
    metadata = {MAX_NUM_FRAMES: {split: int(n) for split, n in sorted(max_num_frames.items())}}
    if quantization is not None:
        metadata[QUANTIZATION] = quantization.as_metadata()
    return metadata

# Keys of the examples. Readers should use these constants rather than string literals.
IMAGE = "image"
LABEL = "label"
VIDEO_ID = "video_id"
GROUP = "group"
FRAME_INDEX = "frame_index"
TIMESTAMP = "timestamp"
FEATURES = "features"
NUM_FRAMES = "num_frames"
TIMESTAMPS = "timestamps"


@dataclasses.dataclass(frozen=True)
class Quantization:
    """8-bit linear quantization of features, as YouTube-8M stores the same kind of features.

    A value x is stored as q = 1 + round((x - low) / scale), q in 1..255, with scale = (high - low) / 254 over
    the dataset's whole range [low, high] (measured by the extraction, so nothing saturates), and read back as

        x = offset + scale * q        (offset = low - scale)

    with an error of at most scale / 2. q = 0 never stores a value: rows of zero bytes are padding, as all-zero
    rows are in float datasets. TFDS users find `scale` and `offset` in
    `builder.info.metadata["quantization"]`.
    """

    scale: float
    offset: float

    @classmethod
    def spanning(cls, low: float, high: float) -> "Quantization":
        """The quantization whose 254 steps span [low, high] (float32 arithmetic, as stored)."""
        low, high = np.float32(low), np.float32(high)
        scale = np.float32((high - low) / 254) if high > low else np.float32(1.0)
        return cls(scale=float(scale), offset=float(np.float32(low - scale)))

    def quantize(self, features: np.ndarray) -> np.ndarray:
        q = np.rint((features.astype(np.float32) - np.float32(self.offset)) / np.float32(self.scale))
        return np.clip(q, 1, 255).astype(np.uint8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return np.float32(self.offset) + np.float32(self.scale) * q.astype(np.float32)

    def as_metadata(self) -> dict:
        return {"scale": self.scale, "offset": self.offset, "formula": "x = offset + scale * q",
                "padding": "rows whose bytes are all 0"}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What varies between extractions and shapes the schema: the class names and the feature dtype.

    quantization: for feature_dtype 'uint8', how to read the bytes back as values; known once the extraction
    has seen every feature (None while writing, set when read back by `read_spec`).
    card: what the writers put beside the schema in the TFDS metadata (`dataformat.card`: name, description,
    provenance); None when read back by `read_spec` (readers do not depend on it) and for outputs written before
    it.
    """

    class_names: tuple[str, ...]
    feature_dtype: str = "float32"
    feature_dim: int = FEATURE_DIM
    quantization: Optional[Quantization] = None
    card: Optional[object] = None  # a `dataformat.card.DatasetCard` (which imports this module)

    def __post_init__(self):
        if self.feature_dtype not in FEATURE_DTYPES:
            raise ValueError(
                f"feature_dtype must be one of {sorted(FEATURE_DTYPES)}, got {self.feature_dtype!r}"
            )
        if not self.class_names:
            raise ValueError("a dataset needs at least one class name")


def frames_features(spec: DatasetSpec) -> tfds.features.FeaturesDict:
    """Schema of `frames/`: one JPEG frame of a video with its label and where it came from.

    Keys: image (uint8 [H, W, 3], stored as JPEG), label (ClassLabel), video_id (path relative to the input
    root), group (recording group used for splitting), frame_index (index among the *sampled* frames of the
    video, 0-based), timestamp (seconds from the start of the video stream).
    """
    import tensorflow_datasets as tfds

    return tfds.features.FeaturesDict(
        {
            IMAGE: tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            LABEL: tfds.features.ClassLabel(names=list(spec.class_names)),
            VIDEO_ID: tfds.features.Text(),
            GROUP: tfds.features.Text(),
            FRAME_INDEX: tfds.features.Scalar(dtype=np.int32),
            TIMESTAMP: tfds.features.Scalar(dtype=np.float32),
        }
    )


def sequences_features(spec: DatasetSpec) -> tfds.features.FeaturesDict:
    """Schema of `sequences/`: all sampled frames of one video as a [T, 2048] feature matrix.

    `features` is stored as raw little-endian bytes (TFDS `Encoding.BYTES`), so float16 really takes two
    bytes per value on disk and uint8 one; TFDS' default encoding would widen them to a list of wider numbers.
    uint8 features are quantized: see `Quantization` for reading them back as values.
    """
    import tensorflow_datasets as tfds

    return tfds.features.FeaturesDict(
        {
            FEATURES: tfds.features.Tensor(
                shape=(None, spec.feature_dim),
                dtype=FEATURE_DTYPES[spec.feature_dtype],
                encoding=tfds.features.Encoding.BYTES,
            ),
            LABEL: tfds.features.ClassLabel(names=list(spec.class_names)),
            VIDEO_ID: tfds.features.Text(),
            GROUP: tfds.features.Text(),
            NUM_FRAMES: tfds.features.Scalar(dtype=np.int32),
            TIMESTAMPS: tfds.features.Tensor(shape=(None,), dtype=np.float32),
        }
    )


def features_for(kind: str, spec: DatasetSpec) -> tfds.features.FeaturesDict:
    """The FeaturesDict of dataset `kind` (`frames` or `sequences`)."""
    if kind == FRAMES:
        return frames_features(spec)
    if kind == SEQUENCES:
        return sequences_features(spec)
    raise ValueError(f"unknown dataset {kind!r}; expected one of {DATASET_KINDS}")


def description_for(kind: str) -> str:
    """The human description stored in dataset_info.json."""
    if kind == FRAMES:
        return "One example per sampled video frame (JPEG), written by pipeline.extract."
    return "One example per video: InceptionV3 pooled features [T, 2048] per sampled frame, written by pipeline.extract."


class ExampleEncoder:
    """Encodes an example dict with TFDS' feature connectors into `tf.train.Example` bytes, deterministically.

    TFDS' own `serialize_example` leaves the order of the Example's feature map to protobuf, which differs
    between runs; shards must be byte-identical, so this serializes with `deterministic=True`. The bytes decode
    with the same `FeaturesDict` as any TFDS-written example.
    """

    def __init__(self, features: tfds.features.FeaturesDict):
        from tensorflow_datasets.core import example_serializer

        self._features = features
        self._serializer = example_serializer.ExampleSerializer(features.get_serialized_info())

    def __call__(self, example: dict) -> bytes:
        proto = self._serializer.get_tf_example(self._features.encode_example(example))
        return proto.SerializeToString(deterministic=True)


def batch_parser(kind: str, spec: DatasetSpec, keys: Sequence[str]):
    """A function parsing a *batch* of serialized examples of dataset `kind` into {key: tensor [B]}.

    One `tf.io.parse_example` call per batch is much cheaper than one per example. Only scalar features can be
    parsed this way (every training key is one: `features` is stored as a single bytes value); integers come
    back in their declared dtype, `features` as raw bytes for `tf.io.decode_raw`.
    """
    import tensorflow as tf

    info = features_for(kind, spec).get_serialized_info()
    specs, casts = {}, {}
    for key in keys:
        tensor_info = info[key]
        if tuple(tensor_info.shape) != ():
            raise ValueError(f"{kind}/{key} has shape {tensor_info.shape}; batch parsing takes scalar features")
        dtype = tf.as_dtype(tensor_info.tf_dtype)
        wire = tf.int64 if dtype.is_integer else (tf.float32 if dtype.is_floating else tf.string)
        specs[key] = tf.io.FixedLenFeature([], wire)
        if wire != dtype:
            casts[key] = dtype

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, specs)
        return {k: (tf.cast(v, casts[k]) if k in casts else v) for k, v in parsed.items()}

    return parse


def shard_file_name(kind: str, split: str, index: int, num_shards: int) -> str:
    """File name of one shard, following `FILENAME_TEMPLATE` (TFDS' default)."""
    return f"{kind}-{split}.{FILE_FORMAT}-{index:05d}-of-{num_shards:05d}"


def read_spec(data_dir: str) -> DatasetSpec:
    """Reads the class names and feature dtype back from an extraction output's `sequences/` metadata."""
    directory = f"{data_dir.rstrip('/')}/{SEQUENCES}"
    return _spec_of(_load_builder(directory), directory)


def _load_builder(directory: str):
    """`tfds.builder_from_directory(directory)`, with its splits' file names resolved, or a DataError that names
    the metadata file that cannot be read (a damaged or hand-edited dataset_info.json gave a TFDS traceback)."""
    import json

    import tensorflow as tf
    import tensorflow_datasets as tfds

    if not tf.io.gfile.exists(f"{directory}/{METADATA_FILES[0]}"):
        raise DataError(f"{directory} is not an extraction output (pipeline.extract): it has no {METADATA_FILES[0]}")
    for name in METADATA_FILES:
        path = f"{directory}/{name}"
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                try:
                    json.loads(f.read())
                except ValueError as e:
                    raise DataError(f"{path} is not valid JSON ({e}): the file is damaged or was edited; restore "
                                    "it from a copy of the output or re-run pipeline.extract") from None
    try:
        builder = tfds.builder_from_directory(directory)
        for info in builder.info.splits.values():
            info.filepaths  # noqa: B018 - resolves the file name template, which a typo breaks
    except Exception as e:  # noqa: BLE001 - TFDS raises many kinds (ParseError, ValueError, KeyError ...)
        raise DataError(f"{directory}: its TFDS metadata ({', '.join(METADATA_FILES)}) cannot be read: "
                        f"{type(e).__name__}: {e}. The files are damaged or were edited; restore them from a copy of "
                        "the output or re-run pipeline.extract") from None
    return builder


def _spec_of(sequences_builder, directory: str) -> DatasetSpec:
    """The DatasetSpec declared by the metadata of a `sequences/` dataset (read by `sequences_builder`)."""
    features = sequences_builder.info.features
    dtype = np.dtype(features[FEATURES].np_dtype).name
    quantization = None
    if dtype == "uint8":
        constants = (sequences_builder.info.metadata or {}).get(QUANTIZATION)
        if not constants:
            raise DataError(f"{directory} stores uint8 features but its metadata.json has no {QUANTIZATION!r} "
                             "(scale, offset): the output is incomplete; re-run pipeline.extract")
        quantization = Quantization(scale=float(constants["scale"]), offset=float(constants["offset"]))
    return DatasetSpec(
        class_names=tuple(features[LABEL].names),
        feature_dtype=dtype,
        feature_dim=int(features[FEATURES].shape[-1]),
        quantization=quantization,
    )


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    """What the reader knows about one split before reading it."""

    filepaths: tuple[str, ...]
    num_examples: int
    num_bytes: int
    spec: DatasetSpec
    shard_lengths: tuple[int, ...] = ()  # examples per file, as dataset_info.json records them
    max_num_frames: Optional[int] = None  # sequences: frames of the longest video (None: not recorded, < 1.1.0)
    shard_sha256: tuple[str, ...] = ()  # per file, as metadata.json records them (SHARD_SHA256; () if it does not)


def read_splits(data_dir: str, kind: str) -> dict[str, SplitInfo]:
    """Every split of dataset `kind` under `data_dir` (files, sizes, schema), from its TFDS metadata, read once.

    Raises:
      ValueError: `data_dir/kind` is not a dataset written by pipeline.extract.
    """
    directory = f"{data_dir.rstrip('/')}/{kind}"
    builder = _load_builder(directory)
    check_format_version(str(builder.info.version), directory)
    if not builder.info.splits:
        raise DataError(f"{directory} has no splits: the extraction output is incomplete; re-run pipeline.extract")
    # The spec lives in sequences/' metadata: the builder just read, or (for frames/) one more read.
    spec = _spec_of(builder, directory) if kind == SEQUENCES else read_spec(data_dir)
    longest = (builder.info.metadata or {}).get(MAX_NUM_FRAMES) or {} if kind == SEQUENCES else {}
    checksums = (builder.info.metadata or {}).get(SHARD_SHA256) or {}
    return {name: SplitInfo(tuple(str(p) for p in info.filepaths), info.num_examples, info.num_bytes, spec,
                            tuple(int(n) for n in info.shard_lengths),
                            int(longest[name]) if longest.get(name) is not None else None,
                            tuple(str(c) for c in checksums.get(name) or ()))
            for name, info in builder.info.splits.items()}


def check_format_version(version: str, where: str) -> None:
    """Refuses a dataset written in a format this reader does not know: another major version, or a newer minor
    one (whose additions this reader would ignore silently)."""
    def parts(v):
        return tuple(int(p) for p in v.split("."))

    try:
        found, known = parts(version), parts(FORMAT_VERSION)
    except ValueError:
        found, known = (), (0,)
    if not found or found[0] != known[0] or found > known:
        raise DataError(f"{where} is in format {version}; this version of video-pipeline reads formats "
                         f"{known[0]}.0.0 to {FORMAT_VERSION}. Use the video-pipeline that wrote it, or re-extract")


def split_info(data_dir: str, kind: str, split: str) -> SplitInfo:
    """`read_splits(data_dir, kind)[split]`, with an error that lists the splits there are."""
    return pick_split(read_splits(data_dir, kind), split, f"{data_dir}/{kind}")


def pick_split(splits: dict[str, SplitInfo], split: str, where: str) -> SplitInfo:
    """`splits[split]` (a `read_splits` result for the dataset at `where`), or an error listing its splits."""
    if split not in splits:
        raise DataError(f"{where} has no split {split!r}; it has {sorted(splits)}")
    return splits[split]
