"""The Beam stages of an extraction that decode and featurize, one composite PTransform each (the writers are in
`pipeline.writers`; `pipeline.graph` joins them).

    PlannedVideo ─ DecodeFrames ─┬─ FrameBatch ─ FeaturizeFrames ─┬─ KeyedRecord (frame examples) ─ WriteShards(frames)
                                 │                                └─ FrameFeatures ─ BuildSequences ─ WriteShards(sequences)
                                 ├─ failures ─────────────────────────────────────────────── failures.jsonl
                                 └─ video rows (frames, status, warning) ──────────────────── splits.csv, warnings.jsonl

The records are named where their stage contract is: `pipeline.plan.PlannedVideo`, `FrameBatch` and
`DecodedFrame` here, `sequences.FrameFeatures` and `sequences.StackedVideo`, `shards.KeyedRecord`; the rows of
failures.jsonl, splits.csv and warnings.jsonl are dicts, as their `dataformat.reports.Report` writes them.

A frame batch holds consecutive frames of one pack, videos of the plan featurized together (`pipeline.packs`;
see `pipeline.features` for why a frame's batch must be a function of the plan, never of scheduling).
InceptionV3 runs in Beam's RunInference with a custom model handler (`InceptionV3Handler`), which loads the model
once per process; the TFDS feature encoders are created in `DoFn.setup()`. Bad videos never raise: they leave
through the `failures` output and a Beam counter.
"""
from __future__ import annotations

import io
import logging
import time
from typing import NamedTuple, Optional

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from dataformat import schema, shards
from dataformat.shards import KeyedRecord
from pipeline.config import DEFAULT_DECODE_TIMEOUT, DecodeSettings
from pipeline.decode import DecodeReport
from pipeline.isolated_decode import DecoderPool, Failure, default_processes
from pipeline import sequences
from pipeline.features import padded_batch_size
from pipeline.packs import Pack, PackBatcher, PackedFrame
from pipeline.plan import PlannedVideo
from pipeline.progress import ProgressLog
from pipeline.sequences import FrameFeatures

FAILURES = "failures"
VIDEOS = "videos"
WARNINGS = "warnings"
NON_FINITE = "non_finite"


class DecodedFrame(NamedTuple):
    """A sampled frame of a video, decoded and encoded as the JPEG frames/ stores."""

    index: int  # among the video's sampled frames, from 0
    timestamp: float  # seconds
    rgb: np.ndarray  # uint8 [image_size, image_size, 3]
    jpeg: bytes


class FrameBatch(NamedTuple):
    """Consecutive frames of a pack (`pipeline.packs`), a forward pass's worth at most: RunInference's example."""

    frames: list[PackedFrame]  # each with its video and whether it is dropped (its video failed)


class _SetUpDoFn(beam.DoFn):
    """A DoFn whose `setup()` state (listed in `_SET_UP`) stays out of its pickled form.

    Runners may serialize a DoFn again after setup() ran (a probe on Beam's DaskRunner did): a Keras model, a
    traced function or a child process cannot be pickled, and a copy must set itself up anew anyway.
    """

    _SET_UP: tuple[str, ...] = ()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self._SET_UP}


