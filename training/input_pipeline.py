"""tf.data readers of an extraction output: `open_data(data_dir, kind, splits)` once, then
`make_train_dataset(data, split, InputConfig(...)) -> (batches, steps per epoch)` and `make_dataset(...)`.

No Python generator anywhere: shard files -> parallel interleave -> parse in batches -> (cache) -> per-epoch
draws and shuffle -> batch -> map (decode, augment) -> prefetch. Other teams can call `make_dataset` on any
directory written by `pipeline.extract`; the parsing derives from `dataformat.schema`, the same declaration the
writer used.

Every epoch's order is a function of (seed, epoch) only: epochs are built one by one with their own shuffle
seed and concatenated. Two runs with one seed see the same batches, a resumed run continues with exactly the
epochs it had not seen, and all sampling modes share one mechanism (how many times each example is drawn in an
epoch, then a shuffle). tf.data combines an op's seed with TensorFlow's global seed, so callers that compare
orders across processes set the global seed first, as `training.train` does (`keras.utils.set_random_seed`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from typing import Optional

import tensorflow as tf

from dataformat import integrity, schema
from dataformat.files import read_text, write_atomically
from dataformat.schema import SplitInfo
from settings import check_choices, require, setting

ORDERS = ("fixed", "reshuffle")
SAMPLINGS = ("epoch", "replacement")
BALANCES = ("none", "oversample")
AUGMENTATIONS = ("zoom", "flip_h", "flip_v")
INPUTS_DTYPES = ("storage", "float32")
MAX_DEFAULT_SEQ_LEN = 300
MIN_IMAGE_SIZE = 8  # the small CNN halves the frame three times
PARSE_BATCH = 64
PARALLEL_READS = 4  # shard files read at once
EPOCHS_IN_FLIGHT = 2  # the epoch being consumed and the next one, filling its shuffle buffer


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

    kind: Optional[str] = setting(None, choices=schema.DATASET_NAMES)
    batch_size: int = setting(32, "Examples per batch; the last batch of an epoch may be smaller.")
    order: str = setting("reshuffle", "fixed: one seeded order repeated every epoch; reshuffle: a new seeded order "
                         "per epoch. Both reproducible by --seed.", choices=ORDERS)
    sampling: str = setting("epoch", "epoch: every example exactly once per epoch; replacement: N uniform draws "
                            "with replacement per epoch (N = split size; story 000's random.choice, ~63% distinct).",
                            choices=SAMPLINGS)
    balance: str = setting("none", "oversample: draws N examples per epoch with equal probability per class (with "
                           "replacement).", choices=BALANCES)
    shuffle: bool = True
    shuffle_buffer: Optional[int] = setting(
        None, "Examples in the shuffle buffer. Default: the whole split if two epochs' buffers fit "
        "--shuffle_memory_mb (a uniform shuffle), otherwise as many as fit plus a seeded shuffle of the shard file "
        "order (logged).", shown_default="the whole split if it fits")
    shuffle_memory_mb: int = setting(2048, "Memory budget of the default shuffle buffers (two epochs' buffers "
                                     "exist at once).")
    cache: str = setting("", "`memory`, a file path prefix for tf.data's on-disk cache, or empty for none.")
    deterministic: bool = setting(True, "tf.data keeps element order across parallel stages and TF ops are "
                                  "deterministic (bit-reproducible on CPU); --nodeterministic is faster and not "
                                  "reproducible.")
    seed: int = 0
    seq_len: Optional[int] = setting(
        None, f"Sequences are truncated or zero-padded (and masked) to this many frames. Default: the train "
        f"split's longest video (sequences/metadata.json), at most {MAX_DEFAULT_SEQ_LEN}.",
        shown_default=f"longest video, at most {MAX_DEFAULT_SEQ_LEN}")
    image_size: int = setting(64, "CNN input size: frames are resized to image_size x image_size.")
    augment: tuple[str, ...] = setting((), "Frame augmentations, applied in the graph to the training split only.",
                                       choices=AUGMENTATIONS)
    zoom_range: float = setting(0.2, "--augment=zoom draws a zoom factor uniformly from [1 - r, 1 + r] "
                                "(ImageDataGenerator's zoom_range).")
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
        check_choices(self)
        require(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")
        require(self.shuffle_buffer is None or self.shuffle_buffer >= 1, "shuffle_buffer", self.shuffle_buffer,
                "at least 1 (leave it out for the default)")
        require(self.shuffle_memory_mb >= 1, "shuffle_memory_mb", self.shuffle_memory_mb, "at least 1")
        require(self.seq_len is None or 1 <= self.seq_len <= 100_000, "seq_len", self.seq_len,
                "1..100000 frames (leave it out for the longest video)")
        require(MIN_IMAGE_SIZE <= self.image_size <= 1024, "image_size", self.image_size,
                f"{MIN_IMAGE_SIZE}..1024 pixels")
        require(math.isfinite(self.zoom_range) and 0 <= self.zoom_range < 1, "zoom_range", self.zoom_range,
                "a fraction in [0, 1) (zoom factors 1 - r .. 1 + r)")


@dataclasses.dataclass(frozen=True)
class Share:
    """What one input pipeline reads and yields when several feed one tf.distribute job (or the whole split).

    files: the shard files it reads. data_shard: too few files for one per pipeline, so every pipeline reads
      every file and keeps every `pipelines`-th example after the (identically seeded) per-epoch shuffle.
    examples_read: examples in `files` (the population the per-epoch draws and shuffle work on).
    examples_per_epoch / batch_size / batches_per_epoch: what it yields per epoch.
    steps_per_epoch: optimizer steps per epoch (one step takes one batch from every replica).
    """

    files: tuple[str, ...]
    examples_read: int
    examples_per_epoch: int
    batch_size: int
    batches_per_epoch: int
    steps_per_epoch: int
    pipelines: int = 1
    index: int = 0
    data_shard: bool = False


def share_of(info: SplitInfo, config: InputConfig,
             input_context: Optional[tf.distribute.InputContext] = None) -> Share:
    """This input pipeline's part of `info`'s split.

    Without an input context (one pipeline feeding the whole job): every file, every example each epoch, in
    batches of config.batch_size, the last one possibly short. With one (tf.distribute's
    distribute_datasets_from_function, e.g. multi-worker): batches of the per-replica size, one file subset per
    pipeline when there are at least as many files as pipelines (else every pipeline reads everything and keeps
    its 1/pipelines of each epoch's order), and every pipeline yields the same whole number of steps per epoch
    (collective ops need all replicas to take part in every step), so up to `global batch - 1` examples per
    pipeline are left out of each epoch; a reshuffled order leaves out different ones each epoch.
    """
    n = info.num_examples
    if input_context is None:
        steps = steps_per_epoch(n, config.batch_size)
        return Share(info.filepaths, n, n, config.batch_size, steps, steps)
    pipelines, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    per_replica = input_context.get_per_replica_batch_size(config.batch_size)
    local_replicas = max(1, input_context.num_replicas_in_sync // pipelines)
    lengths = info.shard_lengths
    if len(info.filepaths) >= pipelines and len(lengths) == len(info.filepaths):
        counts = [sum(lengths[k::pipelines]) for k in range(pipelines)]
        files, read, smallest, data_shard = info.filepaths[index::pipelines], counts[index], min(counts), False
    else:
        files, read, smallest, data_shard = info.filepaths, n, n // pipelines, True
    steps = smallest // (per_replica * local_replicas)
    if steps == 0:
        raise ValueError(f"split of {n} examples over {pipelines} input pipelines gives less than one global batch "
                         f"of {config.batch_size} per pipeline: lower --batch_size")
    return Share(files, read, steps * per_replica * local_replicas, per_replica, steps * local_replicas, steps,
                 pipelines, index, data_shard)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Batches in one epoch: every epoch yields N examples, the last batch possibly short."""
    return max(1, math.ceil(num_examples / batch_size))


@dataclasses.dataclass(frozen=True)
class ExtractedData:
    """One dataset (sequences/ or frames/) of an extraction output, opened once (`open_data`): its schema, the
    splits a run reads, checked against their files (or repaired), and the length sequences are padded to.
    Readers and step counts all come from here, so no fact about the data is derived twice in a run."""

    data_dir: str
    kind: str
    spec: schema.DatasetSpec
    splits: dict  # split name -> SplitInfo of the files to read
    skipped: dict  # split name -> damaged records left out (--skip_corrupt)
    seq_len: Optional[int]  # sequences: frames per example after padding/truncation; None for frames
    fingerprint: str = ""  # identifies the dataset's content (`integrity.fingerprint`): runs and caches check it

    def info(self, split: str) -> SplitInfo:
        if split not in self.splits:
            raise ValueError(f"{self.data_dir}/{self.kind}: split {split!r} was not opened (opened: "
                             f"{', '.join(self.splits)})")
        return self.splits[split]

    def describe(self, split: str) -> str:
        return f"{self.data_dir}/{self.kind} split {split!r}"

    def steps_per_epoch(self, split: str, config: InputConfig,
                        input_context: Optional[tf.distribute.InputContext] = None) -> int:
        """Optimizer steps in one epoch of `split` read with `config` (see `share_of`)."""
        return share_of(self.info(split), config, input_context).steps_per_epoch


def open_data(data_dir: str, kind: str, splits, *, seq_len: Optional[int] = None, skip_corrupt: bool = False,
              repair_dir: str = "") -> ExtractedData:
    """Opens `splits` of dataset `kind` ('sequences' or 'frames') of the extraction output at `data_dir`.

    Every split's files are checked cheaply against the metadata (missing or truncated files raise an error
    naming the file); with `skip_corrupt` every record's checksum is verified and damaged shards are replaced by
    copies of their intact records (in `repair_dir`), counted in `skipped`. An empty split is an error.
    Sequences are padded or truncated to `seq_len`, else to the longest video of the first split (from the
    metadata; outputs older than format 1.1.0 are counted), at most MAX_DEFAULT_SEQ_LEN.
    """
    if kind not in schema.DATASET_NAMES:
        raise ValueError(f"dataset kind {kind!r}: expected one of {', '.join(schema.DATASET_NAMES)}")
    available, infos, skipped = schema.read_splits(data_dir, kind), {}, {}
    for split in dict.fromkeys(splits):
        info = schema.pick_split(available, split, f"{data_dir}/{kind}")
        what = f"{data_dir}/{kind} split {split!r}"
        if skip_corrupt:
            info, skipped[split] = integrity.without_corrupt_records(info, what, repair_dir or None)
        else:
            integrity.check_lengths(info, what)
            skipped[split] = 0
        if info.num_examples == 0:
            raise ValueError(f"{what} is empty")
        infos[split] = info
    first = next(iter(infos.values()))
    length = None
    if kind == schema.SEQUENCES:
        length = seq_len or min(first.max_num_frames or _longest_sequence(first), MAX_DEFAULT_SEQ_LEN)
    return ExtractedData(data_dir, kind, first.spec, infos, skipped, length,
                         integrity.fingerprint(data_dir, kind, available))


def _longest_sequence(info: SplitInfo) -> int:
    """The most frames of any sequence of a split, read from its records (outputs whose metadata lacks it)."""
    parse = schema.batch_parser(schema.SEQUENCES, info.spec, [schema.NUM_FRAMES])
    lengths = tf.data.TFRecordDataset(list(info.filepaths)).batch(256).map(
        lambda batch: tf.reduce_max(parse(batch)[schema.NUM_FRAMES]))
    return int(max(lengths.as_numpy_iterator(), default=1))


def _draw_counts(n: int, seed, labels: Optional[tf.Tensor]):
    """How many times each of the n examples is drawn in one epoch of n draws (multinomial)."""
    if labels is None:
        draws = tf.random.stateless_uniform([n], seed=seed, maxval=n, dtype=tf.int64)
    else:  # class-balanced: each class gets 1/K of the probability mass, shared by its examples
        per_class = tf.math.bincount(tf.cast(labels, tf.int32))
        weights = 1.0 / tf.cast(tf.gather(per_class, labels), tf.float32)
        draws = tf.random.stateless_categorical(tf.math.log(weights)[None], n, seed=seed, dtype=tf.int64)[0]
    return tf.math.bincount(tf.cast(draws, tf.int32), minlength=n, maxlength=n)


def _sampling_boxes(batch, config: InputConfig, seed):
    """Per image, the [y1, x1, y2, x2] box (normalised) that `crop_and_resize` samples: zoom and flips in one box.

    Zoom follows ImageDataGenerator: a factor > 1 shows a smaller central area, < 1 a larger one (the outside
    is zero). A flip swaps the box's coordinates (crop_and_resize samples y1 > y2 as an up-down flip), so
    resizing, zooming and flipping cost one resampling pass instead of a resize, a zoom and two flips.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    half = tf.fill([batch], 0.5)
    if "zoom" in config.augment and config.zoom_range > 0:
        factors = tf.random.stateless_uniform([batch], seed=seeds[2], minval=1 - config.zoom_range,
                                              maxval=1 + config.zoom_range)
        half = 0.5 / factors
    shift = tf.random.stateless_uniform([batch, 2], seed=seeds[3], minval=-1.0, maxval=1.0)
    centre = 0.5 + shift * tf.maximum(0.5 - half, 0.0)[:, None]
    corners = []  # (start, end) along y, then x
    for axis, name, key in ((0, "flip_v", seeds[1]), (1, "flip_h", seeds[0])):
        start, end = centre[:, axis] - half, centre[:, axis] + half
        if name in config.augment:
            flip = tf.random.stateless_uniform([batch], seed=key) < 0.5
            start, end = tf.where(flip, end, start), tf.where(flip, start, end)
        corners.append((start, end))
    (y1, y2), (x1, x2) = corners
    return tf.stack([y1, x1, y2, x2], axis=1)


def _epoch_seed(seed: int, epoch: int, order: str) -> int:
    """The shuffle seed of one epoch; 'fixed' ignores the epoch (the same permutation every epoch)."""
    return (seed * 1_000_003 + (0 if order == "fixed" else epoch + 1)) % (2**31 - 1)


def _parser(info: SplitInfo, config: InputConfig, seq_len: Optional[int], what: str):
    """A function parsing a batch of serialized records into {key: [B, ...]} with one `parse_example` call.

    Sequences come out zero-padded or truncated to seq_len by `decode_raw(fixed_length=...)` in the same
    function, in their storage dtype. JPEG frames stay encoded (decoded per batch in `_finish_batch`).
    """
    keys = [schema.LABEL, schema.VIDEO_ID, schema.GROUP]
    keys += [schema.IMAGE, schema.FRAME_INDEX] if config.kind == schema.FRAMES else [schema.FEATURES]
    parse = schema.batch_parser(config.kind, info.spec, keys)
    dtype = tf.as_dtype(schema.FEATURE_DTYPES[info.spec.feature_dtype])
    dim = info.spec.feature_dim

    num_classes = len(info.spec.class_names)
    row_bytes = dim * dtype.size

    def parse_batch(serialized):
        ex = parse(serialized)
        # Examples that would otherwise be silently misread: an error naming them (video ids and values).
        ids, labels = ex[schema.VIDEO_ID], ex[schema.LABEL]
        bad = (labels < 0) | (labels >= num_classes)
        checks = [tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(bad)),
            [f"{what}: label outside the {num_classes} classes of dataset_info.json; video_id, label:",
             tf.boolean_mask(ids, bad), tf.boolean_mask(labels, bad)], summarize=10)]
        if schema.FEATURES in ex:
            size = tf.strings.length(ex[schema.FEATURES])
            bad = (size == 0) | (size % row_bytes != 0)
            checks.append(tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(bad)),
                [f"{what}: features empty or not a whole number of {dim}-wide {dtype.name} rows ({row_bytes} "
                 "bytes); video_id, bytes:", tf.boolean_mask(ids, bad), tf.boolean_mask(size, bad)], summarize=10))
        with tf.control_dependencies(checks):
            ex = {k: tf.identity(v) for k, v in ex.items()}
        if seq_len is not None:
            # decode_raw's padding kernel has no float16: read the same bytes as uint16 and bitcast.
            as_type = tf.uint16 if dtype == tf.float16 else dtype
            raw = tf.io.decode_raw(ex[schema.FEATURES], as_type, fixed_length=seq_len * dim * dtype.size)
            ex[schema.FEATURES] = tf.reshape(tf.bitcast(raw, dtype) if as_type != dtype else raw, [-1, seq_len, dim])
            if dtype.is_floating:  # NaN or Inf would train to a finite loss and look like a collapse
                bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(ex[schema.FEATURES]), axis=[1, 2]))
                check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [
                    f"{what}: features hold NaN or Inf (the extraction refuses to write them: the file was changed "
                    "after it, or written by another tool); video_id:", tf.boolean_mask(ids, bad)], summarize=10)
                with tf.control_dependencies([check]):
                    ex[schema.FEATURES] = tf.identity(ex[schema.FEATURES])
        return ex

    return parse_batch


def _records(files: tf.data.Dataset, info: SplitInfo) -> tf.data.Dataset:
    """Shard files -> serialized records, read in parallel (several files at a time).

    `deterministic` (the dataset option) decides whether the parallel reads may hand out records in completion
    order (faster) or must keep the file order (reproducible). No read buffer: a record of 100 x 2048 features
    is hundreds of KB, so each read goes straight into the record (TFRecordDataset's buffer only adds a copy;
    a one-off probe: 7,800 vs 6,300 records/s of 400 KB).
    """
    return tf.data.TFRecordDataset(files, buffer_size=0, num_parallel_reads=min(len(info.filepaths), PARALLEL_READS))


def _parsed(records: tf.data.Dataset, parse_batch, config: InputConfig) -> tf.data.Dataset:
    """Serialized records -> parsed examples, PARSE_BATCH records per parse call."""
    return records.batch(PARSE_BATCH).map(parse_batch, num_parallel_calls=tf.data.AUTOTUNE,
                                          deterministic=config.deterministic).unbatch()


_M_TRIM_THRESHOLD, _M_TOP_PAD = -1, -2  # glibc's mallopt parameters (malloc.h)
_RETAIN_BYTES = 1 << 30


@functools.cache
def retain_freed_memory() -> bool:
    """Lets glibc keep up to 1 GiB of freed heap for reuse instead of returning it to the OS at every free.

    Every batch allocates fresh buffers of tens of MB (records, parsed bytes, decoded arrays); with glibc's
    defaults, freeing them shrinks the heap and the next batch page-faults the memory back in, page by page.
    A one-off probe on 32 records of 400 KB: parse_example took 4.5 ms per batch by default and 1.2 ms with
    this setting (copying at 2.9 vs 11 GB/s). Process-wide and harmless elsewhere: freed memory stays mapped
    (up to 1 GiB) for the next allocation. Returns False where glibc is absent (the reader then just runs
    slower).
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _RETAIN_BYTES) == 1 and libc.mallopt(_M_TOP_PAD, 64 << 20) == 1
    except (OSError, AttributeError):
        return False
    if ok:
        logging.info("[input] glibc keeps up to %d MB of freed memory for reuse (fewer page faults)", _RETAIN_BYTES >> 20)
    return ok


