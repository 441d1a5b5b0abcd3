"""The extraction job as a library: `run_extraction(ExtractConfig(...), beam_args)`.

Order of work: list the inputs and validate them (fast, in the launcher, so errors come before any heavy work),
assign splits, write the plan, run the Beam pipeline, then summarise from the files the pipeline wrote.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import time
from typing import Optional, Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.metrics.metric import MetricsFilter

from dataformat import files, schema, shards
from dataformat.files import remove_stale_temporaries, temporary_name, write_atomically
from dataformat.schema import FAILURES_JSONL, SPLITS_CSV, SUMMARY_JSON, WARNINGS_JSONL
from dataformat.shards import DEFAULT_SHARD_BYTES
from pipeline import chunks, transforms
from pipeline.decode import DEFAULT_DECODE_TIMEOUT, DecodeSettings
from pipeline.features import MIN_IMAGE_SIZE
from pipeline.sources import Listing, class_names, list_videos_in_dir, read_manifest
from pipeline.splits import DEFAULT_SPLITS, assign_splits, parse_split_fractions
from pipeline.splits import frame_split as frame_split_of
from settings import check_choices, setting

# Frames a local runner holds at once (see pipeline.chunks): about 0.5 GiB at 75 px, 1.1 GiB at 299 px.
DEFAULT_CHUNK_FRAMES = 5000


class ExtractionError(RuntimeError):
    """The job cannot run or produced nothing usable; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """Settings of one extraction; each is a flag of `pipeline.extract` (see `settings`)."""

    output_dir: str = setting(help="Where frames/, sequences/, splits.csv, failures.jsonl and summary.json go "
                              "(local or gs://).")
    input_dir: Optional[str] = setting(None, "Folder with one subfolder per class (like Keras' "
                                       "image_dataset_from_directory); every file below a class folder is an input.")
    manifest: Optional[str] = setting(None, "Instead of --input_dir: a CSV with header `path,label[,group]`; "
                                      "relative paths are relative to the manifest's folder.")
    group_regex: Optional[str] = setting(
        None, "Regex searched in each video's path relative to the input root; its first capture group (or whole "
        "match) is the recording group, e.g. `_g(\\d+)_` for UCF101, `^([^/]+/s\\d+)_` for the samples. Every "
        "video of a group lands in one split.", shown_default="each video is its own group")
    fps: float = setting(1.0, "Frames sampled per second of video, by presentation time (YouTube-8M uses 1).")
    max_frames: Optional[int] = setting(None, "Keep at most this many sampled frames per video.", shown_default="all")
    image_size: int = setting(299, f"Frames are resized to a square of this size (InceptionV3 needs at least "
                              f"{MIN_IMAGE_SIZE}).")
    features: str = setting("inception_v3", "Frame feature extractor.", choices=("inception_v3",))
    weights: str = setting("imagenet", "`imagenet` (downloaded once by Keras), `none` (random, for tests) or the "
                           "path of an InceptionV3 no-top weights file (.h5 / .weights.h5) for offline machines.")
    feature_dtype: str = setting(
        "float16", "Storage dtype of the features. float16 halves sequences/ on disk and the LSTM's accuracy did "
        "not change (scripts/bench.py, storage); uint8 quarters it, quantized over the dataset's range (README, "
        "'Output format'); float32 for features beyond float16's range (65504).",
        choices=tuple(sorted(schema.FEATURE_DTYPES)))
    feature_batch_size: int = setting(32, "Frames per InceptionV3 forward pass.")
    splits: str = setting(DEFAULT_SPLITS, "Split names and fractions of recording groups.")
    split_salt: str = setting("", "Salt of the group hash: another salt draws another (equally valid) split.")
    split_by: str = setting("group", "group: every video of a group in one split (the right way). frame: LEAKY, "
                            "for demonstrating story 002 only: frames/ is split frame by frame.",
                            choices=("group", "frame"))
    frame_order: str = setting("hashed", "Order of frames/ records: hashed (frames of a video spread over shards "
                               "and positions) or video (each video's frames together, in order, like a naive "
                               "writer; to study story 002 with training.inspect_order).", choices=("hashed", "video"))
    shard_bytes: int = setting(DEFAULT_SHARD_BYTES, "Target size of one TFRecord shard in bytes.",
                               shown_default="128 MiB")
    jpeg_quality: int = setting(90, "JPEG quality of the frames in frames/ (1-100).")
    featurize_accelerator: str = setting(
        "", "A Beam accelerator resource hint for the InceptionV3 step only, e.g. "
        "`type:nvidia-tesla-t4;count:1;install-nvidia-driver`: on Dataflow, GPU workers featurize while CPU workers "
        "decode and write. Ignored by local runners.")
    isolate_decode: bool = setting(True, "Decode each worker's videos in a child process, so a crash or hang in "
                                   "FFmpeg's native code fails that one video (failures.jsonl), not the job.")
    decode_timeout: float = setting(DEFAULT_DECODE_TIMEOUT, "Seconds without a decoded frame before a hung decoder "
                                    "is stopped (with --isolate_decode).")
    chunk_frames: Optional[int] = setting(
        None, "A local runner holds a pipeline's data in memory: the videos are extracted in chunks of about this "
        "many sampled frames (estimated from their declared durations) and merged into the bytes one pass writes, "
        "so memory stays bounded whatever the dataset's size; a job that will not fit says so at the start. 0: one "
        f"pass. About 0.5 GiB at 75 px, 1.1 GiB at 299 px per {DEFAULT_CHUNK_FRAMES} frames.",
        shown_default=f"{DEFAULT_CHUNK_FRAMES} on the DirectRunner, one pass elsewhere")

    def validate(self) -> None:
        """Raises ExtractionError naming the flag of the first setting that cannot work."""
        if not self.output_dir:
            raise ExtractionError("--output_dir is required")
        try:
            check_choices(self)
        except ValueError as e:
            raise ExtractionError(str(e)) from None
        if bool(self.input_dir) == bool(self.manifest):
            raise ExtractionError("give exactly one of --input_dir (class-per-folder videos) or --manifest (CSV)")
        if self.image_size < MIN_IMAGE_SIZE:
            raise ExtractionError(f"--image_size={self.image_size}: InceptionV3 needs at least {MIN_IMAGE_SIZE}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ExtractionError(f"--jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.shard_bytes < 1:
            raise ExtractionError(f"--shard_bytes must be positive, got {self.shard_bytes}")
        if self.chunk_frames is not None and self.chunk_frames < 0:
            raise ExtractionError(f"--chunk_frames must be >= 0 (0: one pass), got {self.chunk_frames}")


def list_inputs(config: ExtractConfig) -> Listing:
    """The input videos of `config`, validated (see `pipeline.sources`)."""
    if config.input_dir:
        return list_videos_in_dir(config.input_dir, config.group_regex)
    return Listing(read_manifest(config.manifest, config.group_regex), [], [])


def build_pipeline(p: beam.Pipeline, config: ExtractConfig, settings: DecodeSettings, plan_path: str,
                   total_videos: int, spec: schema.DatasetSpec, listing_problems: Sequence[dict],
                   spill_dir: Optional[str] = None) -> None:
    """Adds the extraction stages to `p` (see the diagram in `pipeline.transforms`).

    With `spill_dir`, the pipeline is one chunk of a chunked run (`pipeline.chunks`): it writes its sorted
    spills and reports there instead of the output's shards, and `listing_problems` are left to the merge.
    """
    out = config.output_dir
    records = (
        p
        | "ReadPlan" >> beam.io.ReadFromText(plan_path)
        | "ParsePlan" >> beam.Map(json.loads)
        # Spread videos over workers before the expensive stages; without it a runner may fuse everything
        # into the single bundle that read the (one) plan file.
        | "Reshuffle" >> beam.Reshuffle()
    )
    decoded = records | "DecodeFrames" >> transforms.DecodeFrames(settings, total_videos, config.jpeg_quality,
                                                                  config.isolate_decode, config.decode_timeout,
                                                                  config.feature_batch_size)
    frame_split = None
    if config.split_by == "frame":
        frame_split = functools.partial(frame_split_of, fractions=parse_split_fractions(config.splits),
                                        salt=config.split_salt)
    featurized = decoded.frames | "FeaturizeFrames" >> transforms.FeaturizeFrames(
        spec, config.weights, config.image_size, config.feature_batch_size, frame_split,
        shards.video_order_key if config.frame_order == "video" else shards.sort_key, config.featurize_accelerator)
    if spill_dir is not None:
        _ = featurized[schema.FRAMES] | "SpillFrames" >> transforms.WriteSpills(f"{spill_dir}/{schema.FRAMES}")
        _ = (featurized.features | "StackVideos" >> transforms.StackVideos()
             | "SpillRecords" >> beam.Map(chunks.stacked_video_record)
             | "SpillSequences" >> transforms.WriteSpills(f"{spill_dir}/{schema.SEQUENCES}"))
        reports_dir, failures, warnings = spill_dir, decoded[transforms.FAILURES], decoded[transforms.VIDEOS]
    else:
        _ = featurized[schema.FRAMES] | "WriteFrames" >> transforms.WriteShards(
            f"{out}/{schema.FRAMES}", schema.FRAMES, spec, config.shard_bytes)
        build_sequences = transforms.BuildSequences(spec)
        sequences = featurized.features | "BuildSequences" >> build_sequences
        _ = sequences.sequences | "WriteSequences" >> transforms.WriteShards(
            f"{out}/{schema.SEQUENCES}", schema.SEQUENCES, spec, config.shard_bytes, build_sequences.metadata)
        problems = p | "ListingProblems" >> beam.Create(list(listing_problems))
        reports_dir = out
        failures = (decoded[transforms.FAILURES], problems) | "AllFailures" >> beam.Flatten()
        warnings = ((decoded[transforms.VIDEOS], sequences[transforms.WARNINGS])
                    | "AllWarnings" >> beam.Flatten())
    _ = failures | "WriteFailures" >> transforms.WriteReport(f"{reports_dir}/{FAILURES_JSONL}",
                                                             transforms.FAILURES_REPORT)
    _ = decoded[transforms.VIDEOS] | "WriteSplitsCsv" >> transforms.WriteReport(f"{reports_dir}/{SPLITS_CSV}",
                                                                                transforms.SPLITS_REPORT)
    _ = warnings | "WriteWarnings" >> transforms.WriteReport(f"{reports_dir}/{WARNINGS_JSONL}",
                                                             transforms.WARNINGS_REPORT)


def summarize(config: ExtractConfig, listing: Listing, spec: schema.DatasetSpec, split_warnings: Sequence[str],
              wall_seconds: float) -> dict:
    """Builds summary.json from the files the pipeline wrote (so it is right on any runner)."""
    out = config.output_dir
    rows = files.read_csv(f"{out}/{SPLITS_CSV}")
    failures = files.read_jsonl(f"{out}/{FAILURES_JSONL}")
    warnings = files.read_jsonl(f"{out}/{WARNINGS_JSONL}")
    splits: dict = {}
    groups = collections.defaultdict(set)
    for row in rows:
        if row["status"] == "failed":
            continue
        s = splits.setdefault(row["split"], {"videos": 0, "frames": 0, "groups": 0, "classes": {}})
        c = s["classes"].setdefault(row["label"], {"videos": 0, "frames": 0})
        for d in (s, c):
            d["videos"] += 1
            d["frames"] += int(row["frames"])
        groups[row["split"]].add(row["group"])
    for split, s in splits.items():
        s["groups"] = len(groups[split])
    extracted = sum(s["videos"] for s in splits.values())
    frames = sum(s["frames"] for s in splits.values())
    if config.split_by == "frame":  # frames/ is split frame by frame: count it from its own metadata
        import tensorflow_datasets as tfds

        frame_splits = tfds.builder_from_directory(f"{out}/{schema.FRAMES}").info.splits
        for split, s in splits.items():
            s["frames"] = frame_splits[split].num_examples if split in frame_splits else 0
    return {
        "inputs": len(listing.records) + len(listing.problems),
        "extracted": extracted,
        "failed": len(failures),
        "kept_with_warning": len(warnings),
        "frames": frames,
        "splits": dict(sorted(splits.items())),
        "class_names": list(spec.class_names),
        "split_warnings": list(split_warnings),
        "warnings": warnings,
        "hidden_files_ignored": listing.hidden,
        "wall_seconds": round(wall_seconds, 3),
        "frames_per_second": round(frames / wall_seconds, 3) if wall_seconds > 0 else None,
        "split_by": config.split_by,
        "format_version": schema.FORMAT_VERSION,
        "config": dataclasses.asdict(config),
    }


def _counters(result) -> dict:
    """The pipeline's `extract` counters (committed values; runners that do not report metrics give {})."""
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace("extract"))["counters"]
    except (NotImplementedError, KeyError):  # not every runner reports metrics
        return {}
    totals: dict = {}
    for c in counters:
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + (c.committed or 0)
    return dict(sorted(totals.items()))


