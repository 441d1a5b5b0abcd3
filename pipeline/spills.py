"""The spill format of a chunked local run (`pipeline.chunks`): per chunk and split, one TFRecord file of records
`key NUL payload` sorted by key, and an index.json with each split's record count and bytes. Written by the
Beam stage `transforms.WriteSpills`, read by the merge.
"""

from __future__ import annotations

import heapq
import json
from typing import Iterable, Iterator, Sequence

import tensorflow as tf

from dataformat.files import atomic_path, write_atomically

SPILL_INDEX = "index.json"
SEPARATOR = b"\0"  # sort keys are hex digits, ':' and digits: never NUL


def write_spill(directory: str, split: str, records: Iterable[tuple[str, bytes]]) -> dict:
    """Writes one split's records of one chunk, sorted by key; returns {split, records, bytes} (payload bytes)."""
    count = size = 0
    with atomic_path(tf.io.gfile.join(directory, f"{split}.spill")) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for key, data in sorted(records, key=lambda kv: kv[0]):
            writer.write(key.encode("ascii") + SEPARATOR + data)
            count += 1
            size += len(data)
    return {"split": split, "records": count, "bytes": size}


def write_spill_index(directory: str, infos: Sequence[dict]) -> None:
    write_atomically(tf.io.gfile.join(directory, SPILL_INDEX),
                     json.dumps({i["split"]: i for i in sorted(infos, key=lambda i: i["split"])}, indent=1))


def read_spill_index(directory: str) -> dict:
    with tf.io.gfile.GFile(tf.io.gfile.join(directory, SPILL_INDEX)) as f:
        return json.load(f)


def read_spill(path: str) -> Iterator[tuple[str, bytes]]:
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        key, data = record.split(SEPARATOR, 1)
        yield key.decode("ascii"), data


def merged(spill_dirs: Sequence[str], split: str) -> Iterator[tuple[str, bytes]]:
    """The records of `split` from every chunk, in key order (one record per chunk in memory)."""
    paths = [tf.io.gfile.join(d, f"{split}.spill") for d in spill_dirs]
    return heapq.merge(*(read_spill(p) for p in paths if tf.io.gfile.exists(p)), key=lambda kv: kv[0])


def splits_of(spill_dirs: Sequence[str]) -> dict[str, dict]:
    """{split: {records, bytes}} summed over the chunks' spill indexes."""
    totals: dict[str, dict] = {}
    for d in spill_dirs:
        for split, info in read_spill_index(d).items():
            t = totals.setdefault(split, {"records": 0, "bytes": 0})
            t["records"] += info["records"]
            t["bytes"] += info["bytes"]
    return dict(sorted(totals.items()))
