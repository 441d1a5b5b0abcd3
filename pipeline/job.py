"""The extraction job as a library: `run_extraction(ExtractConfig(...), beam_args)`.

Order of work: list the inputs and validate them (fast, in the launcher, so errors come before any heavy work),
plan (assign splits, `pipeline.plan`), take the output folder (`pipeline.transaction`), run the Beam pipeline
(`pipeline.graph`; in chunks on local runners, `pipeline.chunks`), summarise from the files the pipeline wrote,
reconcile, publish. The functions below come in that order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from typing import Callable, NamedTuple, Optional, Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from dataformat import files, integrity, schema
from dataformat.card import PROVENANCE, DatasetCard
from dataformat.files import WriteError, make_dirs, temporary_name, write_atomically
from dataformat.paths import is_remote
from dataformat.schema import FAILURES_JSONL, SUMMARY_JSON
from pipeline import chunks
from pipeline.beam_options import check_beam_args
from pipeline.config import DEFAULT_CHUNK_FRAMES, ExtractConfig, ExtractionError, canonical_splits
from pipeline.decode import DecodeError, check_decode_device
from pipeline.card import extraction_card
from pipeline.features import check_weights_load, resolve_precision, weights_provenance
from pipeline.graph import NON_FINITE_JSONL, build_pipeline
from pipeline.ownership import OutputContents
from pipeline.packs import Pack, make_packs, plan_packs
from pipeline.plan import PlannedVideo, plan_videos
from pipeline.progress import ProgressDisplay
from pipeline.reconcile import reconcile_output
from pipeline.manifest import read_manifest
from pipeline.sources import Listing, class_names, list_videos_in_dir
from pipeline.summary import batch_fill, beam_metrics, merge_distribution, summarize, timing
from pipeline.transaction import OutputError, OutputTransaction, differences, leave_out_own_files, own_paths
from pipeline.transaction import resolve_output_dir

__all__ = ["ExtractConfig", "ExtractionError", "run_extraction"]


def run_extraction(config: ExtractConfig, beam_args: Sequence[str] = (),
                   before_check: Optional[Callable[[str], None]] = None) -> dict:
    """Runs one extraction end to end and returns its summary (also written to summary.json).

    The run is a transaction (`pipeline.transaction`): it holds the output folder's lock, writes into a staging
    folder beside it, and replaces the output only when everything was written. A run that fails leaves the
    previous output as it was. Before publishing, every input is accounted for by name in what was written
    (`pipeline.reconcile`); a mismatch stops the run.

    Args:
      config: what to extract and how.
      beam_args: Beam pipeline options (e.g. ['--runner=DataflowRunner', '--project=...']); defaults to the
        local DirectRunner. An argument no PipelineOptions class knows is refused.
      before_check: called with the staging folder once the pipeline has written it, before it is summarised,
        checked and published (tests damage the output here to see the check stop the run).

    Raises:
      ExtractionError: bad settings, missing or empty input, an output folder that is busy or must not be
        replaced, a write that failed, or no video could be extracted.
      pipeline.sources.InputError: a manifest or folder problem, listing every bad line.
    """
    try:
        check_beam_args(beam_args)  # Beam would drop an unknown one with a logged warning and run without it
    except ValueError as e:
        raise ExtractionError(str(e)) from None
    start = time.time()
    listing = list_inputs(config)
    try:
        check_decode_device(config.decode_device, [r.path for r in listing.records])
    except DecodeError as e:
        raise ExtractionError(str(e)) from None
    precision = resolve_precision(config.precision)
    logging.info("[extract] InceptionV3 computes in %s (%s)", *precision)
    spec = schema.DatasetSpec(class_names=class_names(listing.records), feature_dtype=config.feature_dtype)
    spec = dataclasses.replace(spec, card=_dataset_card(config, spec.class_names, precision[0]))
    plan, warnings = plan_videos(listing, spec.class_names, config.split_fractions, config.split_salt,
                                 config.split_by)
    logging.info("[extract] %d videos in %d classes, %d groups -> %s", len(listing.records),
                 len(spec.class_names), len({r.group for r in listing.records}), config.output_dir)
    transaction = OutputTransaction(config.output_dir)
    try:
        with transaction as staging:
            _check_replaceable(config, transaction.previous, spec.card)
            staged = dataclasses.replace(config, output_dir=staging)
            counters, distributions = _extract(staged, beam_args, listing, spec, plan, precision[0])
            if before_check is not None:
                before_check(staging)
            checked = time.time()
            reconciliation = reconcile_output(staging, plan, listing.problems, config.split_by)
            summary = summarize(staging, config.split_by, listing, spec, warnings, time.time() - start)
            summary.update(config=dataclasses.asdict(config), counters=counters, batch_fill=batch_fill(counters),
                           precision={"compute": precision[0], "reason": precision[1]},
                           timing=dict(timing(counters, distributions, start),
                                       reconciliation_seconds=round(time.time() - checked, 3)),
                           reconciliation=reconciliation)
            write_atomically(f"{staging}/{SUMMARY_JSON}", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
            if summary["extracted"] == 0:
                raise ExtractionError(
                    f"none of the {summary['inputs']} input files could be extracted; the reasons are in "
                    f"{staging}/{FAILURES_JSONL}. {config.output_dir} was not changed")
            transaction.publish()
    except OutputError as e:
        raise ExtractionError(str(e)) from None
    except RuntimeError as e:  # a WriteError, raised here or by a worker (runners re-raise those as RuntimeError)
        failed = WriteError.raised_by_worker(e)
        if failed is None:
            raise  # a bug: its traceback helps; the output is unchanged all the same
        where = (f"; the incomplete files are in {transaction.staging} (the next run removes them)"
                 if tf.io.gfile.exists(transaction.staging) else "")
        raise ExtractionError(f"writing the extraction failed: {failed}. {config.output_dir} was not "
                              f"changed{where}") from None
    return summary


def _dataset_card(config: ExtractConfig, names, precision: str) -> DatasetCard:
    """The card written into both datasets' TFDS metadata (`pipeline.card`); hashes the weights file first, and
    loads a local one into InceptionV3 once (`features.check_weights_load`), so a file the workers could not load
    stops the job here."""
    try:
        weights = weights_provenance(config.weights)
        if weights["source"] == "file":
            started = time.time()
            check_weights_load(config.weights)
            logging.info("[extract] %s loads into InceptionV3 (checked in %.1f s)", config.weights,
                         time.time() - started)
    except ValueError as e:
        raise ExtractionError(str(e)) from None
    card = extraction_card(config, names, precision, weights)
    logging.info("[extract] TFDS dataset name %s (%s/sequences, %s/frames); weights: %s", card.name, card.name,
                 card.name, ", ".join(f"{k}={v}" for k, v in weights.items()))
    return card


def list_inputs(config: ExtractConfig) -> Listing:
    """The input videos of `config`, validated (see `pipeline.sources`); the output folder and everything the
    transaction makes beside it are never input, even when they lie inside --input_dir."""
    if config.input_dir:
        out = resolve_output_dir(config.output_dir)
        found = list_videos_in_dir(config.input_dir, config.group_regex, exclude=own_paths(out))
        return leave_out_own_files(found, out)
    return Listing(read_manifest(config.manifest, config.group_regex), [], [])


def _check_replaceable(config: ExtractConfig, previous: OutputContents, card: DatasetCard) -> None:
    """Refuses to replace an extraction made with other settings (unless --overwrite); the same settings again
    replace it (a rerun), as do settings that only describe the data (`integrity.DESCRIPTION_SETTINGS`). The
    settings include the content of the weights file (`_weights_change`), and --splits compares as fractions.
    The transaction has already refused a folder holding files no extraction wrote."""
    out = config.output_dir
    if previous.owned and not previous.complete:
        logging.warning("[extract] replacing %s: an incomplete extraction output (no summary.json)", out)
    if not previous.complete:
        return
    summary_path = f"{previous.root}/{SUMMARY_JSON}"
    try:
        recorded = json.loads(files.read_text(summary_path)).get("config", {})
    except (ValueError, AttributeError) as e:
        raise ExtractionError(f"{summary_path} is damaged ({e}), so the settings it was made with are unknown: "
                              "move that output away, or choose another --output_dir") from None
    if isinstance(recorded, dict) and isinstance(recorded.get("splits"), str):  # older outputs kept the spelling
        with contextlib.suppress(ValueError):
            recorded = dict(recorded, splits=canonical_splits(recorded["splits"]))
    changed = differences(recorded, dataclasses.asdict(config),
                          integrity.EXECUTION_SETTINGS | integrity.DESCRIPTION_SETTINGS)
    changed += _weights_change(previous.root, card.provenance["features"]["weights"], config.weights)
    if changed and not config.overwrite:
        raise ExtractionError(f"{out} holds an extraction made with other settings:\n  " + "\n  ".join(changed)
                              + "\nPass --overwrite to replace it, or choose another --output_dir to keep it")
    if changed:
        logging.warning("[extract] --overwrite: replacing %s, made with other settings (%s)", out, "; ".join(changed))


def _weights_change(root: str, weights: dict, flag: str) -> list[str]:
    """The weights file's content as a setting (--weights compares only its path): ['--weights ...'] when the
    output at `root` records (in its dataset card) another SHA-256 for the same source. An output that records
    none (made before the card, or its metadata unreadable) is unknown: not refused for it, which is logged."""
    if "sha256" not in weights:
        return []  # --weights=none: a seed, which is part of the tool's version
    path = f"{root}/{schema.SEQUENCES}/{schema.METADATA_FILES[-1]}"
    try:
        recorded = json.loads(files.read_text(path))[PROVENANCE]["features"]["weights"]
        recorded_source, recorded_sha256 = recorded["source"], recorded.get("sha256")
        if recorded_source == weights["source"] and not isinstance(recorded_sha256, str):
            raise KeyError("sha256")
    except (ValueError, KeyError, TypeError, tf.errors.OpError):
        logging.warning("[extract] %s records no SHA-256 of the weights file it was made with (made before "
                        "the dataset card?): its content cannot be compared, only the --weights path", root)
        return []
    if recorded_source != weights["source"] or recorded_sha256 == weights["sha256"]:
        return []  # another source shows as --weights itself
    return [f"--weights={flag}: the file's content changed (SHA-256 {str(recorded_sha256)[:16]}... there, "
            f"{weights['sha256'][:16]}... now)"]


class _Run(NamedTuple):
    """What every pipeline of one extraction shares."""

    config: ExtractConfig  # output_dir is the staging folder
    options: PipelineOptions
    spec: schema.DatasetSpec
    listing_problems: Sequence[dict]
    precision: str  # resolved by the launcher (`features.resolve_precision`)
    progress_dir: Optional[str]


def _extract(config: ExtractConfig, beam_args: Sequence[str], listing: Listing, spec: schema.DatasetSpec,
             plan: list[PlannedVideo], precision: str) -> tuple[dict, dict]:
    """Runs the pipeline(s) of `plan` into `config.output_dir` (the staging folder), InceptionV3 computing in
    `precision`; returns Beam's counters and distributions."""
    out = config.output_dir
    for d in (f"{out}/{schema.FRAMES}", f"{out}/{schema.SEQUENCES}"):
        make_dirs(d)
    options = PipelineOptions(list(beam_args))
    parts = _plan_chunks(config, options, plan)  # the packs of each chunk
    # Workers count finished videos in local files that this process shows as one line (`pipeline.progress`).
    progress_dir = f"{out}/.progress" if not is_remote(out) and _is_local(options) else None
    run = _Run(config, options, spec, listing.problems, precision, progress_dir)
    with ProgressDisplay(progress_dir, len(plan)) if progress_dir else contextlib.nullcontext():
        metrics = _run_chunked(run, parts) if len(parts) > 1 else _run_pipeline(run, parts[0])
    if progress_dir:
        tf.io.gfile.rmtree(progress_dir)
    if len(parts) == 1:
        report = f"{out}/{NON_FINITE_JSONL}"
        non_finite = files.read_jsonl(report)
        tf.io.gfile.remove(report)
        _refuse_non_finite(non_finite)
    return metrics


