"""The Beam graph of one extraction (or of one chunk of a chunked run): which stages of `pipeline.transforms` run,
in what order, and where their outputs are written. `pipeline.job` runs it.

    packs.jsonl ─ DecodeFrames ─ FeaturizeFrames ─┬─ WriteFrames ─────────────────── frames/
                                                 └─ BuildSequences ─ WriteSequences sequences/
    (a chunk of a chunked run: SpillFrames, StackVideos ─ SpillSequences instead, see `pipeline.chunks`)
    failures, splits.csv rows and warnings ─ WriteReport ─ failures.jsonl, splits.csv, warnings.jsonl
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import apache_beam as beam

from dataformat import reports, schema, shards
from dataformat.schema import FAILURES_JSONL, SPLITS_CSV, WARNINGS_JSONL
from pipeline import sequences, transforms, writers
from pipeline.config import ExtractConfig
from pipeline.packs import Pack
from pipeline.splits import frame_split as frame_split_of

# Videos whose features are not finite, written by the pipeline into the staging folder: the job reads it and
# stops (an output with NaN is never published).
NON_FINITE_JSONL = "non_finite_features.jsonl"


def build_pipeline(p: beam.Pipeline, config: ExtractConfig, plan_path: str, spec: schema.DatasetSpec,
                   listing_problems: Sequence[dict], spill_dir: Optional[str] = None,
                   progress_dir: Optional[str] = None, precision: str = "float32") -> None:
    """Adds the extraction stages to `p` (see the module docstring): `plan_path` holds the packs
    (`pipeline.packs`), one per line; decode and featurize, then either the
    output (shards, metadata and reports in config.output_dir) or, with `spill_dir`, one chunk of a chunked run
    (`pipeline.chunks`: sorted spills and the chunk's reports; `listing_problems` are left to the merge)."""
    packs = (
        p
        | "ReadPlan" >> beam.io.ReadFromText(plan_path)
        | "ParsePlan" >> beam.Map(Pack.from_json)
        # Spread packs over workers before the expensive stages; without it a runner may fuse everything
        # into the single bundle that read the (one) plan file.
        | "Reshuffle" >> beam.Reshuffle()
    )
    decoded = packs | "DecodeFrames" >> transforms.DecodeFrames(
        config.decode_settings, config.jpeg_quality, config.feature_batch_size, config.isolate_decode,
        config.decode_timeout, config.decode_processes, progress_dir, pack_hold(config))
    frame_split = None
    if config.split_by == "frame":
        frame_split = functools.partial(frame_split_of, fractions=config.split_fractions, salt=config.split_salt)
    featurized = decoded.frames | "FeaturizeFrames" >> transforms.FeaturizeFrames(
        spec, config.weights, config.image_size, config.feature_batch_size, frame_split,
        shards.video_order_key if config.frame_order == "video" else shards.sort_key, config.featurize_accelerator,
        precision)
    if spill_dir is None:
        failures, warnings = _write_datasets(p, config, spec, featurized, decoded, listing_problems)
    else:
        failures, warnings = _write_spills(spill_dir, featurized, decoded)
    reports_dir = spill_dir or config.output_dir
    for name, rows, report, file_name in (("Failures", failures, reports.FAILURES, FAILURES_JSONL),
                                          ("SplitsCsv", decoded[transforms.VIDEOS], reports.SPLITS, SPLITS_CSV),
                                          ("Warnings", warnings, reports.WARNINGS, WARNINGS_JSONL)):
        _ = rows | f"Write{name}" >> writers.WriteReport(f"{reports_dir}/{file_name}", report)


def pack_hold(config: ExtractConfig) -> int:
    """Frames of a pack that may wait for their videos to finish (`packs.PackBatcher`): a pack's worth and more,
    so only a video far longer than its header declared streams out before it finished."""
    return 2 * max(config.pack_frames, config.feature_batch_size)


def _write_datasets(p, config: ExtractConfig, spec: schema.DatasetSpec, featurized, decoded,
                    listing_problems: Sequence[dict]):
    """frames/ and sequences/ in the output folder; returns the failures and warnings to report."""
    out = config.output_dir
    _ = featurized[schema.FRAMES] | "WriteFrames" >> writers.WriteShards(
        f"{out}/{schema.FRAMES}", schema.FRAMES, spec, config.shard_bytes)
    built = featurized.features | "BuildSequences" >> transforms.BuildSequences(spec)
    _ = built.examples | "WriteSequences" >> writers.WriteShards(
        f"{out}/{schema.SEQUENCES}", schema.SEQUENCES, spec, config.shard_bytes, built.metadata)
    _ = built.non_finite | "WriteNonFinite" >> writers.WriteReport(f"{out}/{NON_FINITE_JSONL}",
                                                                       reports.VIDEO_ERRORS)
    problems = p | "ListingProblems" >> beam.Create(list(listing_problems))
    failures = (decoded[transforms.FAILURES], problems) | "AllFailures" >> beam.Flatten()
    warnings = (decoded[transforms.VIDEOS], built.warnings) | "AllWarnings" >> beam.Flatten()
    return failures, warnings


def _write_spills(spill_dir: str, featurized, decoded):
    """One chunk's sorted spills (frame examples, stacked videos); returns the failures and warnings to report."""
    _ = featurized[schema.FRAMES] | "SpillFrames" >> writers.WriteSpills(f"{spill_dir}/{schema.FRAMES}")
    _ = (featurized.features | "StackVideos" >> transforms.StackVideos()
         | "SpillRecords" >> beam.Map(sequences.spill_record)
         | "SpillSequences" >> writers.WriteSpills(f"{spill_dir}/{schema.SEQUENCES}"))
    return decoded[transforms.FAILURES], decoded[transforms.VIDEOS]