def make_train_dataset(data: ExtractedData, split: str, config: InputConfig, start_epoch: int = 0,
                       num_epochs: int = 1, input_context: Optional[tf.distribute.InputContext] = None
                       ) -> tuple[tf.data.Dataset, int]:
    """(`make_dataset(...)`, optimizer steps per epoch): the batches and the count a training loop needs, from
    one source."""
    return (make_dataset(data, split, config, start_epoch, num_epochs, input_context),
            data.steps_per_epoch(split, config, input_context))


def make_dataset(data: ExtractedData | str, split: str, config: InputConfig, start_epoch: int = 0,
                 num_epochs: int = 1, input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """The batches of `split` for training or evaluation.

    Args:
      data: the dataset opened by `open_data`, or the path of an extraction output (the folder holding frames/
        and sequences/; local or gs://), opened here for `split` with `config.kind`, `config.seq_len` and
        `config.skip_corrupt`.
      split: 'train', 'valid', 'test' or any split the extraction wrote.
      config: ordering, sampling, batching and decoding settings.
      start_epoch: first epoch to produce (a resumed run passes the epoch it stopped at).
      num_epochs: how many epochs to produce, each `steps_per_epoch(N, batch_size)` batches.
      input_context: given by tf.distribute's `distribute_datasets_from_function` when several input pipelines
        feed one job; this pipeline then reads its share (see `share_of`): per-replica batches, its files or
        its 1/pipelines of every epoch, an equal number of steps per epoch on every pipeline. Orders stay a
        function of (seed, epoch, pipeline index).

    Returns:
      A dataset of (inputs, label) batches: inputs [B, seq_len, 2048] for sequences (all-zero rows are padding)
      or [B, S, S, 3] in [0, 255] for frames, in the storage dtype or float32 (see `InputConfig.inputs_dtype`);
      label int64 [B]. With `with_metadata`, dicts
      that also carry video_id, group (and frame_index for frames), for inspection tools.
    """
    retain_freed_memory()
    if isinstance(data, str):
        if config.kind is None:
            raise ValueError("make_dataset(path, ...) needs InputConfig(kind='sequences' or 'frames'): which "
                             "dataset of the extraction output to read")
        data = open_data(data, config.kind, [split], seq_len=config.seq_len, skip_corrupt=config.skip_corrupt,
                         repair_dir=config.repair_dir)
    config = dataclasses.replace(config, kind=data.kind)
    info = data.info(split)
    share = share_of(info, config, input_context)
    n = share.examples_read
    det = config.deterministic
    buffer, shuffle_files = _shuffle_buffer(info, config)
    files = tf.data.Dataset.from_tensor_slices(list(share.files))
    parse_batch = _parser(info, config, data.seq_len, data.describe(split))
    # Streaming, the per-epoch sampling and shuffle move *serialized* records and parsing happens after
    # batching, in the parallel per-batch map: a shuffle buffer of parsed examples made every record cost one
    # more copy (unbatch) and measured up to 2x slower (scripts/bench.py, sequence_input). With a cache, parsing
    # happens once, before the cache (after parsing and padding, before any randomness: later epochs re-read
    # the cache, never the files, and the cache holds no epoch-specific order).
    parse_late = not config.cache
    ds = _records(files, info)
    if not parse_late:
        ds = _parsed(ds, parse_batch, config)
        if config.cache != "memory":
            _claim_cache(config.cache, {"data_fingerprint": data.fingerprint, "kind": data.kind, "split": split,
                                        "seq_len": data.seq_len, "files": [os.path.basename(f) for f in share.files]})
        ds = ds.cache() if config.cache == "memory" else ds.cache(config.cache)
    labels = None
    if config.balance == "oversample":
        label_of = (schema.batch_parser(config.kind, info.spec, [schema.LABEL]) if parse_late
                    else (lambda batch: batch))
        labels = tf.concat(list(ds.batch(PARSE_BATCH).map(lambda b: label_of(b)[schema.LABEL])), axis=0)

    def one_epoch(epoch: int) -> tf.data.Dataset:
        seed = _epoch_seed(config.seed, epoch, config.order)
        epoch_ds = ds
        if shuffle_files:
            # The split exceeds the shuffle budget: also vary which shard files meet in the buffer. (Records are
            # already in hashed order within shards, so frames of one video are not adjacent to begin with.)
            epoch_ds = _records(files.shuffle(len(share.files), seed=seed), info)
        if config.sampling == "replacement" or config.balance == "oversample":
            counts = _draw_counts(n, tf.constant([config.seed, seed], tf.int64), labels)
            epoch_ds = epoch_ds.enumerate().flat_map(
                lambda i, ex: tf.data.Dataset.from_tensors(ex).repeat(tf.cast(tf.gather(counts, i), tf.int64)))
        if config.shuffle:
            # Shuffle inside the epoch, before batching: each epoch is a complete pass (or N draws) and no batch
            # mixes two epochs. A seed per (seed, epoch) makes the order reproducible and resumable by epoch.
            epoch_ds = epoch_ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
        if share.data_shard:  # the same order on every pipeline; each keeps its own 1/pipelines of it
            epoch_ds = epoch_ds.shard(share.pipelines, share.index)
        if input_context is not None:  # the same number of whole steps on every pipeline
            epoch_ds = epoch_ds.take(share.examples_per_epoch)
        # Batching copies every example once: in parallel (whole batches at a time; order kept when deterministic).
        return epoch_ds.batch(share.batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=det)

    # Epochs follow one another but overlap: while epoch e is consumed, epoch e+1 already fills its shuffle
    # buffer (see `_one_after_another`). Concatenating them instead stalls at every epoch boundary: a
    # whole-split buffer must be refilled before the next epoch's first batch. Each epoch gets a plain integer
    # seed (tf.data mixes an op seed with the global one in Python), so epochs are built here and nested.
    epochs = [tf.data.Dataset.from_tensors(one_epoch(e)) for e in range(start_epoch, start_epoch + num_epochs)]
    out = functools.reduce(tf.data.Dataset.concatenate, epochs).apply(_one_after_another(share.batches_per_epoch))
    # Per-batch work (JPEG decoding, augmentation, the cast to float32) after batching: one vectorised call per
    # batch. A batch's augmentation seed is its global position, so augmentation is reproducible too.
    # Pipelines of a distributed job number their batches apart, so they draw different augmentations.
    first_batch = start_epoch * share.batches_per_epoch + (share.index << 40)
    out = out.enumerate(start=first_batch).map(
        lambda i, batch: _finish_batch(parse_batch(batch) if parse_late else batch, config,
                                       tf.stack([tf.constant(config.seed, tf.int64), i]), info.spec.quantization),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=det,
    )
    # The exact number of batches is known from the metadata: saying so lets Keras size epochs without running
    # off the end, and turns shards holding fewer records than dataset_info.json claims into an error.
    if config.data_service:
        out = out.apply(tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.OFF, service=config.data_service))
    out = out.apply(tf.data.experimental.assert_cardinality(num_epochs * share.batches_per_epoch))
    options = tf.data.Options()
    options.deterministic = det
    # Sharding is this function's business (input_context): tf.distribute must not shard again. A dataset made
    # without a context is read whole by every worker (what evaluation wants: all workers see the full split).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    # Prefetch last: overlap producing the next batches with the training step.
    return out.with_options(options).prefetch(tf.data.AUTOTUNE)


