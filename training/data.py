"""An extraction output's dataset as one run reads it, opened once (`open_data` -> `ExtractedData`): the splits it
names, checked against their files (or repaired), sized, fingerprinted, and the length sequences are padded to;
and each input pipeline's share of a split under tf.distribute (`share_of`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import tensorflow as tf

from dataformat import integrity, schema
from dataformat.schema import SplitInfo
from settings import SettingError
from training.input_config import MAX_DEFAULT_SEQ_LEN


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


def share_of(info: SplitInfo, batch_size: int, input_context: Optional[tf.distribute.InputContext] = None) -> Share:
    """This input pipeline's part of `info`'s split.

    Without an input context (one pipeline feeding the whole job): every file, every example each epoch, in
    batches of batch_size (the global batch), the last one possibly short. With one (tf.distribute's
    distribute_datasets_from_function, e.g. multi-worker): batches of the per-replica size, one file subset per
    pipeline when there are at least as many files as pipelines (else every pipeline reads everything and keeps
    its 1/pipelines of each epoch's order), and every pipeline yields the same whole number of steps per epoch
    (collective ops need all replicas to take part in every step), so up to `global batch - 1` examples per
    pipeline are left out of each epoch; a reshuffled order leaves out different ones each epoch.
    """
    n = info.num_examples
    if input_context is None:
        steps = steps_per_epoch(n, batch_size)
        return Share(info.filepaths, n, n, batch_size, steps, steps)
    pipelines, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    per_replica = input_context.get_per_replica_batch_size(batch_size)
    local_replicas = max(1, input_context.num_replicas_in_sync // pipelines)
    lengths = info.shard_lengths
    if len(info.filepaths) >= pipelines and len(lengths) == len(info.filepaths):
        counts = [sum(lengths[k::pipelines]) for k in range(pipelines)]
        files, read, smallest, data_shard = info.filepaths[index::pipelines], counts[index], min(counts), False
    else:
        files, read, smallest, data_shard = info.filepaths, n, n // pipelines, True
    steps = smallest // (per_replica * local_replicas)
    if steps == 0:
        raise SettingError(f"split of {n} examples over {pipelines} input pipelines gives less than one global batch "
                         f"of {batch_size} per pipeline: lower --batch_size")
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
    frame_size: Optional[int] = None  # frames: the larger side of the stored JPEGs (from the first record)

    def info(self, split: str) -> SplitInfo:
        if split not in self.splits:
            raise schema.DataError(f"{self.data_dir}/{self.kind}: split {split!r} was not opened (opened: "
                             f"{', '.join(self.splits)})")
        return self.splits[split]

    def describe(self, split: str) -> str:
        return f"{self.data_dir}/{self.kind} split {split!r}"

    def steps_per_epoch(self, split: str, batch_size: int,
                        input_context: Optional[tf.distribute.InputContext] = None) -> int:
        """Optimizer steps in one epoch of `split` in batches of `batch_size` (see `share_of`)."""
        return share_of(self.info(split), batch_size, input_context).steps_per_epoch


def open_data(data_dir: str, kind: str, splits, *, seq_len: Optional[int] = None, skip_corrupt: bool = False,
              repair_dir: str = "", available: Optional[dict] = None) -> ExtractedData:
    """Opens `splits` of dataset `kind` ('sequences' or 'frames') of the extraction output at `data_dir`.

    Every split's files are checked cheaply against the metadata (missing or truncated files raise an error
    naming the file); with `skip_corrupt` every record's checksum is verified and damaged shards are replaced by
    copies of their intact records (in `repair_dir`), counted in `skipped`. An empty split is an error.
    Sequences are padded or truncated to `seq_len`, else to the longest video of the first split (from the
    metadata; outputs older than format 1.1.0 are counted), at most MAX_DEFAULT_SEQ_LEN. `available`: the
    dataset's `schema.read_splits`, when the caller has read it already.
    """
    if kind not in schema.DATASET_KINDS:
        raise SettingError(f"dataset kind {kind!r}: expected one of {', '.join(schema.DATASET_KINDS)}")
    available = available if available is not None else schema.read_splits(data_dir, kind)
    infos, skipped = {}, {}
    for split in dict.fromkeys(splits):
        info = schema.pick_split(available, split, f"{data_dir}/{kind}")
        what = f"{data_dir}/{kind} split {split!r}"
        if skip_corrupt:
            info, skipped[split] = integrity.without_corrupt_records(info, what, repair_dir or None)
        else:
            integrity.check_lengths(info, what)
            skipped[split] = 0
        if info.num_examples == 0:
            raise schema.DataError(f"{what} is empty")
        infos[split] = info
    first = next(iter(infos.values()))
    length = None
    if kind == schema.SEQUENCES:
        length = seq_len or min(first.max_num_frames or _longest_sequence(first), MAX_DEFAULT_SEQ_LEN)
    return ExtractedData(data_dir, kind, first.spec, infos, skipped, length,
                         integrity.fingerprint(data_dir, kind, available),
                         _stored_frame_size(infos) if kind == schema.FRAMES else None)


def _stored_frame_size(infos: dict) -> Optional[int]:
    """The larger side of the first stored frame (extractions store every frame at one --image_size)."""
    for info in infos.values():
        files = [f for f, n in zip(info.filepaths, info.shard_lengths or (1,) * len(info.filepaths)) if n]
        if not files:
            continue
        parse = schema.batch_parser(schema.FRAMES, info.spec, [schema.IMAGE])
        for record in tf.data.TFRecordDataset(files[:1]).take(1):
            shape = tf.io.extract_jpeg_shape(parse(record[None])[schema.IMAGE][0])
            return int(max(shape[0], shape[1]))
    return None


def _longest_sequence(info: SplitInfo) -> int:
    """The most frames of any sequence of a split, read from its records (outputs whose metadata lacks it)."""
    parse = schema.batch_parser(schema.SEQUENCES, info.spec, [schema.NUM_FRAMES])
    lengths = tf.data.TFRecordDataset(list(info.filepaths)).batch(256).map(
        lambda batch: tf.reduce_max(parse(batch)[schema.NUM_FRAMES]))
    return int(max(lengths.as_numpy_iterator(), default=1))
