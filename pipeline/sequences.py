"""One video's per-frame features -> its sequences/ example: stacking, the finiteness check, the storage cast or
quantization. Runner-independent: the Beam stages (`pipeline.transforms`) and the chunked merge
(`pipeline.chunks`) both encode through here.

A *stacked video* is a tuple (video_id, plan record, float32 timestamps [T], float32 features [T, 2048]).
"""

from __future__ import annotations

import pickle
from typing import Iterable, Optional

import numpy as np

from dataformat import schema, shards
from pipeline.features import cast_features


class NonFiniteFeatures(ValueError):
    """A video's features hold NaN or Inf: never written (the job stops, see `pipeline.job`)."""

    def __init__(self, video_id: str, message: str):
        super().__init__(message)
        self.row = {"video_id": video_id, "error": message}


def stack_video(element) -> tuple:
    """(video_id, per-frame parts (index, timestamp, vector, record)) -> a stacked video, frames in order."""
    video_id, parts = element
    parts = sorted(parts, key=lambda p: p[0])
    return (video_id, parts[0][3], np.array([p[1] for p in parts], np.float32),
            np.stack([p[2] for p in parts]).astype(np.float32))


def encode_sequence(encode: schema.ExampleEncoder, spec: schema.DatasetSpec, video,
                    quantization: Optional[schema.Quantization] = None):
    """A stacked video -> (split, key, sequence example, warning or None).

    Features beyond float16's range are stored saturated, with a warning row {video_id, warning}; uint8 features
    are quantized with `quantization`, the whole dataset's.

    Raises:
      NonFiniteFeatures: the features hold NaN or Inf.
    """
    video_id, record, timestamps, features = video
    finite = np.isfinite(features).all(axis=1)
    if not finite.all():
        raise NonFiniteFeatures(
            video_id, f"{int((~finite).sum())} of {len(finite)} frame(s) (the first at "
            f"{float(timestamps[~finite][0]):.1f} s) have non-finite InceptionV3 features (NaN or Inf)")
    warning = None
    if quantization is not None:
        matrix = quantization.quantize(features)
    else:
        try:
            matrix = cast_features(features, spec.feature_dtype, record["path"])
        except ValueError as e:  # beyond float16's range: keep the video, saturated, and say so
            limit = float(np.finfo(spec.feature_dtype).max)
            matrix = np.clip(features, -limit, limit).astype(spec.feature_dtype)
            warning = {"video_id": video_id, "warning": f"{e}; stored saturated at +-{limit:g}"}
    example = encode({
        schema.FEATURES: matrix,
        schema.LABEL: spec.class_names.index(record["label"]),
        schema.VIDEO_ID: video_id,
        schema.GROUP: record["group"],
        schema.NUM_FRAMES: len(timestamps),
        schema.TIMESTAMPS: timestamps,
    })
    return record["split"], shards.sort_key(video_id), example, warning


# The dataset's feature range, as a commutative fold (min/max): exact and order-independent, so the quantization,
# and with it every byte of a uint8 dataset, is the same however the work was split.
EMPTY_RANGE = (float("inf"), float("-inf"))


def add_to_range(accumulator: tuple[float, float], video) -> tuple[float, float]:
    matrix = video[3][np.isfinite(video[3])]  # a video with NaN or Inf is never written (encode_sequence)
    if not matrix.size:
        return accumulator
    return (min(accumulator[0], float(matrix.min())), max(accumulator[1], float(matrix.max())))


def merge_ranges(accumulators: Iterable[tuple[float, float]]) -> tuple[float, float]:
    lows, highs = zip(*accumulators)
    return (min(lows), max(highs))


def quantization_of(accumulator: tuple[float, float]) -> schema.Quantization:
    low, high = accumulator
    return schema.Quantization.spanning(low, high) if low <= high else schema.Quantization.spanning(0.0, 0.0)


def feature_range(videos: Iterable) -> schema.Quantization:
    """The uint8 quantization spanning every feature value of `videos` (stacked)."""
    accumulator = EMPTY_RANGE
    for video in videos:
        accumulator = add_to_range(accumulator, video)
    return quantization_of(accumulator)


def spill_record(video) -> tuple[str, str, bytes]:
    """A stacked video as a spill record (split, key, payload); the payload is read back by `from_spill`."""
    return video[1]["split"], shards.sort_key(video[0]), pickle.dumps(video, protocol=pickle.HIGHEST_PROTOCOL)


def from_spill(payload: bytes):
    """A stacked video from a spill record's payload (written by this run's `spill_record`, never foreign data)."""
    return pickle.loads(payload)