def _plan_chunks(config: ExtractConfig, options: PipelineOptions, plan: Sequence[PlannedVideo]) -> list[list[Pack]]:
    """The plan's packs (`pipeline.packs`, made from the whole plan, so they are the same whatever the chunks and
    the runner), in chunks (`pipeline.chunks`: runs of whole packs): one on distributed runners unless
    --chunk_frames is given; on local runners as many as keep about --chunk_frames frames in memory. Warns at the
    start when even that will not fit in this machine's available memory."""
    local = _is_local(options)
    chunk_frames = config.chunk_frames if config.chunk_frames is not None else (
        DEFAULT_CHUNK_FRAMES if local else 0)
    if not plan:
        return [[]]
    if not (local or chunk_frames or config.pack_frames):
        return [make_packs(plan, plan_packs([0] * len(plan), 0))]
    estimates = chunks.estimate_frames([video.path for video in plan], config.decode_settings)
    ranges = plan_packs(estimates, config.pack_frames)
    packs = make_packs(plan, ranges)
    pack_estimates = [sum(estimates[i] for i in r) for r in ranges]
    parts = chunks.plan_chunks(pack_estimates, chunk_frames) if chunk_frames else [range(len(packs))]
    held = max(sum(pack_estimates[i] for i in part) for part in parts)
    problem = chunks.fits_in_memory(held, config.image_size, _available_memory()) if local or chunk_frames else None
    if problem:
        logging.warning(
            "[extract] this job will probably run out of memory: %s. Lower --chunk_frames (now %s: frames held at "
            "once) or run it on a distributed runner (docs/running_at_scale.md).", problem, chunk_frames)
    logging.info("[extract] about %d frames to extract in %d packs (--pack_frames=%d), %s", sum(estimates),
                 len(packs), config.pack_frames, "one pass" if len(parts) == 1 else
                 f"{len(parts)} chunks of at most about {chunk_frames} frames (--chunk_frames)")
    return [[packs[i] for i in part] for part in parts]


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