def _claim_cache(path: str, identity: dict) -> None:
    """tf.data reads a cache file back whenever it exists, whatever it was made from: a --cache path reused for
    another dataset or split trained on the first one's examples. `PATH.identity.json` records what the cache
    holds; a cache of anything else is refused."""
    record = path + ".identity.json"
    if tf.io.gfile.exists(record):
        recorded = json.loads(read_text(record))
        if recorded != identity:
            changed = ", ".join(k for k in sorted(identity) if recorded.get(k) != identity[k])
            raise ValueError(f"--cache={path} holds the cache of other data (its {changed} differ): delete "
                             f"{path}.* or choose another --cache path")
        return
    existing = tf.io.gfile.glob(path + ".*")
    if existing:
        raise ValueError(f"--cache={path}: {existing[0]} exists but records no identity (made by an older version "
                         f"or another program): delete {path}.* or choose another --cache path")
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    write_atomically(record, json.dumps(identity, sort_keys=True) + "\n")


def _identity(epoch: tf.data.Dataset) -> tf.data.Dataset:
    return epoch


def _one_after_another(batches_per_epoch: int):
    """A dataset of epochs (each a dataset of batches) -> their batches, epoch by epoch, the next epoch built
    while the current one is consumed.

    tf.data's parallel interleave with two epochs in its cycle, each produced by its own thread, taking exactly
    one epoch's batches from each in turn (sloppy=False keeps that order). No further epochs are opened ahead
    (prefetch_input_elements=0) and each buffers one batch: at most two epochs' shuffle buffers exist at once.
    `Dataset.interleave(num_parallel_calls=...)` does not expose those two settings and by default opens many
    epochs ahead, each with a full shuffle buffer (a one-off probe: all 8 of 8 epochs read before the first
    batch).
    """
    return tf.data.experimental.parallel_interleave(
        _identity, cycle_length=EPOCHS_IN_FLIGHT, block_length=batches_per_epoch, sloppy=False, buffer_output_elements=1,
        prefetch_input_elements=0)


