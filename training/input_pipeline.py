"""tf.data readers of an extraction output, by purpose. Open the data once (`training.data.open_data`), then:

    make_train_dataset(data, split, InputConfig(...))  -> (batches, optimizer steps per epoch)
    make_eval_dataset(data, split, config)             -> batches in file order, unaugmented, cached
    read_with_ids(data, split, config)                 -> (inputs in that order, the examples' ids and labels)
    feature_statistics(data, split, config)            -> per-dimension mean and variance of the features

All of them are `make_dataset`, the one tf.data chain: shard files -> parallel reads -> (parse, cache) ->
per-epoch draws and shuffle -> batch -> parse, decode, augment -> prefetch. No Python generator anywhere. Other
teams can call them on any directory written by `pipeline.extract`; the parsing derives from
`dataformat.schema`, the same declaration the writer used.

Every epoch's order is a function of (seed, epoch) only: epochs are built one by one with their own shuffle
seed and concatenated. Two runs with one seed see the same batches, a resumed run continues with exactly the
epochs it had not seen, and all sampling modes share one mechanism (how many times each example is drawn in an
epoch, then a shuffle). tf.data combines an op's seed with TensorFlow's global seed, so callers that compare
orders across processes set the global seed first, as `training.train` does (`keras.utils.set_random_seed`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from dataformat import integrity, schema
from dataformat.schema import SplitInfo
from settings import SettingError
from training import cache_file
from training.data import ExtractedData, Share, open_data, share_of, steps_per_epoch
from training.input_config import InputConfig
from training.preprocess import finish_batch, jpeg_ratio, make_batch_parser

__all__ = ["InputConfig", "ExtractedData", "open_data", "steps_per_epoch", "make_dataset", "make_train_dataset",
           "make_eval_dataset", "read_with_ids", "feature_statistics"]

PARSE_BATCH = 64
PARALLEL_READS = 4  # shard files read at once
EPOCHS_IN_FLIGHT = 2  # the epoch being consumed and the next one, filling its shuffle buffer


def make_train_dataset(data: ExtractedData, split: str, config: InputConfig, start_epoch: int = 0,
                       num_epochs: int = 1, input_context: Optional[tf.distribute.InputContext] = None
                       ) -> tuple[tf.data.Dataset, int]:
    """(`make_dataset(...)`, optimizer steps per epoch): the batches and the count a training loop needs, from
    one source."""
    return (make_dataset(data, split, config, start_epoch, num_epochs, input_context),
            data.steps_per_epoch(split, config.batch_size, input_context))


def evaluation_config(config: InputConfig) -> InputConfig:
    """How evaluation reads a split: every example once, in file order, unaugmented, cached in memory."""
    return dataclasses.replace(config, shuffle=False, sampling="epoch", balance="none", augment=(), cache="memory",
                               data_service="")


def make_eval_dataset(data: ExtractedData, split: str, config: InputConfig) -> tf.data.Dataset:
    """(inputs, label) batches of `split` read as `evaluation_config` says (model selection, final evaluation)."""
    return make_dataset(data, split, evaluation_config(config))


def read_with_ids(data: ExtractedData, split: str, config: InputConfig) -> tuple[tf.data.Dataset, dict]:
    """`split`'s inputs in evaluation order, and the video_id, frame_index (-1 for sequences) and label of its
    examples in that order (numpy arrays): what per-example records (difficulty) need."""
    with_ids = dataclasses.replace(evaluation_config(config), with_metadata=True, decode=False)
    ids = {schema.VIDEO_ID: [], schema.FRAME_INDEX: [], schema.LABEL: []}
    for batch in make_dataset(data, split, with_ids).as_numpy_iterator():
        ids[schema.VIDEO_ID] += [v.decode() for v in batch[schema.VIDEO_ID]]
        ids[schema.FRAME_INDEX] += list(batch.get(schema.FRAME_INDEX, np.full(len(batch[schema.LABEL]), -1)))
        ids[schema.LABEL] += list(batch[schema.LABEL])
    ids = {k: np.array(v) for k, v in ids.items()}
    return make_eval_dataset(data, split, config).map(lambda x, y: x), ids


def feature_statistics(data: ExtractedData, split: str, config: InputConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and variance of `split`'s frame features (as values: uint8 dequantized), padding rows
    left out: the LSTM's standardization."""
    values = dataclasses.replace(evaluation_config(config), cache="", batch_size=64, inputs_dtype="float32")
    total = total_sq = None
    count = 0
    for inputs, _ in make_dataset(data, split, values).as_numpy_iterator():
        rows = inputs.reshape(-1, inputs.shape[-1]).astype(np.float64)
        rows = rows[np.any(rows != 0, axis=1)]
        total = rows.sum(0) if total is None else total + rows.sum(0)
        total_sq = (rows**2).sum(0) if total_sq is None else total_sq + (rows**2).sum(0)
        count += len(rows)
    mean = total / count
    variance = np.maximum(total_sq / count - mean**2, 1e-12 * np.maximum(mean**2, 1e-30))
    return mean.astype(np.float32), variance.astype(np.float32)