def format_summary(summary: dict) -> str:
    """A short table of videos/frames per split and class, for the end of a run."""
    classes = summary["class_names"]
    header = ["split", "videos", "frames", "groups"] + [f"{c} (videos)" for c in classes]
    rows = [header]
    for split, s in summary["splits"].items():
        rows.append([split, s["videos"], s["frames"], s["groups"]]
                    + [s["classes"].get(c, {}).get("videos", 0) for c in classes])
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.append(
        f"inputs {summary['inputs']} = extracted {summary['extracted']} + failed {summary['failed']}; "
        f"kept with a warning {summary['kept_with_warning']}; {summary['frames']} frames in "
        f"{summary['wall_seconds']:.1f} s ({summary['frames_per_second']} frames/s end to end)")
    lines += [f"warning: {w}" for w in summary["split_warnings"]]
    return "\n".join(lines)


def _is_local(options: PipelineOptions) -> bool:
    """Whether the job runs on Beam's in-process runner (the default), which holds every PCollection in memory."""
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__ if runner is not None else ""
    return not name or "direct" in name.lower()


def _available_memory() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def _plan_chunks(config: ExtractConfig, options: PipelineOptions, plan: list[dict],
                 settings: DecodeSettings) -> list[range]:
    """The plan's chunks (`pipeline.chunks`): one on distributed runners unless --chunk_frames is given; on local
    runners as many as keep about --chunk_frames frames in memory. Warns at the start when even that will not
    fit in this machine's available memory."""
    local = _is_local(options)
    chunk_frames = config.chunk_frames if config.chunk_frames is not None else (
        DEFAULT_CHUNK_FRAMES if local else 0)
    if not plan or not (local or chunk_frames):
        return [range(len(plan))]
    estimates = chunks.estimate_frames([r["path"] for r in plan], settings)
    total = sum(estimates)
    parts = chunks.plan_chunks(estimates, chunk_frames) if chunk_frames else [range(len(plan))]
    held = max(sum(estimates[i] for i in part) for part in parts)
    problem = chunks.fits_in_memory(held, config.image_size, _available_memory())
    if problem:
        logging.warning(
            "[extract] this job will probably run out of memory: %s. Lower --chunk_frames (now %s: frames held at "
            "once) or run it on a distributed runner (docs/running_at_scale.md).", problem, chunk_frames)
    logging.info("[extract] about %d frames to extract in %s", total,
                 "one pass" if len(parts) == 1 else f"{len(parts)} chunks of at most about {chunk_frames} frames "
                 "(--chunk_frames)")
    return parts