class _DecodeFramesFn(_SetUpDoFn):
    """Decodes a pack's videos, several at once (`isolated_decode.DecoderPool.decode_in_order`), into forward
    passes of the pack's frames (main output, `packs.PackBatcher`), plus one row per video and failures."""

    _SET_UP = ("_pool", "_progress")

    def __init__(self, settings: DecodeSettings, jpeg_quality: int, batch_size: int, isolate: bool,
                 timeout: float, processes: int, progress_dir: Optional[str], hold: int):
        self._hold = hold
        self._settings = settings
        self._quality = jpeg_quality
        self._batch_size = batch_size
        self._isolate = isolate
        self._timeout = timeout
        self._processes = processes
        self._progress_dir = progress_dir
        self._count = {name: Metrics.counter("extract", name) for name in (
            "videos_decoded", "videos_failed", "videos_partial", "frames_decoded", "fast_packets_read",
            "fast_packets_decoded", "frames_dropped")}

    def setup(self):
        import tensorflow as tf

        quality = self._quality
        # JPEG encoding in the pool's threads: it overlaps the model's forward passes in this one.
        self._pool = DecoderPool(self._processes or default_processes(), self._timeout, self._isolate,
                                 buffer=2 * self._batch_size,
                                 prepare=lambda frame: tf.io.encode_jpeg(frame.rgb, quality=quality).numpy())
        self._progress = ProgressLog(self._progress_dir) if self._progress_dir else None

    def teardown(self):
        self._pool.close()

    def process(self, pack: Pack):
        batcher, done = PackBatcher(self._batch_size, self._hold), []
        jobs = [(video, video.path, self._settings) for video in pack.videos]
        for video, event in self._pool.decode_in_order(jobs):
            if isinstance(event, tuple):  # a frame and its JPEG
                frame, jpeg = event
                ready = batcher.add(video, DecodedFrame(frame.index, frame.timestamp, frame.rgb, jpeg))
            else:
                failed = isinstance(event, Failure)
                if failed and batcher.released:
                    logging.error("[extract] %s failed after %d of its frames went out: the output check will "
                                  "stop the run", video.video_id, batcher.released)
                ready = batcher.finish(video, failed)
                yield from (self._failed_video(video, event.error) if failed else self._finished_video(video, event))
                done.append(0 if failed else event.frames)
            yield from self._out(ready)
        yield from self._out(batcher.close())
        if self._progress:
            self._progress.record(*done)

    def _out(self, batches):
        for batch in batches:
            self._count["frames_dropped"].inc(sum(f.dropped for f in batch))
            yield FrameBatch(batch)

    def _finished_video(self, video: PlannedVideo, report: DecodeReport):
        if report.partial:
            self._count["videos_partial"].inc()
        self._count["videos_decoded"].inc()
        self._count["frames_decoded"].inc(report.frames)
        # How each video was decoded ("decode_path_skipping", "decode_path_full_<why>", "decode_path_exact"), and
        # how many packets fast mode sent to the decoder: summary.json's "decode_paths" keeps the speed claim honest.
        Metrics.counter("extract", f"decode_path_{report.path or 'unknown'}").inc()
        self._count["fast_packets_read"].inc(report.packets[0])
        self._count["fast_packets_decoded"].inc(report.packets[1])
        yield beam.pvalue.TaggedOutput(VIDEOS, dict(_video_row(video, report.frames,
                                                               "partial" if report.partial else "ok"),
                                                    warning=report.warning))
        if report.warning:
            logging.warning("[extract] %s: %s", video.video_id, report.warning)

    def _failed_video(self, video: PlannedVideo, error: str):
        self._count["videos_failed"].inc()
        yield beam.pvalue.TaggedOutput(FAILURES, {"path": video.path, "video_id": video.video_id, "error": error})
        yield beam.pvalue.TaggedOutput(VIDEOS, dict(_video_row(video, 0, "failed"), warning=None))
        logging.warning("[extract] %s could not be extracted: %s", video.video_id, error)


def _video_row(video: PlannedVideo, frames: int, status: str) -> dict:
    """A row of splits.csv (`reports.SPLITS`)."""
    return {"video_id": video.video_id, "group": video.group, "label": video.label, "split": video.split,
            "frames": frames, "status": status}


class DecodeFrames(beam.PTransform):
    """`packs.Pack` -> `FrameBatch`es (at most `batch_size` frames of the pack each, in pack order); tagged
    `failures` (rows of failures.jsonl) and `videos` (rows of splits.csv, with the video's warning).

    A pack's videos are decoded several at once (`processes` decoders; 0: one per core, see
    `isolated_decode.default_processes`), ahead of the model by a bounded number of frames, and its frames are
    batched in pack order: a frame's batch and everything keyed on it are functions of its pack (`pipeline.packs`),
    however packs are spread over workers and bundles.
    """

    def __init__(self, settings: DecodeSettings, jpeg_quality: int = 90, batch_size: int = 32, isolate: bool = True,
                 timeout: float = DEFAULT_DECODE_TIMEOUT, processes: int = 0, progress_dir: Optional[str] = None,
                 hold: int = 512):
        """isolate: decode in child processes (pipeline.isolated_decode), so a native crash or a hang fails one
        video instead of the worker; timeout: seconds without a frame before a hung decoder is stopped;
        batch_size: frames per batch, the featurizer's forward-pass size; progress_dir: a local folder where each
        finished video is counted (`pipeline.progress`); hold: frames of a pack that may wait for their videos to
        finish (`packs.PackBatcher`)."""
        super().__init__()
        self._fn = _DecodeFramesFn(settings, jpeg_quality, batch_size, isolate, timeout, processes, progress_dir,
                                   hold)

    def expand(self, packs):
        return packs | "Decode" >> beam.ParDo(self._fn).with_outputs(FAILURES, VIDEOS, main="frames")