def _run_pipeline(run: _Run, packs: Sequence[Pack], spill_dir: Optional[str] = None) -> tuple[dict, dict]:
    """Runs the extraction pipeline over `packs`; returns its counters and distributions (`summary.beam_metrics`)."""
    plan_path = temporary_name(f"{spill_dir or run.config.output_dir}/packs.jsonl")
    write_atomically(plan_path, "".join(pack.to_json() + "\n" for pack in packs))
    try:
        p = beam.Pipeline(options=run.options)
        build_pipeline(p, run.config, plan_path, run.spec, () if spill_dir else run.listing_problems, spill_dir,
                       run.progress_dir, run.precision)
        result = p.run()
        result.wait_until_finish()
    finally:
        tf.io.gfile.remove(plan_path)
    return beam_metrics(result)


def _run_chunked(run: _Run, parts: list[list[Pack]]) -> tuple[dict, dict]:
    """One pipeline per chunk (a run of packs), each spilling into its own folder, then the merge
    (`pipeline.chunks`)."""
    config, spec = run.config, run.spec
    out = config.output_dir
    work = temporary_name(f"{out}/chunks")  # removed by the next run if this one is killed
    spill_dirs = [f"{work}/{i:05d}" for i in range(len(parts))]
    counters: dict = {}
    distributions: dict = {}
    for i, (part, spill_dir) in enumerate(zip(parts, spill_dirs)):
        logging.info("[extract] chunk %d/%d: %d videos", i + 1, len(parts), sum(len(p.videos) for p in part))
        for name in schema.DATASET_KINDS:
            make_dirs(f"{spill_dir}/{name}")
        chunk_counters, chunk_distributions = _run_pipeline(run, part, spill_dir)
        for name, value in chunk_counters.items():
            counters[name] = counters.get(name, 0) + value
        for name, value in chunk_distributions.items():
            merge_distribution(distributions, name, value)
    logging.info("[extract] merging %d chunks into %s", len(parts), out)
    chunks.merge_frames([f"{d}/{schema.FRAMES}" for d in spill_dirs], f"{out}/{schema.FRAMES}", spec,
                        config.shard_bytes)
    warnings, non_finite = chunks.merge_sequences([f"{d}/{schema.SEQUENCES}" for d in spill_dirs],
                                                  f"{out}/{schema.SEQUENCES}", spec, config.shard_bytes)
    _refuse_non_finite(non_finite)
    chunks.merge_reports(spill_dirs, out, run.listing_problems, warnings)
    tf.io.gfile.rmtree(work)
    return dict(sorted(counters.items())), distributions


def _refuse_non_finite(rows: Sequence[dict]) -> None:
    """NaN or Inf features are never written: the run stops before its output replaces anything."""
    if rows:
        shown = "\n  ".join(f"{r['video_id']}: {r['error']}" for r in sorted(rows, key=lambda r: r["video_id"])[:10])
        raise ExtractionError(
            f"InceptionV3 gave non-finite features for {len(rows)} video(s); nothing was written:\n  {shown}\n"
            "A broken or mismatched --weights file is the usual cause (or values beyond float32 in a custom one)")
