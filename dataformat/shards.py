"""Deterministic TFRecord shards and their TFDS metadata.

Order within and across shards is decided by content, never by scheduling: every example carries a sort key (a
SHA-256 of its video id and frame index), the number of shards of a split follows from its total size, an
example's shard from its key, and a shard's records are written in key order. The same examples therefore give
byte-identical files however many Beam workers produced them and in whatever order they finished. Hashed keys also
spread the frames of one video across shards and positions, so a reader that shuffles with a small buffer does not
see long runs of one video.

Every shard's SHA-256 is computed while it is written (`dataformat.tfrecords`) and recorded in the dataset's
metadata.json (`schema.SHARD_SHA256`), beside the shard list of dataset_info.json: a reader fingerprints the data's
content from the metadata alone (`integrity.fingerprint`), without reading a shard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
from typing import Iterable, NamedTuple, Optional, Sequence

import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core import dataset_info as tfds_dataset_info

from dataformat import card, schema
from dataformat.files import TMP_MARKER, atomic_path, temporary_name, write_atomically
from dataformat.tfrecords import HashingRecordWriter

MAX_SHARDS = 10_000  # per split: 1.2 TB at the default size; beyond it shards grow instead


def sort_key(video_id: str, frame_index: int | None = None) -> str:
    """The content-derived position of an example; frames of a video get unrelated keys."""
    text = video_id if frame_index is None else f"{video_id}\x00{frame_index}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def video_order_key(video_id: str, frame_index: int) -> str:
    """A key that keeps a video's frames together and in order (videos themselves in hashed order), for
    `--frame_order=video`: the layout of a naive writer, which story 002's volatile validation came from. Its
    first 15 hex digits are the video's, so `shard_of` puts a whole video in one shard."""
    return f"{sort_key(video_id)}:{frame_index:09d}"


class KeyedRecord(NamedTuple):
    """A serialized record on its way to a split's shards (or a chunk's spill), placed by its sort key."""

    split: str
    key: str  # `sort_key` or `video_order_key`
    data: bytes


def num_shards_for(total_bytes: int, shard_bytes: int, num_examples: int) -> int:
    """Shards a split of `num_examples` examples and `total_bytes` gets: enough that none exceeds about
    `shard_bytes`, but never more than one per example (a tiny --shard_bytes gave tens of thousands of mostly
    empty files) nor more than MAX_SHARDS (shard names have five digits, TFDS' template)."""
    return max(1, min(math.ceil(total_bytes / shard_bytes), num_examples, MAX_SHARDS))


def shard_of(key: str, num_shards: int) -> int:
    """Which shard the example with sort key `key` goes to."""
    return int(key[:15], 16) % num_shards


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """What was written to one shard file."""

    split: str
    index: int
    num_shards: int
    num_examples: int
    num_bytes: int
    sha256: str  # of the file's bytes, as `sha256sum` prints it


def write_shard(directory: str, kind: str, split: str, index: int, num_shards: int,
                records: Iterable[tuple[str, bytes]]) -> ShardInfo:
    """Writes one shard: the serialized examples sorted by key, via a temporary file and a rename."""
    path = tf.io.gfile.join(directory, schema.shard_file_name(kind, split, index, num_shards))
    count = size = 0
    with atomic_path(path) as tmp, HashingRecordWriter(tmp) as writer:
        for _, data in sorted(records, key=lambda kv: kv[0]):
            writer.write(data)
            count += 1
            size += len(data)
    return ShardInfo(split, index, num_shards, count, size, writer.sha256)


def write_sorted_shards(directory: str, kind: str, split: str, records: Iterable[tuple[str, bytes]],
                        num_shards: int) -> list[ShardInfo]:
    """Writes all `num_shards` shards of a split from records that arrive sorted by key, in one pass with every
    shard open: each shard gets its records in key order, so the files equal what `write_shard` writes per shard.

    Raises:
      ValueError: the records are not in strictly increasing key order.
    """
    counts, sizes = [0] * num_shards, [0] * num_shards
    previous = None
    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_path(tf.io.gfile.join(
            directory, schema.shard_file_name(kind, split, i, num_shards)))) for i in range(num_shards)]
        writers = [stack.enter_context(HashingRecordWriter(t)) for t in temporaries]  # closed before renaming
        for key, data in records:
            if previous is not None and key <= previous:
                raise ValueError(f"{kind}/{split}: record keys out of order ({previous!r} then {key!r})")
            previous = key
            index = shard_of(key, num_shards)
            writers[index].write(data)
            counts[index] += 1
            sizes[index] += len(data)
    return [ShardInfo(split, i, num_shards, counts[i], sizes[i], writers[i].sha256) for i in range(num_shards)]