def make_dataset(data: ExtractedData | str, split: str, config: InputConfig, start_epoch: int = 0,
                 num_epochs: int = 1, input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """The batches of `split` for training or evaluation (the purpose-named readers above all call this).

    Args:
      data: the dataset opened by `open_data`, or the path of an extraction output (the folder holding frames/
        and sequences/; local or gs://), opened here for `split` with `config.kind`, `config.seq_len` and
        `config.skip_corrupt`.
      split: 'train', 'valid', 'test' or any split the extraction wrote.
      config: ordering, sampling, batching and decoding settings.
      start_epoch: first epoch to produce (a resumed run passes the epoch it stopped at).
      num_epochs: how many epochs to produce, each `steps_per_epoch(N, batch_size)` batches.
      input_context: given by tf.distribute's `distribute_datasets_from_function` when several input pipelines
        feed one job; this pipeline then reads its share (see `training.data.share_of`): per-replica batches,
        its files or its 1/pipelines of every epoch, an equal number of steps per epoch on every pipeline.
        Orders stay a function of (seed, epoch, pipeline index).

    Returns:
      A dataset of (inputs, label) batches: inputs [B, seq_len, 2048] for sequences (all-zero rows are padding)
      or [B, S, S, 3] in [0, 255] for frames, in the storage dtype or float32 (see `InputConfig.inputs_dtype`);
      label int64 [B]. With `with_metadata`, dicts that also carry video_id, group (and frame_index for
      frames), for inspection tools.
    """
    data = _opened(data, split, config)
    config = dataclasses.replace(config, kind=data.kind)
    source = _source(data, split, config, input_context)
    batches = _epochs(source, config, start_epoch, num_epochs, input_context)
    batches = _finished(batches, source, config, start_epoch)
    return _delivered(batches, source, config, num_epochs)


@dataclasses.dataclass(frozen=True)
class _Source:
    """Where one pipeline's examples come from, and how they are turned into batches."""

    info: SplitInfo
    share: Share
    files: tf.data.Dataset
    records: tf.data.Dataset  # serialized records, or parsed (and cached) examples when `parse_late` is False
    parse_batch: object  # serialized batch -> {key: [B, ...]} (`preprocess.make_batch_parser`)
    jpeg_ratio: int  # frames are decoded at 1/jpeg_ratio of their stored size (`preprocess.jpeg_ratio`)
    parse_late: bool
    buffer: int  # shuffle buffer (examples)
    shuffle_files: bool  # the split exceeds the shuffle budget: vary the shard files' order per epoch too
    labels: Optional[tf.Tensor]  # every example's label, in file order, for class-balanced draws


def _opened(data: ExtractedData | str, split: str, config: InputConfig) -> ExtractedData:
    if not isinstance(data, str):
        return data
    if config.kind is None:
        raise SettingError("make_dataset(path, ...) needs InputConfig(kind='sequences' or 'frames'): which "
                         "dataset of the extraction output to read")
    return open_data(data, config.kind, [split], seq_len=config.seq_len, skip_corrupt=config.skip_corrupt,
                     repair_dir=config.repair_dir)


def _source(data: ExtractedData, split: str, config: InputConfig,
            input_context: Optional[tf.distribute.InputContext]) -> _Source:
    info = data.info(split)
    share = share_of(info, config.batch_size, input_context)
    buffer, shuffle_files = _shuffle_buffer(info, config)
    files = tf.data.Dataset.from_tensor_slices(list(share.files))
    parse_batch = make_batch_parser(info, config, data.seq_len, data.describe(split))
    # Streaming, the per-epoch sampling and shuffle move *serialized* records and parsing happens after
    # batching, in the parallel per-batch map: a shuffle buffer of parsed examples made every record cost one
    # more copy (unbatch) and measured up to 2x slower (scripts/bench.py, sequence_input). With a cache, parsing
    # happens once, before the cache (after parsing and padding, before any randomness: later epochs re-read
    # the cache, never the files, and the cache holds no epoch-specific order).
    parse_late = not config.cache
    records = _records(files, info)
    if not parse_late:
        records = _parsed(records, parse_batch, config)
        if config.cache == "memory":
            records = records.cache()
        else:  # filled completely here, once: epochs only read it (see `cache_file`)
            records = cache_file.cached(records, config.cache, {
                "data_fingerprint": data.fingerprint, "data_fingerprint_method": integrity.FINGERPRINT_METHOD,
                "kind": data.kind, "split": split, "seq_len": data.seq_len,
                "files": [os.path.basename(f) for f in share.files]})
    labels = None
    if config.balance == "oversample":
        label_of = (schema.batch_parser(config.kind, info.spec, [schema.LABEL]) if parse_late
                    else (lambda batch: batch))
        labels = tf.concat(list(records.batch(PARSE_BATCH).map(lambda b: label_of(b)[schema.LABEL])), axis=0)
    return _Source(info, share, files, records, parse_batch, jpeg_ratio(data.frame_size, config), parse_late, buffer,
                   shuffle_files, labels)


def _epochs(source: _Source, config: InputConfig, start_epoch: int, num_epochs: int,
            input_context: Optional[tf.distribute.InputContext]) -> tf.data.Dataset:
    """The batches of epochs start_epoch .. start_epoch + num_epochs - 1, each a function of (seed, epoch)."""
    share = source.share

    def one_epoch(epoch: int) -> tf.data.Dataset:
        seed = _epoch_seed(config.seed, epoch, config.order)
        ds = source.records
        if source.shuffle_files:
            # The split exceeds the shuffle budget: also vary which shard files meet in the buffer. (Records are
            # already in hashed order within shards, so frames of one video are not adjacent to begin with.)
            ds = _records(source.files.shuffle(len(share.files), seed=seed), source.info)
        if config.sampling == "replacement" or config.balance == "oversample":
            counts = _draw_counts(share.examples_read, tf.constant([config.seed, seed], tf.int64), source.labels)
            ds = ds.enumerate().flat_map(
                lambda i, ex: tf.data.Dataset.from_tensors(ex).repeat(tf.cast(tf.gather(counts, i), tf.int64)))
        if config.shuffle:
            # Shuffle inside the epoch, before batching: each epoch is a complete pass (or N draws) and no batch
            # mixes two epochs. A seed per (seed, epoch) makes the order reproducible and resumable by epoch.
            ds = ds.shuffle(source.buffer, seed=seed, reshuffle_each_iteration=False)
        if share.data_shard:  # the same order on every pipeline; each keeps its own 1/pipelines of it
            ds = ds.shard(share.pipelines, share.index)
        if input_context is not None:  # the same number of whole steps on every pipeline
            ds = ds.take(share.examples_per_epoch)
        # Batching copies every example once: in parallel (whole batches at a time; order kept when deterministic).
        return ds.batch(share.batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)

    # Epochs follow one another but overlap: while epoch e is consumed, epoch e+1 already fills its shuffle
    # buffer (see `_one_after_another`). Concatenating them instead stalls at every epoch boundary: a
    # whole-split buffer must be refilled before the next epoch's first batch. Each epoch gets a plain integer
    # seed (tf.data mixes an op seed with the global one in Python), so epochs are built here and nested.
    epochs = [tf.data.Dataset.from_tensors(one_epoch(e)) for e in range(start_epoch, start_epoch + num_epochs)]
    return functools.reduce(tf.data.Dataset.concatenate, epochs).apply(_one_after_another(share.batches_per_epoch))


def _finished(batches: tf.data.Dataset, source: _Source, config: InputConfig, start_epoch: int) -> tf.data.Dataset:
    """Per-batch work (parsing when late, JPEG decoding, augmentation, casts) after batching: one vectorised call
    per batch. A batch's augmentation seed is its global position, so augmentation is reproducible too;
    pipelines of a distributed job number their batches apart, so they draw different augmentations."""
    first_batch = start_epoch * source.share.batches_per_epoch + (source.share.index << 40)
    parse = source.parse_batch if source.parse_late else (lambda batch: batch)
    return batches.enumerate(start=first_batch).map(
        lambda i, batch: finish_batch(parse(batch), config, tf.stack([tf.constant(config.seed, tf.int64), i]),
                                      source.info.spec.quantization, source.jpeg_ratio),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)


def _delivered(batches: tf.data.Dataset, source: _Source, config: InputConfig, num_epochs: int) -> tf.data.Dataset:
    if config.data_service:
        batches = batches.apply(tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.OFF, service=config.data_service))
    # The exact number of batches is known from the metadata: saying so lets Keras size epochs without running
    # off the end, and turns shards holding fewer records than dataset_info.json claims into an error.
    batches = batches.apply(tf.data.experimental.assert_cardinality(num_epochs * source.share.batches_per_epoch))
    options = tf.data.Options()
    options.deterministic = config.deterministic
    # Sharding is this module's business (input_context): tf.distribute must not shard again. A dataset made
    # without a context is read whole by every worker (what evaluation wants: all workers see the full split).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    # Prefetch last: overlap producing the next batches with the training step.
    return batches.with_options(options).prefetch(tf.data.AUTOTUNE)


