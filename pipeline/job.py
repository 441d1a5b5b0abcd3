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
import math
import os
import re
import time
from typing import Optional, Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.metrics.metric import MetricsFilter

from dataformat import files, integrity, schema, shards
from dataformat.files import temporary_name, write_atomically
from dataformat.schema import FAILURES_JSONL, SPLITS_CSV, SUMMARY_JSON, WARNINGS_JSONL
from dataformat.shards import DEFAULT_SHARD_BYTES
from pipeline import chunks, transforms
from pipeline.decode import DEFAULT_DECODE_TIMEOUT, DecodeSettings
from pipeline.features import MIN_IMAGE_SIZE
from pipeline.sources import (Listing, class_names, compile_group_regex, list_videos_in_dir, read_manifest,
                              similar_labels)
from pipeline.transaction import STAGING_SUFFIX, OutputBusyError, OutputTransaction, differences, existing_output
from pipeline.splits import DEFAULT_SPLITS, assign_splits, parse_split_fractions
from pipeline.splits import frame_split as frame_split_of
from settings import check_choices, require, setting

# Frames a local runner holds at once (see pipeline.chunks): about 0.5 GiB at 75 px, 1.1 GiB at 299 px.
DEFAULT_CHUNK_FRAMES = 5000
MAX_FPS = 1000.0  # beyond any camera: every frame is sampled long before
MAX_IMAGE_SIZE = 4096


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

    overwrite: bool = setting(False, "Replace an existing extraction in --output_dir that was made with other "
                              "settings (one made with the same settings is replaced without it; a folder holding "
                              "anything else is never replaced).")

    def validate(self) -> None:
        """Raises ExtractionError naming the flag, and the values it takes, of the first setting that cannot work."""
        if not self.output_dir:
            raise ExtractionError("--output_dir is required")
        if bool(self.input_dir) == bool(self.manifest):
            raise ExtractionError("give exactly one of --input_dir (class-per-folder videos) or --manifest (CSV)")
        try:
            check_choices(self)
            require(math.isfinite(self.fps) and 0 < self.fps <= MAX_FPS, "fps", self.fps, f"a number in (0, {MAX_FPS}]")
            require(self.max_frames is None or self.max_frames >= 1, "max_frames", self.max_frames,
                    "at least 1 (leave it out for all frames)")
            require(MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE, "image_size", self.image_size,
                    f"{MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} (InceptionV3 needs at least {MIN_IMAGE_SIZE})")
            require(1 <= self.feature_batch_size <= 4096, "feature_batch_size", self.feature_batch_size, "1..4096")
            require(1 <= self.jpeg_quality <= 100, "jpeg_quality", self.jpeg_quality, "1..100")
            require(self.shard_bytes >= 1, "shard_bytes", self.shard_bytes, "a positive number of bytes")
            require(math.isfinite(self.decode_timeout) and self.decode_timeout > 0, "decode_timeout",
                    self.decode_timeout, "a positive number of seconds")
            require(self.chunk_frames is None or self.chunk_frames >= 0, "chunk_frames", self.chunk_frames,
                    ">= 0 (0: one pass)")
            parse_split_fractions(self.splits)
            compile_group_regex(self.group_regex)
        except ValueError as e:
            raise ExtractionError(str(e)) from None
        if self.input_dir:
            _check_folders(self.input_dir, self.output_dir)


def _check_folders(input_dir: str, output_dir: str) -> None:
    """An output folder that contains the input would be deleted with it when the new output replaces it."""
    real = (lambda p: p.rstrip("/")) if "://" in input_dir + output_dir else os.path.realpath
    source, target = real(input_dir), real(output_dir)
    if source == target or source.startswith(target.rstrip("/") + "/"):
        raise ExtractionError(f"--input_dir={input_dir} is inside --output_dir={output_dir}: replacing the output "
                              "would delete the videos. Choose an --output_dir outside the input folder")


def list_inputs(config: ExtractConfig) -> Listing:
    """The input videos of `config`, validated (see `pipeline.sources`); the output folder and its staging
    folder are never input, even when they lie inside --input_dir."""
    if config.input_dir:
        out = config.output_dir.rstrip("/")
        return list_videos_in_dir(config.input_dir, config.group_regex, exclude=[out, out + STAGING_SUFFIX])
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
        _ = sequences[transforms.NON_FINITE] | "WriteNonFinite" >> transforms.WriteReport(
            f"{out}/{transforms.NON_FINITE_JSONL}", transforms.NON_FINITE_REPORT)
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
        "folders_left_out": listing.ignored,
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
    warnings, non_finite = chunks.merge_sequences([f"{d}/{schema.SEQUENCES}" for d in spill_dirs],
                                                  f"{out}/{schema.SEQUENCES}", spec, config.shard_bytes)
    _refuse_non_finite(non_finite)
    chunks.merge_reports(spill_dirs, out, listing_problems, warnings)
    tf.io.gfile.rmtree(work)
    return dict(sorted(counters.items()))


