"""Every input accounted for, by name, before an extraction is published.

"Nothing is lost" should not rest on every code path of the pipeline being right (decoders in child processes,
threads, worker processes, retried bundles, the chunked merge). So before the staging folder replaces the
output, the job reads what was written and checks it against the plan, input by input:

- every planned video has exactly one row in splits.csv, with its label, group and split, and a known status;
  nothing else has a row;
- every `failed` row has its reason in failures.jsonl, and so has every input the listing left out (a file
  outside a class folder, a FIFO, a second link to one file); failures.jsonl names nothing else, each once;
- every extracted (`ok`, `partial`) video has as many records in frames/ as splits.csv says, frame indices
  0..n-1 once each, in its split (unless --split_by=frame), and exactly one record in sequences/ of that
  length; failed videos and names that were not inputs have none.

The shards are read back, video id and frame index only (`tf.io.parse_example` skips the images and the
features without decoding them): the counts the pipeline keeps itself (Beam counters, dataset_info.json's shard
lengths) are totals, which cannot name the video concerned, and come from the same code the check is there to
doubt. Reading costs a small fraction of the extraction (BUILD_NOTES, Reliability). Any mismatch stops the run
before the swap, naming the inputs concerned; the previous output stays as it was.
"""

from __future__ import annotations

import array
import collections
from typing import Sequence

import tensorflow as tf

from dataformat import files, schema
from dataformat.schema import FAILURES_JSONL, SPLITS_CSV
from pipeline.config import ExtractionError
from pipeline.plan import PlannedVideo

# The statuses splits.csv may hold: extracted whole, extracted with frames lost, not extracted.
EXTRACTED_STATUSES = ("ok", "partial")
FAILED = "failed"
# Mismatches listed in the error message (all are counted).
SHOWN_PROBLEMS = 50
_READ_BATCH = 4096


class ReconciliationError(ExtractionError):
    """What was written does not account for every input; the message names each input concerned."""


def reconcile_output(out: str, plan: Sequence[PlannedVideo], listing_problems: Sequence[dict], split_by: str) -> dict:
    """Checks the extraction written in `out` against its inputs (see the module docstring).

    Args:
      out: the (staging) output folder.
      plan: the planned videos.
      listing_problems: the inputs the listing left out, {path, video_id, error} each (failures.jsonl rows).
      split_by: 'video' or 'frame' (then frames/ splits are per frame and not compared with splits.csv).

    Returns:
      summary.json's "reconciliation": passed and what was checked (counts); the same for the same inputs, so
      reruns write the same record (the seconds it took are the job's to time: summary.json "timing").

    Raises:
      ReconciliationError: listing every mismatch by video id.
    """
    rows = files.read_csv(f"{out}/{SPLITS_CSV}")
    failures = files.read_jsonl(f"{out}/{FAILURES_JSONL}")
    problems = _check_rows(plan, rows) + _check_failures(rows, failures, listing_problems)
    by_id = {r["video_id"]: r for r in rows}
    frames = sequences = {}
    if any(r["status"] != FAILED for r in rows):  # with nothing extracted the datasets have no splits to read
        frames = _records_by_video(out, schema.FRAMES, schema.FRAME_INDEX, problems)
        sequences = _records_by_video(out, schema.SEQUENCES, schema.NUM_FRAMES, problems)
    problems += _check_videos(by_id, frames, schema.FRAMES, split_by != "frame",
                              lambda found, n: sorted(found) == list(range(n)))
    problems += _check_videos(by_id, sequences, schema.SEQUENCES, True, lambda found, n: list(found) == [n])
    if problems:
        shown = "\n  ".join(problems[:SHOWN_PROBLEMS])
        more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise ReconciliationError(
            f"the extraction does not account for every input ({len(problems)} mismatch(es)), so it was not "
            f"published and the previous output is unchanged (what was written stays in {out} until the next "
            f"run):\n  {shown}{more}\nThis is a bug in the pipeline or a fault of the runner or storage, not a "
            "problem of these videos: please report it with this message. Running again may succeed")
    statuses = collections.Counter(r["status"] for r in rows)
    return {
        "passed": True,
        "inputs": len(plan) + len(listing_problems),
        "splits_csv_rows": len(rows),
        "statuses": dict(sorted(statuses.items())),
        "failures_jsonl_rows": len(failures),
        "listing_problems": len(listing_problems),
        "frames_records": sum(len(values) for values, _ in frames.values()),
        "sequences_records": sum(len(values) for values, _ in sequences.values()),
        "checked": "each input once in splits.csv (label, group, split); each failure's reason in failures.jsonl; "
                   "each extracted video's records in frames/ and sequences/ by video id and frame index; "
                   "nothing that was not an input",
    }