def _run_pipeline(options: PipelineOptions, config: ExtractConfig, settings: DecodeSettings, plan: list[dict],
                  spec: schema.DatasetSpec, listing_problems: Sequence[dict],
                  spill_dir: Optional[str] = None) -> dict:
    """Runs the extraction pipeline over `plan`; returns its counters."""
    plan_path = temporary_name(f"{spill_dir or config.output_dir}/plan.jsonl")
    write_atomically(plan_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in plan))
    try:
        p = beam.Pipeline(options=options)
        build_pipeline(p, config, settings, plan_path, len(plan), spec, listing_problems, spill_dir)
        result = p.run()
        result.wait_until_finish()
    finally:
        tf.io.gfile.remove(plan_path)
    return _counters(result)


def _run_chunked(options: PipelineOptions, config: ExtractConfig, settings: DecodeSettings, plan: list[dict],
                 parts: list[range], spec: schema.DatasetSpec, listing_problems: Sequence[dict]) -> dict:
    """One pipeline per chunk of `plan`, each spilling into its own folder, then the merge (`pipeline.chunks`)."""
    out = config.output_dir
    work = temporary_name(f"{out}/chunks")  # removed by the next run if this one is killed
    spill_dirs = [f"{work}/{i:05d}" for i in range(len(parts))]
    counters: dict = {}
    for i, (part, spill_dir) in enumerate(zip(parts, spill_dirs)):
        logging.info("[extract] chunk %d/%d: %d videos", i + 1, len(parts), len(part))
        for name in schema.DATASET_NAMES:
            tf.io.gfile.makedirs(f"{spill_dir}/{name}")
        for name, value in _run_pipeline(options, config, settings, [plan[j] for j in part], spec, (),
                                         spill_dir).items():
            counters[name] = counters.get(name, 0) + value
    logging.info("[extract] merging %d chunks into %s", len(parts), out)
    chunks.merge_frames([f"{d}/{schema.FRAMES}" for d in spill_dirs], f"{out}/{schema.FRAMES}", spec,
                        config.shard_bytes)
    warnings = chunks.merge_sequences([f"{d}/{schema.SEQUENCES}" for d in spill_dirs], f"{out}/{schema.SEQUENCES}",
                                      spec, config.shard_bytes)
    chunks.merge_reports(spill_dirs, out, listing_problems, warnings)
    tf.io.gfile.rmtree(work)
    return dict(sorted(counters.items()))