def run_extraction(config: ExtractConfig, beam_args: Sequence[str] = ()) -> dict:
    """Runs one extraction end to end and returns its summary (also written to summary.json).

    The run is a transaction (`pipeline.transaction`): it holds the output folder's lock, writes into a staging
    folder beside it, and replaces the output only when everything was written. A run that fails leaves the
    previous output as it was.

    Args:
      config: what to extract and how.
      beam_args: Beam pipeline options (e.g. ['--runner=DataflowRunner', '--project=...']); defaults to the
        local DirectRunner.

    Raises:
      ExtractionError: bad settings, missing or empty input, an output folder that is busy or must not be
        replaced, a write that failed, or no video could be extracted.
      pipeline.sources.InputError: a manifest or folder problem, listing every bad line.
    """
    config.validate()
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
    assignment = assign_splits(by_group, parse_split_fractions(config.splits), config.split_salt)
    warnings = list(assignment.warnings) + similar_labels(spec.class_names)
    for w in warnings:
        logging.warning("[extract] %s", w)
    for ignored in listing.ignored:
        logging.warning("[extract] left out %s: %s", ignored["path"], ignored["reason"])
    logging.info("[extract] %d videos in %d classes, %d groups -> %s", len(listing.records),
                 len(spec.class_names), len({r.group for r in listing.records}), config.output_dir)
    plan = [dict(dataclasses.asdict(r), split=assignment.split_of_video[r.video_id]) for r in listing.records]
    transaction = OutputTransaction(config.output_dir)
    try:
        with transaction as staging:
            _check_replaceable(config)
            staged = dataclasses.replace(config, output_dir=staging)
            counters = _extract(staged, beam_args, listing, spec, plan)
            summary = summarize(staged, listing, spec, warnings, time.time() - start)
            summary.update(config=dataclasses.asdict(config), counters=counters)
            write_atomically(f"{staging}/{SUMMARY_JSON}", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
            if summary["extracted"] == 0:
                raise ExtractionError(
                    f"none of the {summary['inputs']} input files could be extracted; the reasons are in "
                    f"{staging}/{FAILURES_JSONL}. {config.output_dir} was not changed")
            transaction.publish()
    except OutputBusyError as e:
        raise ExtractionError(str(e)) from None
    except Exception as e:
        if not _is_storage_error(e):
            raise  # a bug: its traceback helps; the output is unchanged all the same
        # A full disk, a read-only folder, a quota: Beam re-raises a worker's error inside a RuntimeError.
        where = (f"; the incomplete files are in {transaction.staging} (the next run removes them)"
                 if tf.io.gfile.exists(transaction.staging) else "")
        # Beam's text is "module.SomeError: what [while running 'Step']": keep what.
        what = re.sub(r"^[\w.]+(Error|Exception): | \[while running .*\]$", "", str(e).strip().splitlines()[-1])
        raise ExtractionError(f"writing the extraction failed: {what}. {config.output_dir} was not "
                              f"changed{where}") from None
    return summary


_STORAGE_ERRORS = ("No space left on device", "File too large", "Permission denied", "Read-only file system",
                   "Disk quota exceeded")


def _is_storage_error(e: Exception) -> bool:
    return (isinstance(e, (OSError, tf.errors.OpError)) and not isinstance(e, FileNotFoundError)
            or any(text in str(e) for text in _STORAGE_ERRORS))


def _check_replaceable(config: ExtractConfig) -> None:
    """Refuses to replace what must not be replaced: a folder that is not an extraction, or an extraction made
    with other settings (unless --overwrite). The same settings again replace the output (a rerun)."""
    out = config.output_dir
    found = existing_output(out)
    if found == "other":
        raise ExtractionError(f"--output_dir={out} holds files that are not an extraction output; it is never "
                              "replaced. Choose a new or empty folder")
    if found == "incomplete":
        logging.warning("[extract] replacing %s: an incomplete extraction output (no summary.json)", out)
    if found != "extraction":
        return
    recorded = json.loads(files.read_text(f"{out}/{SUMMARY_JSON}")).get("config", {})
    changed = differences(recorded, dataclasses.asdict(config), integrity.EXECUTION_SETTINGS)
    if changed and not config.overwrite:
        raise ExtractionError(f"{out} holds an extraction made with other settings:\n  " + "\n  ".join(changed)
                              + "\nPass --overwrite to replace it, or choose another --output_dir to keep it")
    if changed:
        logging.warning("[extract] --overwrite: replacing %s, made with other settings (%s)", out, "; ".join(changed))


def _extract(config: ExtractConfig, beam_args: Sequence[str], listing: Listing, spec: schema.DatasetSpec,
             plan: list[dict]) -> dict:
    """Runs the pipeline(s) of `plan` into `config.output_dir` (the staging folder); returns Beam's counters."""
    out = config.output_dir
    for d in (f"{out}/{schema.FRAMES}", f"{out}/{schema.SEQUENCES}"):
        tf.io.gfile.makedirs(d)
    settings = DecodeSettings(fps=config.fps, max_frames=config.max_frames, image_size=config.image_size)
    options = PipelineOptions(list(beam_args))
    parts = _plan_chunks(config, options, plan, settings)
    if len(parts) > 1:
        return _run_chunked(options, config, settings, plan, parts, spec, listing.problems)
    counters = _run_pipeline(options, config, settings, plan, spec, listing.problems)
    report = f"{out}/{transforms.NON_FINITE_JSONL}"
    non_finite = files.read_jsonl(report)
    tf.io.gfile.remove(report)
    _refuse_non_finite(non_finite)
    return counters


def _refuse_non_finite(rows: Sequence[dict]) -> None:
    """NaN or Inf features are never written: the run stops before its output replaces anything."""
    if rows:
        shown = "\n  ".join(f"{r['video_id']}: {r['error']}" for r in sorted(rows, key=lambda r: r["video_id"])[:10])
        raise ExtractionError(
            f"InceptionV3 gave non-finite features for {len(rows)} video(s); nothing was written:\n  {shown}\n"
            "A broken or mismatched --weights file is the usual cause (or values beyond float32 in a custom one)")
