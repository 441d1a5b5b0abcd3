"""A small extraction output written from arrays instead of videos, through the extraction's own encoders and
writers: for tests and benchmarks of everything downstream of `pipeline.extract` (readers, training, audits).

    write_extraction(data_dir, [SyntheticVideo("a/v1.mp4", label=0, split="train", features=x), ...],
                     class_names=("a", "b"), feature_dtype="float16")

writes sequences/ (videos with `features`), frames/ (videos with `frames`; both datasets always exist, as in a
real output) and splits.csv, laid out and encoded exactly as a real extraction writes them: the same example
encoders (`pipeline.sequences.encode_sequence`, the schema's), the same uint8 quantization over the whole
dataset, key-ordered shards (`dataformat.shards`), the same metadata, and summary.json (built by the
extraction's own `pipeline.summary.summarize`; no failures, no warnings).

`many_classes` makes the videos of a large dataset (hundreds of classes, tiny frames) for scale tests.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from dataformat import reports, schema, shards
from dataformat.card import DatasetCard
from dataformat.files import write_atomically
from pipeline import sequences
from pipeline.plan import PlannedVideo


@dataclasses.dataclass(frozen=True)
class SyntheticVideo:
    """One video of a synthetic output: features [T, 2048] (float32 values) for sequences/, frames [N, H, W, 3]
    (uint8) for frames/, or both."""

    video_id: str
    label: int
    split: str = "train"
    features: Optional[np.ndarray] = None
    frames: Optional[np.ndarray] = None
    group: Optional[str] = None  # default: the video itself


# The card of a synthetic output; `write_extraction(..., card=None)` writes the metadata of outputs made before
# dataset cards existed.
SYNTHETIC_CARD = DatasetCard(name="synthetic", description="A synthetic extraction output, written from arrays by "
                             "pipeline.synthetic for tests and benchmarks.",
                             provenance={"tool": {"name": "video-pipeline", "command": "pipeline.synthetic"}})


def write_extraction(data_dir: str, videos: Sequence[SyntheticVideo], class_names: Sequence[str],
                     feature_dtype: str = "float16", num_shards: int = 1,
                     card: Optional[DatasetCard] = SYNTHETIC_CARD) -> schema.DatasetSpec:
    """Writes the output (see the module docstring), each split in `num_shards` shards, with the dataset `card`;
    returns its spec as a reader sees it (uint8: with the quantization)."""
    spec = schema.DatasetSpec(class_names=tuple(class_names), feature_dtype=feature_dtype, card=card)
    planned = [PlannedVideo(v.video_id, path=v.video_id, label=class_names[v.label], group=v.group or v.video_id,
                            split=v.split) for v in videos]
    _write_sequences(f"{data_dir}/{schema.SEQUENCES}", spec, videos, planned, num_shards)
    _write_frames(f"{data_dir}/{schema.FRAMES}", spec, videos, planned, num_shards)
    rows = [{"video_id": p.video_id, "group": p.group, "label": p.label, "split": p.split,
             "frames": len(v.features if v.features is not None else v.frames), "status": "ok"}
            for v, p in zip(videos, planned)]
    write_atomically(f"{data_dir}/{schema.SPLITS_CSV}", reports.SPLITS.text(rows))
    _write_summary(data_dir, spec, len(videos))
    return schema.read_spec(data_dir)


def _write_summary(data_dir: str, spec: schema.DatasetSpec, inputs: int) -> None:
    from pipeline.sources import Listing
    from pipeline.summary import summarize

    for name in (schema.FAILURES_JSONL, schema.WARNINGS_JSONL):
        write_atomically(f"{data_dir}/{name}", "")
    listing = Listing(records=[None] * inputs, problems=[], hidden=[])  # summarize counts the inputs only
    summary = summarize(data_dir, "video", listing, spec, [], 0.0)
    write_atomically(f"{data_dir}/{schema.SUMMARY_JSON}", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


SPLIT_CYCLE = ("train", "valid", "test", "train", "train", "train", "train", "train", "valid", "test")


def many_classes(classes: int, videos: int, frames: int = 10, side: int = 16, seed: int = 0) -> list[SyntheticVideo]:
    """`videos` videos spread evenly over `classes` classes ("c000/v0.mp4", ...), each `frames` frames of
    `side` x `side` pixels, and features (float16 values: half the memory of a big set); a class's videos share
    its colour pattern (plus noise), and its j-th video goes to SPLIT_CYCLE[j % 10] (every split holds every
    class with 3 or more videos each). Features are a direction of the class's pair (classes 2k and 2k + 1) plus
    a weaker one of its own: the pairs are what a model confuses."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 200, (classes, side, side, 3), dtype=np.uint8)
    pair = rng.standard_normal(((classes + 1) // 2, 2048), np.float32)
    own = rng.standard_normal((classes, 2048), np.float32)
    made = []
    for i in range(videos):
        label, j = i % classes, i // classes
        noise = rng.integers(0, 56, (frames, side, side, 3), dtype=np.uint8)
        made.append(SyntheticVideo(f"c{label:03d}/v{i}.mp4", label, SPLIT_CYCLE[j % len(SPLIT_CYCLE)],
                                   features=(rng.standard_normal((frames, 2048), np.float32) + 2 * pair[label // 2]
                                             + 0.6 * own[label]).astype(np.float16),
                                   frames=patterns[label] + noise))
    return made


def _write_sequences(directory: str, spec: schema.DatasetSpec, videos, planned, num_shards: int) -> None:
    stacked = (sequences.StackedVideo(v.video_id, p, np.arange(len(v.features), dtype=np.float32),
                                      np.asarray(v.features, np.float32))
               for v, p in zip(videos, planned) if v.features is not None)  # one float32 copy at a time
    quantization = None
    if spec.feature_dtype == "uint8":  # the range over the whole dataset, as the extraction takes it
        stacked = list(stacked)
        quantization = sequences.feature_range(stacked)
    encode = schema.ExampleEncoder(schema.sequences_features(spec))
    by_split, longest = {}, {}
    for video in stacked:
        record, _ = sequences.encode_sequence(encode, spec, video, quantization)
        by_split.setdefault(record.split, []).append((record.key, record.data))
        longest[record.split] = max(longest.get(record.split, 0), len(video.timestamps))
    _write_dataset(directory, schema.SEQUENCES, spec, by_split, num_shards,
                   schema.sequences_metadata(longest, quantization))


def _write_frames(directory: str, spec: schema.DatasetSpec, videos, planned, num_shards: int) -> None:
    encode = schema.ExampleEncoder(schema.frames_features(spec))
    by_split = {}
    for v, p in zip(videos, planned):
        for index, image in enumerate(v.frames if v.frames is not None else []):
            by_split.setdefault(v.split, []).append((shards.sort_key(v.video_id, index), encode({
                schema.IMAGE: io.BytesIO(tf.io.encode_jpeg(image, quality=90).numpy()), schema.LABEL: v.label,
                schema.VIDEO_ID: v.video_id, schema.GROUP: p.group, schema.FRAME_INDEX: index,
                schema.TIMESTAMP: float(index)})))
    _write_dataset(directory, schema.FRAMES, spec, by_split, num_shards)


def _write_dataset(directory: str, kind: str, spec: schema.DatasetSpec, by_split: dict, num_shards: int,
                   metadata: Optional[dict] = None) -> None:
    tf.io.gfile.makedirs(directory)
    infos = []
    for split, examples in sorted(by_split.items()):
        infos += shards.write_sorted_shards(directory, kind, split, sorted(examples), num_shards)
    shards.write_metadata(directory, kind, spec, infos, metadata)