def _draw_counts(n: int, seed, labels: Optional[tf.Tensor]):
    """How many times each of the n examples is drawn in one epoch of n draws (multinomial)."""
    if labels is None:
        draws = tf.random.stateless_uniform([n], seed=seed, maxval=n, dtype=tf.int64)
    else:  # class-balanced: each class gets 1/K of the probability mass, shared by its examples
        per_class = tf.math.bincount(tf.cast(labels, tf.int32))
        weights = 1.0 / tf.cast(tf.gather(per_class, labels), tf.float32)
        draws = tf.random.stateless_categorical(tf.math.log(weights)[None], n, seed=seed, dtype=tf.int64)[0]
    return tf.math.bincount(tf.cast(draws, tf.int32), minlength=n, maxlength=n)


def _epoch_seed(seed: int, epoch: int, order: str) -> int:
    """The shuffle seed of one epoch; 'fixed' ignores the epoch (the same permutation every epoch)."""
    return (seed * 1_000_003 + (0 if order == "fixed" else epoch + 1)) % (2**31 - 1)


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
        # A tuning detail nobody acts on: not shown at the default log level.
        logging.debug("[input] glibc keeps up to %d MB of freed memory for reuse (fewer page faults)", _RETAIN_BYTES >> 20)
    return ok


def _identity(epoch: tf.data.Dataset) -> tf.data.Dataset:
    return epoch