class InceptionV3Handler(ModelHandler):
    """RunInference's model handler for InceptionV3 features.

    An example is one `FrameBatch` (at most `batch_size` frames of one pack, made by DecodeFrames), and its
    prediction is float32 features [n, 2048]. Each example is one forward pass,
    padded inside `run_inference` to a fixed shape (`features.padded_batch_size`). Beam's own batching is set to
    one example per call: it follows bundle boundaries, which vary between runs and runners, and a frame's
    features depend on the shape of its batch and its position in it (see `pipeline.features`).

    The model is one per process (`features.shared_featurizer`): RunInference's threads share it, and so do the
    pipelines of a chunked local run.
    """

    def __init__(self, weights: str, image_size: int, batch_size: int, accelerator: str = "",
                 precision: str = "float32"):
        super().__init__(min_batch_size=1, max_batch_size=1)
        self._weights, self._image_size, self._batch_size = weights, image_size, batch_size
        self._precision = precision
        self._accelerator = accelerator
        self._images = Metrics.counter("extract", "frames_featurized")
        self._batches = Metrics.counter("extract", "model_batches")
        self._padding = Metrics.counter("extract", "model_rows_padded")
        # The job's own timing (summary.json "timing"): forward-pass time, and when batches came out.
        self._model_ms = Metrics.distribution("extract", "model_ms")
        self._featurized_at = Metrics.distribution("extract", "featurized_at_ms")

    def load_model(self):
        from pipeline.features import shared_featurizer

        return shared_featurizer(self._weights, self._image_size, self._batch_size, self._precision)

    def run_inference(self, batch, model, inference_args=None):
        results = []
        for example in batch:
            frames = example.frames
            start = time.time()
            results.append(PredictionResult(example, model(np.stack([f.frame.rgb for f in frames]))))
            self._model_ms.update(int(1000 * (time.time() - start)))
            self._featurized_at.update(int(1000 * time.time()))
            self._images.inc(len(frames))
            self._batches.inc()
            # forward-pass rows spent on zero padding
            self._padding.inc(padded_batch_size(len(frames), self._batch_size) - len(frames))
        return results

    def get_num_bytes(self, batch) -> int:
        return sum(f.frame.rgb.nbytes for example in batch for f in example.frames)

    def get_resource_hints(self) -> dict:
        # Runners that do right fitting (Dataflow) run this step on accelerator workers and decoding and writing
        # on CPU workers; other runners ignore the hint.
        return {"accelerator": self._accelerator} if self._accelerator else {}

    def model_identifier(self) -> str:
        return f"inception_v3:{self._weights}:{self._image_size}:{self._batch_size}:{self._precision}"


class _EncodeFramesFn(_SetUpDoFn):
    """A frame batch's features -> frame examples (tagged `frames`: `KeyedRecord`s) and (video_id,
    `FrameFeatures`) (main output)."""

    _SET_UP = ("_encode", "_labels")

    def __init__(self, spec: schema.DatasetSpec, frame_split=None, frame_key=shards.sort_key):
        self._frame_key = frame_key
        self._spec = spec
        self._frame_split = frame_split

    def setup(self):
        self._encode = schema.ExampleEncoder(schema.frames_features(self._spec))
        self._labels = {name: i for i, name in enumerate(self._spec.class_names)}

    def process(self, result: PredictionResult):
        for (video, frame, dropped), vector in zip(result.example.frames, result.inference):
            if dropped:  # its video failed: computed with the others, never written
                continue
            example = self._encode({
                schema.IMAGE: io.BytesIO(frame.jpeg),
                schema.LABEL: self._labels[video.label],
                schema.VIDEO_ID: video.video_id,
                schema.GROUP: video.group,
                schema.FRAME_INDEX: frame.index,
                schema.TIMESTAMP: frame.timestamp,
            })
            split = self._frame_split(video.video_id, frame.index) if self._frame_split else video.split
            yield beam.pvalue.TaggedOutput(
                schema.FRAMES, KeyedRecord(split, self._frame_key(video.video_id, frame.index), example))
            yield video.video_id, FrameFeatures(frame.index, frame.timestamp, vector, video)