def write_metadata(directory: str, kind: str, spec: schema.DatasetSpec, shards: Sequence[ShardInfo],
                   metadata: Optional[dict] = None) -> None:
    """Completes a TFDS folder dataset: fills shard gaps, writes dataset_info.json, features.json and
    metadata.json (TFDS' `info.metadata`: `metadata` and every shard's SHA-256), with `spec.card`'s name,
    description and provenance (`dataformat.card`), and removes shard files of an earlier run that the new
    metadata does not name.

    A split's shard can be empty when hashing sends no example to it; an empty file is written for it so that
    every file the metadata promises exists.
    """
    by_split: dict[str, dict[int, ShardInfo]] = {}
    for s in shards:
        by_split.setdefault(s.split, {})[s.index] = s
    expected_files = set()
    split_infos = []
    for split in sorted(by_split):
        infos = by_split[split]
        n = next(iter(infos.values())).num_shards
        for index in range(n):
            if index not in infos:
                infos[index] = write_shard(directory, kind, split, index, n, [])
            expected_files.add(schema.shard_file_name(kind, split, index, n))
        # With a card the TFDS name is the card's; the files keep the kind's name, spelled out in the template.
        name, file_names = ((kind, schema.FILENAME_TEMPLATE) if spec.card is None
                            else (spec.card.name, schema.FILENAME_TEMPLATE.replace("{DATASET}", kind)))
        template = tfds.core.ShardedFileTemplate(
            data_dir=directory, template=file_names, dataset_name=name, split=split,
            filetype_suffix=schema.FILE_FORMAT,
        )
        split_infos.append(
            tfds.core.SplitInfo(
                name=split,
                shard_lengths=[infos[i].num_examples for i in range(n)],
                num_bytes=sum(i.num_bytes for i in infos.values()),
                filename_template=template,
            )
        )
    checksums = {split: [by_split[split][i].sha256 for i in range(len(by_split[split]))] for split in sorted(by_split)}
    described = card.tfds_info_args(kind, spec.card)
    identity = tfds_dataset_info.DatasetIdentity(
        version=tfds.core.Version(schema.FORMAT_VERSION), data_dir=directory, module_name="", **described["identity"]
    )
    provenance = {card.PROVENANCE: spec.card.provenance} if spec.card and spec.card.provenance else {}
    info = tfds.core.DatasetInfo(
        builder=identity, features=schema.features_for(kind, spec), **described["info"],
        metadata=tfds.core.MetadataDict(dict(metadata or {}, **{schema.SHARD_SHA256: checksums}, **provenance)),
    )
    info.set_file_format(schema.FILE_FORMAT)
    info.set_splits(tfds.core.SplitDict(split_infos))
    # DatasetInfo writes several files; write them to a scratch folder and move each into place atomically.
    scratch = temporary_name(tf.io.gfile.join(directory, "metadata"))
    tf.io.gfile.makedirs(scratch)
    info.write_to_directory(scratch)
    for file_name in sorted(tf.io.gfile.listdir(scratch)):
        with tf.io.gfile.GFile(tf.io.gfile.join(scratch, file_name), "rb") as f:
            write_atomically(tf.io.gfile.join(directory, file_name), f.read())
    tf.io.gfile.rmtree(scratch)
    prefix = f"{kind}-"
    for file_name in tf.io.gfile.listdir(directory):
        is_shard = file_name.startswith(prefix) and f".{schema.FILE_FORMAT}-" in file_name
        if is_shard and TMP_MARKER not in file_name and file_name not in expected_files:
            tf.io.gfile.remove(tf.io.gfile.join(directory, file_name))