def _one_after_another(batches_per_epoch: int):
    """A dataset of epochs (each a dataset of batches) -> their batches, epoch by epoch, the next epoch built
    while the current one is consumed.

    tf.data's parallel interleave with two epochs in its cycle, each produced by its own thread, taking exactly
    one epoch's batches from each in turn (sloppy=False keeps that order). No further epochs are opened ahead
    (prefetch_input_elements=0) and each buffers one batch: at most two epochs' shuffle buffers exist at once
    (`test_input_pipeline.py::test_epochs_overlap_two_at_a_time`). This is the deprecated
    `tf.data.experimental.parallel_interleave`: its replacement, `Dataset.interleave(num_parallel_calls=...)`,
    does not expose those two settings and opens epochs far ahead, each with a full shuffle buffer (measured
    with TensorFlow 2.21: 6 of 8 epochs started within a second of the first batch). Its deprecation notice is
    filtered by the commands (`set_up_reading`): users cannot act on it.
    """
    return tf.data.experimental.parallel_interleave(
        _identity, cycle_length=EPOCHS_IN_FLIGHT, block_length=batches_per_epoch, sloppy=False, buffer_output_elements=1,
        prefetch_input_elements=0)


class _HideInterleaveDeprecation(logging.Filter):
    """Drops TensorFlow's one-time deprecation notice of `parallel_interleave` (see `_one_after_another`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "parallel_interleave (from tensorflow.python.data.experimental" not in record.getMessage()


def set_up_reading() -> None:
    """The reader's process-wide settings, made by a command at its start (`training.main`,
    `training.inspect_order`), never by importing or calling the library: glibc keeps freed memory for reuse
    (`retain_freed_memory`), and TensorFlow's deprecation notice of `parallel_interleave`, which users cannot act
    on, is dropped (`_one_after_another`)."""
    retain_freed_memory()
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _HideInterleaveDeprecation) for f in logger.filters):
        logger.addFilter(_HideInterleaveDeprecation())


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
