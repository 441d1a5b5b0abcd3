"""One video's per-frame features -> its sequences/ example: stacking, the finiteness check, the storage cast or
quantization. Runner-independent: the Beam stages (`pipeline.transforms`) and the chunked merge
(`pipeline.chunks`) both encode through here.

    FrameFeatures (one per frame, from `transforms.FeaturizeFrames`) -> StackedVideo -> EncodedSequence
"""

from __future__ import annotations

import pickle
from typing import Iterable, NamedTuple, Optional

import numpy as np

from dataformat import schema, shards
from dataformat.shards import KeyedRecord
from pipeline.features import cast_features
from pipeline.plan import PlannedVideo


class FrameFeatures(NamedTuple):
    """One frame's InceptionV3 features, keyed by its video id on the way to `stack_video`."""

    index: int
    timestamp: float
    vector: np.ndarray  # float32 [2048]
    video: PlannedVideo


class StackedVideo(NamedTuple):
    """A video's frames, in order: what a sequences/ example is encoded from (and what a chunk spills)."""

    video_id: str
    video: PlannedVideo
    timestamps: np.ndarray  # float32 [T], seconds
    features: np.ndarray  # float32 [T, 2048]


class EncodedSequence(NamedTuple):
    """What `encode_sequence` makes of a `StackedVideo`."""

    record: KeyedRecord  # the serialized sequence example, bound for its split
    warning: Optional[dict]  # {video_id, warning} when the features were stored saturated, else None


class NonFiniteFeatures(ValueError):
    """A video's features hold NaN or Inf: never written (the job stops, see `pipeline.job`)."""

    def __init__(self, video_id: str, message: str):
        super().__init__(message)
        self.row = {"video_id": video_id, "error": message}


def stack_video(element: tuple[str, Iterable[FrameFeatures]]) -> StackedVideo:
    """(video_id, its frames' `FrameFeatures`) -> its `StackedVideo`, frames in order."""
    video_id, frames = element
    frames = sorted(frames, key=lambda f: f.index)
    return StackedVideo(video_id, frames[0].video, np.array([f.timestamp for f in frames], np.float32),
                        np.stack([f.vector for f in frames]).astype(np.float32))


def encode_sequence(encode: schema.ExampleEncoder, spec: schema.DatasetSpec, stacked: StackedVideo,
                    quantization: Optional[schema.Quantization] = None) -> EncodedSequence:
    """A stacked video -> its sequences/ example (an `EncodedSequence`).

    Features beyond float16's range are stored saturated, with a warning row {video_id, warning}; uint8 features
    are quantized with `quantization`, the whole dataset's.

    Raises:
      NonFiniteFeatures: the features hold NaN or Inf.
    """
    video_id, video, timestamps, features = stacked
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
            matrix = cast_features(features, spec.feature_dtype, video.path)
        except ValueError as e:  # beyond float16's range: keep the video, saturated, and say so
            limit = float(np.finfo(spec.feature_dtype).max)
            matrix = np.clip(features, -limit, limit).astype(spec.feature_dtype)
            warning = {"video_id": video_id, "warning": f"{e}; stored saturated at +-{limit:g}"}
    example = encode({
        schema.FEATURES: matrix,
        schema.LABEL: spec.class_names.index(video.label),
        schema.VIDEO_ID: video_id,
        schema.GROUP: video.group,
        schema.NUM_FRAMES: len(timestamps),
        schema.TIMESTAMPS: timestamps,
    })
    return EncodedSequence(KeyedRecord(video.split, shards.sort_key(video_id), example), warning)


# The dataset's feature range, as a commutative fold (min/max): exact and order-independent, so the quantization,
# and with it every byte of a uint8 dataset, is the same however the work was split.
EMPTY_RANGE = (float("inf"), float("-inf"))


def add_to_range(accumulator: tuple[float, float], stacked: StackedVideo) -> tuple[float, float]:
    matrix = stacked.features[np.isfinite(stacked.features)]  # a video with NaN or Inf is never written (encode_sequence)
    if not matrix.size:
        return accumulator
    return (min(accumulator[0], float(matrix.min())), max(accumulator[1], float(matrix.max())))


def merge_ranges(accumulators: Iterable[tuple[float, float]]) -> tuple[float, float]:
    lows, highs = zip(*accumulators)
    return (min(lows), max(highs))


def quantization_of(accumulator: tuple[float, float]) -> schema.Quantization:
    low, high = accumulator
    return schema.Quantization.spanning(low, high) if low <= high else schema.Quantization.spanning(0.0, 0.0)


def feature_range(videos: Iterable[StackedVideo]) -> schema.Quantization:
    """The uint8 quantization spanning every feature value of `videos`."""
    accumulator = EMPTY_RANGE
    for video in videos:
        accumulator = add_to_range(accumulator, video)
    return quantization_of(accumulator)


def spill_record(stacked: StackedVideo) -> KeyedRecord:
    """A stacked video as a spill record; its payload is read back by `from_spill`."""
    return KeyedRecord(stacked.video.split, shards.sort_key(stacked.video_id),
                       pickle.dumps(stacked, protocol=pickle.HIGHEST_PROTOCOL))


def from_spill(payload: bytes) -> StackedVideo:
    """A stacked video from a spill record's payload (written by this run's `spill_record`, never foreign data)."""
    return pickle.loads(payload)
