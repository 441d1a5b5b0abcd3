"""Local extraction in bounded memory: the plan in chunks, each chunk's records spilled sorted, one streaming merge.

Beam's local runners hold every PCollection of a pipeline in memory between its stages (measured: 50-80 KB per
sampled frame at 75-150 px), so one pipeline over a whole dataset needs memory in proportion to the dataset. A
chunked run instead:

1. cuts the plan into chunks of about `--chunk_frames` sampled frames (estimated from each video's declared
   duration, `estimate_frames`),
2. runs the extraction pipeline on each chunk in turn; instead of shards, a chunk writes per split one *spill
   file* (TFRecord, records `key NUL payload` sorted by key) of its frame examples and one of its stacked
   per-video features, plus its reports,
3. merges: the spills of a split are read together in key order (`heapq.merge`, one record per chunk in memory)
   and cut into the final shards with `shards.write_sorted_shards`; sequences are encoded during the merge, so a
   uint8 dataset is quantized over the range of all chunks.

A shard holds the records whose key hashes to it, in key order, and the shard count of a split follows from its
bytes, so the merged shards are byte-identical to a one-pass run's: chunking changes the memory a job needs,
never its output (tests/pipeline/test_extract_e2e.py compares them).
"""

from __future__ import annotations

import concurrent.futures
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from dataformat import files, reports, schema, shards
from dataformat.files import atomic_path, temporary_name, write_atomically
from pipeline import sequences
from pipeline.config import DecodeSettings
from pipeline.decode import expected_frames, probe_seconds
from pipeline.spills import SEPARATOR, merged, read_spill, splits_of

# Peak memory a local runner needs per sampled frame held in a pipeline, in bytes: a fixed part (features,
# pickled per-frame records, Beam's buffers) plus the frame's JPEG, which grows with its area. Fitted to
# scripts/bench.py --only=extraction_scaling (about 52 KB at 75 px and 80 KB at 150 px per frame).
BYTES_PER_FRAME_FIXED = 45_000
BYTES_PER_FRAME_PER_PIXEL = 1.5
# Memory a local extraction needs whatever its size: TensorFlow, InceptionV3, Beam, the decoder process.
BASE_BYTES = 1_000_000_000


def local_bytes_per_frame(image_size: int) -> float:
    return BYTES_PER_FRAME_FIXED + BYTES_PER_FRAME_PER_PIXEL * image_size * image_size


def estimate_frames(paths: Sequence[str], settings: DecodeSettings, threads: int = 8) -> list[int]:
    """Frames each video will give, from the duration its header declares (read in parallel, no decoding). A
    video whose header declares no duration (or cannot be read) counts as the median of the others."""
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        seconds = list(pool.map(probe_seconds, paths))
    known = [expected_frames(s, settings) for s in seconds if s is not None]
    typical = int(np.median(known)) if known else 1
    return [expected_frames(s, settings) if s is not None else typical for s in seconds]


def plan_chunks(frames: Sequence[int], chunk_frames: int) -> list[range]:
    """Consecutive runs of the plan's videos holding at most `chunk_frames` estimated frames each (a longer
    video is a chunk of its own)."""
    chunks, start, total = [], 0, 0
    for i, n in enumerate(frames):
        if i > start and total + n > chunk_frames:
            chunks.append(range(start, i))
            start, total = i, 0
        total += n
    if len(frames) > start:
        chunks.append(range(start, len(frames)))
    return chunks


def merge_frames(spill_dirs: Sequence[str], directory: str, spec: schema.DatasetSpec, shard_bytes: int) -> None:
    """frames/ from the chunks' spilled frame examples: the shards a one-pass run writes, byte for byte."""
    infos = []
    for split, total in splits_of(spill_dirs).items():
        n = shards.num_shards_for(total["bytes"], shard_bytes, total["records"])
        infos += shards.write_sorted_shards(directory, schema.FRAMES, split, merged(spill_dirs, split), n)
    shards.write_metadata(directory, schema.FRAMES, spec, infos)


def merge_sequences(spill_dirs: Sequence[str], directory: str, spec: schema.DatasetSpec,
                    shard_bytes: int) -> tuple[list[dict], list[dict]]:
    """sequences/ from the chunks' spilled per-video features; returns the encoding's warning rows and the
    videos left out because their features are not finite (see `pipeline.transforms.NonFiniteFeatures`).

    Each split is encoded in key order into one sorted temporary file (its size decides the shard count), then
    cut into shards. uint8 is quantized over every chunk's range, found by a first pass.
    """
    splits = splits_of(spill_dirs)

    def videos(split):
        return (sequences.from_spill(data) for _, data in merged(spill_dirs, split))

    quantization = None
    if spec.feature_dtype == "uint8":
        quantization = sequences.feature_range(v for split in splits for v in videos(split))
    encode = schema.ExampleEncoder(schema.sequences_features(spec))
    infos, warnings, non_finite, longest = [], [], [], {}
    for split in splits:
        encoded = temporary_name(tf.io.gfile.join(directory, f"{split}.encoded"))
        size = count = 0
        with atomic_path(encoded) as tmp, tf.io.TFRecordWriter(tmp) as writer:
            for stacked in videos(split):
                try:
                    record, warning = sequences.encode_sequence(encode, spec, stacked, quantization)
                except sequences.NonFiniteFeatures as e:
                    non_finite.append(e.row)
                    continue
                writer.write(record.key.encode("ascii") + SEPARATOR + record.data)
                size += len(record.data)
                count += 1
                longest[split] = max(longest.get(split, 0), len(stacked.timestamps))
                if warning is not None:
                    warnings.append(warning)
        n = shards.num_shards_for(size, shard_bytes, count)
        infos += shards.write_sorted_shards(directory, schema.SEQUENCES, split, read_spill(encoded), n)
        tf.io.gfile.remove(encoded)
    shards.write_metadata(directory, schema.SEQUENCES, spec, infos, schema.sequences_metadata(longest, quantization))
    return warnings, non_finite


def merge_reports(spill_dirs: Sequence[str], out: str, listing_problems: Sequence[dict],
                  sequence_warnings: Sequence[dict]) -> None:
    """failures.jsonl, warnings.jsonl and splits.csv of the whole run from the chunks' own."""
    def rows(file_name, read=files.read_jsonl):
        return [row for d in spill_dirs for row in read(tf.io.gfile.join(d, file_name))]

    failures = list(listing_problems) + rows(schema.FAILURES_JSONL)
    warnings = rows(schema.WARNINGS_JSONL) + list(sequence_warnings)
    videos = rows(schema.SPLITS_CSV, files.read_csv)
    for file_name, report, report_rows in ((schema.FAILURES_JSONL, reports.FAILURES, failures),
                                           (schema.WARNINGS_JSONL, reports.WARNINGS, warnings),
                                           (schema.SPLITS_CSV, reports.SPLITS, videos)):
        write_atomically(tf.io.gfile.join(out, file_name), report.text(report_rows))


def fits_in_memory(estimated_frames: int, image_size: int, available_bytes: Optional[int]) -> Optional[str]:
    """None, or why `estimated_frames` held at once by a local runner will not fit in `available_bytes`."""
    need = BASE_BYTES + estimated_frames * local_bytes_per_frame(image_size)
    if available_bytes is None or need <= available_bytes:
        return None
    return (f"about {estimated_frames} frames at once need about {need / 2**30:.1f} GiB on a local runner "
            f"({local_bytes_per_frame(image_size) / 1024:.0f} KB per frame at {image_size} px), but "
            f"{available_bytes / 2**30:.1f} GiB are available")