def _check_rows(plan: Sequence[PlannedVideo], rows: Sequence[dict]) -> list[str]:
    """splits.csv against the plan: each planned video once, as planned, with a known status."""
    problems = []
    planned = {p.video_id: p for p in plan}
    counts = collections.Counter(r["video_id"] for r in rows)
    problems += [f"{v}: {n} rows in {SPLITS_CSV}" for v, n in sorted(counts.items()) if n > 1]
    problems += [f"{v}: an input with no row in {SPLITS_CSV}" for v in sorted(planned.keys() - counts.keys())]
    problems += [f"{v}: a row in {SPLITS_CSV} but not an input" for v in sorted(counts.keys() - planned.keys())]
    for row in sorted(rows, key=lambda r: r["video_id"]):
        video_id, status = row["video_id"], row["status"]
        expected = planned.get(video_id)
        if expected is not None:
            changed = [f"{k} {row[k]!r}, planned {getattr(expected, k)!r}" for k in ("label", "group", "split")
                       if row[k] != getattr(expected, k)]
            if changed:
                problems.append(f"{video_id}: {SPLITS_CSV} has {'; '.join(changed)}")
        if status not in EXTRACTED_STATUSES + (FAILED,):
            problems.append(f"{video_id}: unknown status {status!r} in {SPLITS_CSV}")
        elif status == FAILED and _frames(row) != 0:
            problems.append(f"{video_id}: failed, yet {SPLITS_CSV} counts {row['frames']} frame(s)")
        elif status != FAILED and _frames(row) < 1:
            problems.append(f"{video_id}: {status} with {row['frames']!r} frames in {SPLITS_CSV}")
    return problems


def _check_failures(rows: Sequence[dict], failures: Sequence[dict], listing_problems: Sequence[dict]) -> list[str]:
    """failures.jsonl: each failed video and each input the listing left out, once, with a reason; no other."""
    problems = []
    expected = {(p["video_id"], p["path"]) for p in listing_problems}
    failed = {r["video_id"] for r in rows if r["status"] == FAILED}
    extracted = {r["video_id"] for r in rows if r["status"] != FAILED}
    reported = collections.Counter(f.get("video_id") for f in failures)
    listed = {video_id for video_id, _ in expected}
    for video_id in sorted(failed - reported.keys()):
        problems.append(f"{video_id}: failed in {SPLITS_CSV}, but {FAILURES_JSONL} has no reason for it")
    reported_paths = {(f.get("video_id"), f.get("path")) for f in failures}
    for video_id, path in sorted(expected - reported_paths):
        problems.append(f"{video_id}: left out by the listing ({path}), but missing from {FAILURES_JSONL}")
    for video_id, n in sorted(reported.items(), key=lambda kv: str(kv[0])):
        if video_id in extracted:
            problems.append(f"{video_id}: extracted, yet in {FAILURES_JSONL}")
        elif video_id not in failed and video_id not in listed:
            problems.append(f"{video_id}: in {FAILURES_JSONL} but not an input")
        elif n > 1:
            problems.append(f"{video_id}: {n} rows in {FAILURES_JSONL}")
    problems += [f"{f.get('video_id')}: no reason in {FAILURES_JSONL}" for f in failures if not f.get("error")]
    return problems


def _check_videos(rows: dict, found: dict, kind: str, check_split: bool, matches) -> list[str]:
    """Dataset `kind`'s records ({video_id: (values, splits)}) against splits.csv's rows: `matches(values, n)`
    for each extracted video of n frames, none for failed videos or names that were not inputs."""
    problems = []
    for video_id, row in sorted(rows.items()):
        values, splits = found.get(video_id, ((), set()))
        if row["status"] == FAILED:
            if values:
                problems.append(f"{video_id}: failed, yet {len(values)} record(s) in {kind}/")
            continue
        n = _frames(row)
        if not matches(values, n):
            what = f"frame indices {_ranges(values)}" if kind == schema.FRAMES else f"lengths {sorted(values)}"
            problems.append(f"{video_id}: {SPLITS_CSV} says {n} frame(s), {kind}/ holds {len(values)} record(s) "
                            f"({what})")
        if check_split and values and splits != {row["split"]}:
            problems.append(f"{video_id}: in split {row['split']!r}, but its {kind}/ records are in {sorted(splits)}")
    for video_id in sorted(found.keys() - rows.keys()):
        problems.append(f"{video_id}: {len(found[video_id][0])} record(s) in {kind}/ but not an input")
    return problems


def _records_by_video(out: str, kind: str, key: str, problems: list[str]) -> dict:
    """{video_id: (array of feature `key` of its records, their splits)} over every record of dataset `kind`, in
    the files its metadata names; only the two features are parsed. An unreadable dataset is added to
    `problems`."""
    parse_spec = {schema.VIDEO_ID: tf.io.FixedLenFeature([], tf.string), key: tf.io.FixedLenFeature([], tf.int64)}
    found: dict = {}
    try:
        splits = schema.read_splits(out, kind)
    except schema.DataError as e:
        problems.append(f"{kind}/ cannot be read: {e}")
        return found
    for split, info in splits.items():
        if not info.filepaths:
            continue
        dataset = tf.data.TFRecordDataset(list(info.filepaths), num_parallel_reads=min(8, len(info.filepaths)))
        dataset = dataset.batch(_READ_BATCH).map(lambda batch: tf.io.parse_example(batch, parse_spec))
        for batch in dataset.as_numpy_iterator():
            for video_id, value in zip(batch[schema.VIDEO_ID].tolist(), batch[key].tolist()):
                values, in_splits = found.setdefault(video_id.decode("utf-8"), (array.array("q"), set()))
                values.append(value)
                in_splits.add(split)
    return found


def _frames(row: dict) -> int:
    try:
        return int(row["frames"])
    except (TypeError, ValueError):
        return -1


def _ranges(indices: Sequence[int]) -> str:
    """Frame indices as short text: '0-3, 5, 5' (sorted; repeats shown)."""
    if not indices:
        return "none"
    parts, values = [], sorted(indices)
    start = previous = values[0]
    for value in values[1:] + [None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if value is not None:
            start = previous = value
    return ", ".join(parts)