def run_extraction(config: ExtractConfig, beam_args: Sequence[str] = ()) -> dict:
    """Runs one extraction end to end and returns its summary (also written to summary.json).

    Args:
      config: what to extract and how.
      beam_args: Beam pipeline options (e.g. ['--runner=DataflowRunner', '--project=...']); defaults to the
        local DirectRunner.

    Raises:
      ExtractionError: bad settings, missing or empty input, or no video could be extracted.
      pipeline.sources.InputError: a manifest or folder problem, listing every bad line.
    """
    config.validate()
    try:
        fractions = parse_split_fractions(config.splits)
        settings = DecodeSettings(fps=config.fps, max_frames=config.max_frames, image_size=config.image_size)
    except ValueError as e:
        raise ExtractionError(str(e)) from None
    start = time.time()
    listing = list_inputs(config)
    spec = schema.DatasetSpec(class_names=class_names(listing.records), feature_dtype=config.feature_dtype)
    by_group = listing.records
    if config.split_by == "frame":
        logging.warning("[extract] --split_by=frame is LEAKY: neighbouring frames of one video land in different "
                        "splits of frames/, so validation accuracy is inflated. Use it only to demonstrate the "
                        "effect; sequences/ is split by video.")
        # sequences/ is split by video: each video is its own unit of assignment (the written group is kept).
        by_group = [dataclasses.replace(r, group=r.video_id) for r in by_group]
    assignment = assign_splits(by_group, fractions, config.split_salt)
    for w in assignment.warnings:
        logging.warning("[extract] %s", w)
    logging.info("[extract] %d videos in %d classes, %d groups -> %s", len(listing.records),
                 len(spec.class_names), len({r.group for r in listing.records}), config.output_dir)

    out = config.output_dir
    for d in (out, f"{out}/{schema.FRAMES}", f"{out}/{schema.SEQUENCES}"):
        tf.io.gfile.makedirs(d)
        for stale in remove_stale_temporaries(d):
            logging.info("[extract] removed a temporary file left by an interrupted run: %s", stale)
    plan = [dict(dataclasses.asdict(r), split=assignment.split_of_video[r.video_id]) for r in listing.records]
    options = PipelineOptions(list(beam_args))
    parts = _plan_chunks(config, options, plan, settings)
    if len(parts) == 1:
        counters = _run_pipeline(options, config, settings, plan, spec, listing.problems)
    else:
        counters = _run_chunked(options, config, settings, plan, parts, spec, listing.problems)
    summary = summarize(config, listing, spec, assignment.warnings, time.time() - start)
    summary["counters"] = counters
    write_atomically(f"{out}/{SUMMARY_JSON}", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    if summary["extracted"] == 0:
        raise ExtractionError(
            f"none of the {summary['inputs']} input files could be extracted; the reasons are in "
            f"{out}/{FAILURES_JSONL}")
    return summary