def _shuffle_buffer(info: SplitInfo, config: InputConfig) -> tuple[int, bool]:
    if config.shuffle_buffer:
        return config.shuffle_buffer, config.shuffle_buffer < info.num_examples and not config.cache
    per_example = max(1, info.num_bytes // max(1, info.num_examples))
    # Two epochs' buffers exist at once (one drains while the next fills: `_one_after_another`).
    fits = max(1, (config.shuffle_memory_mb * 2**20) // (EPOCHS_IN_FLIGHT * per_example))
    if fits >= info.num_examples:
        return info.num_examples, False
    logging.warning(
        "[input] split of %d examples (%.0f MB) exceeds the %d MB shuffle budget: buffer of %d examples plus a "
        "seeded shuffle of %d shard files per epoch (raise --shuffle_memory_mb for a uniform shuffle)",
        info.num_examples, info.num_bytes / 2**20, config.shuffle_memory_mb, fits, len(info.filepaths))
    return int(fits), not config.cache


def _feature_values(stored: tf.Tensor, quantization) -> tf.Tensor:
    """Stored features -> float32 values; uint8 is dequantized, and its padding rows (zero bytes) stay zero."""
    if quantization is None:
        return tf.cast(stored, tf.float32)
    values = quantization.offset + quantization.scale * tf.cast(stored, tf.float32)
    return tf.where(stored == 0, 0.0, values)


def _finish_batch(batch: dict, config: InputConfig, seed, quantization=None):
    if not config.decode:
        return {k: v for k, v in batch.items() if k not in (schema.IMAGE, schema.FEATURES)}
    if config.kind == schema.FRAMES:
        size = (config.image_size, config.image_size)
        jpegs = batch[schema.IMAGE]
        boxes = _sampling_boxes(tf.shape(jpegs)[0], config, seed)

        def decode(jpeg_and_box):
            jpeg, box = jpeg_and_box
            image = tf.io.decode_jpeg(jpeg, channels=3)
            return tf.image.crop_and_resize(image[None], box[None], [0], size, extrapolation_value=0.0)[0]

        inputs = tf.map_fn(decode, (jpegs, boxes), fn_output_signature=tf.TensorSpec(size + (3,), tf.float32))
        if config.inputs_dtype == "storage":  # a quarter of the bytes to the device; the model rescales
            inputs = tf.cast(tf.clip_by_value(tf.round(inputs), 0.0, 255.0), tf.uint8)
    else:
        inputs = batch[schema.FEATURES]
        if config.inputs_dtype == "float32":
            inputs = _feature_values(inputs, quantization)
    if config.with_metadata:
        return dict({k: v for k, v in batch.items() if k not in (schema.IMAGE, schema.FEATURES)}, inputs=inputs)
    return inputs, batch[schema.LABEL]