class FeaturizeFrames(beam.PTransform):
    """`FrameBatch`es -> (video_id, `FrameFeatures`); tagged `frames`: `KeyedRecord`s of frame examples."""

    def __init__(self, spec: schema.DatasetSpec, weights: str, image_size: int, batch_size: int,
                 frame_split=None, frame_key=shards.sort_key, accelerator: str = "", precision: str = "float32"):
        """frame_split: None, or a function (video_id, frame_index) -> split for the leaky --split_by=frame.
        frame_key: (video_id, frame_index) -> the frame's position key in frames/ (see dataformat.shards).
        accelerator: a Beam accelerator resource hint for the InceptionV3 step ('' for none).
        precision: the model's compute dtype, resolved by the launcher (`features.resolve_precision`)."""
        super().__init__()
        self._handler = InceptionV3Handler(weights, image_size, batch_size, accelerator, precision)
        self._encode = _EncodeFramesFn(spec, frame_split, frame_key)

    def expand(self, batches):
        # Batches are made per video by DecodeFrames, not by Beam (whose batches follow bundle boundaries and
        # vary between runs): a frame's forward pass is then the same on every run (see pipeline.features).
        # A fixed model_identifier, not RunInference's random one, keeps the step's description the same on
        # every run.
        features = batches | "InceptionV3" >> RunInference(self._handler,
                                                           model_identifier=self._handler.model_identifier())
        return features | "EncodeFrames" >> beam.ParDo(self._encode).with_outputs(schema.FRAMES, main="features")


class _FeatureRangeFn(beam.CombineFn):
    """The smallest and largest feature value of every video (`sequences.add_to_range`) -> the quantization."""

    def create_accumulator(self):
        return sequences.EMPTY_RANGE

    def add_input(self, accumulator, video):
        return sequences.add_to_range(accumulator, video)

    def merge_accumulators(self, accumulators):
        return sequences.merge_ranges(accumulators)

    def extract_output(self, accumulator):
        return sequences.quantization_of(accumulator)


class _EncodeSequenceFn(_SetUpDoFn):
    _SET_UP = ("_encode",)

    def __init__(self, spec: schema.DatasetSpec):
        self._spec = spec

    def setup(self):
        self._encode = schema.ExampleEncoder(schema.sequences_features(self._spec))

    def process(self, stacked: sequences.StackedVideo, quantization=None):
        try:
            encoded = sequences.encode_sequence(self._encode, self._spec, stacked, quantization)
        except sequences.NonFiniteFeatures as e:
            yield beam.pvalue.TaggedOutput(NON_FINITE, e.row)
            return
        if encoded.warning is not None:
            yield beam.pvalue.TaggedOutput(WARNINGS, encoded.warning)
        yield encoded.record


class StackVideos(beam.PTransform):
    """(video_id, `FrameFeatures`) -> `sequences.StackedVideo`s."""

    def expand(self, features):
        return features | "GroupByVideo" >> beam.GroupByKey() | "Stack" >> beam.Map(sequences.stack_video)


class Sequences(NamedTuple):
    """What `BuildSequences` returns."""

    examples: beam.PCollection  # `KeyedRecord`s of serialized sequence examples
    warnings: beam.PCollection  # {video_id, warning}: features stored saturated
    non_finite: beam.PCollection  # {video_id, error}: videos whose features hold NaN or Inf (never written)
    metadata: beam.PCollection  # one element: sequences/metadata.json's content (`schema.sequences_metadata`)


class BuildSequences(beam.PTransform):
    """(video_id, `FrameFeatures`) -> `Sequences`: every video's frames, in order, as one example.

    metadata holds each split's longest video and, for --feature_dtype=uint8, the quantization. uint8 features
    are quantized over the range of the whole dataset, so every video waits for that range (a global min/max)
    before it is encoded.
    """

    def __init__(self, spec: schema.DatasetSpec):
        super().__init__()
        self._spec = spec

    def expand(self, features) -> Sequences:
        videos = features | "StackVideos" >> StackVideos()
        longest = (videos
                   | "SplitLengths" >> beam.Map(_split_and_length)
                   | "LongestPerSplit" >> beam.CombinePerKey(max)
                   | "Longest" >> beam.combiners.ToDict())
        encode, side_inputs = _EncodeSequenceFn(self._spec), []
        if self._spec.feature_dtype == "uint8":
            side_inputs = [beam.pvalue.AsSingleton(videos | "FeatureRange" >> beam.CombineGlobally(_FeatureRangeFn()))]
        metadata = longest | "Metadata" >> beam.Map(schema.sequences_metadata, *side_inputs)
        encoded = videos | "Encode" >> beam.ParDo(encode, *side_inputs).with_outputs(WARNINGS, NON_FINITE,
                                                                                     main="sequences")
        return Sequences(encoded.sequences, encoded[WARNINGS], encoded[NON_FINITE], metadata)


def _split_and_length(stacked: sequences.StackedVideo) -> tuple[str, int]:
    return stacked.video.split, len(stacked.timestamps)
