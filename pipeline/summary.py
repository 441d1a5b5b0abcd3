"""summary.json: what an extraction did, built from the files its pipeline wrote (so it is right on any runner),
and the table printed at the end of a run.
"""

from __future__ import annotations

import collections
import os
from typing import Optional, Sequence

from apache_beam.metrics.metric import MetricsFilter

from dataformat import files, schema
from dataformat.schema import FAILURES_JSONL, SPLITS_CSV, WARNINGS_JSONL
from pipeline.sources import Listing


def summarize(out: str, split_by: str, listing: Listing, spec: schema.DatasetSpec, split_warnings: Sequence[str],
              wall_seconds: float) -> dict:
    """Builds summary.json from the files the pipeline wrote in `out` (so it is right on any runner); the job
    adds what only it knows (the settings, Beam's counters, the reconciliation)."""
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
    if split_by == "frame":  # frames/ is split frame by frame: count it from its own metadata
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
        "split_by": split_by,
        "format_version": schema.FORMAT_VERSION,
    }


def beam_metrics(result) -> tuple[dict, dict]:
    """The pipeline's `extract` metrics (committed values; runners that do not report metrics give empty dicts):
    {counter: total} and {distribution: {min, max, sum, count}}."""
    try:
        found = result.metrics().query(MetricsFilter().with_namespace("extract"))
    except (NotImplementedError, KeyError):  # not every runner reports metrics
        return {}, {}
    counters: dict = {}
    for c in found.get("counters", []):
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + (c.committed or 0)
    distributions: dict = {}
    for d in found.get("distributions", []):
        if d.committed is not None and d.committed.count:
            merge_distribution(distributions, d.key.metric.name, {"min": d.committed.min, "max": d.committed.max,
                                                                  "sum": d.committed.sum, "count": d.committed.count})
    return dict(sorted(counters.items())), distributions


def merge_distribution(into: dict, name: str, value: dict) -> None:
    old = into.get(name)
    into[name] = value if old is None else {"min": min(old["min"], value["min"]), "max": max(old["max"], value["max"]),
                                            "sum": old["sum"] + value["sum"], "count": old["count"] + value["count"]}


def process_started() -> Optional[float]:
    """When this process started (seconds since the epoch), from /proc; None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration, IndexError):
        return None


def timing(counters: dict, distributions: dict, job_started: float) -> dict:
    """summary.json's "timing": where the job's time went, from its own metrics (not a difference of wall times).

    start_up_seconds: from the process's start to the first frame batch out of the model (imports, listing,
      Beam's set-up, the model's construction and tracing, the first videos' decoding);
    steady_frames_per_second: frames featurized after the first batch / the time from the first batch to the
      last: the rate a long job runs at;
    model_seconds: time in the model's forward passes (summed over threads and workers).
    The job adds reconciliation_seconds: reading the output back to account for every input (`pipeline.reconcile`).
    """
    batches, model = distributions.get("featurized_at_ms"), distributions.get("model_ms")
    frames, count = counters.get("frames_featurized", 0), counters.get("model_batches", 0)
    if not batches or not frames:
        return {}
    first, last = batches["min"] / 1000, batches["max"] / 1000
    started = process_started() or job_started
    steady = last - first
    return {
        "process_start_to_job_seconds": round(job_started - started, 3),
        "start_up_seconds": round(first - started, 3),
        "steady_seconds": round(steady, 3),
        "steady_frames_per_second": round((frames - frames / count) / steady, 3) if steady > 0 else None,
        "model_seconds": round(model["sum"] / 1000, 3) if model else None,
    }


def batch_fill(counters: dict) -> Optional[float]:
    """summary.json's "batch_fill": frames featurized / forward-pass rows computed (the rest is zero padding of a
    pack's last batch, `pipeline.packs`); None when the runner reports no metrics."""
    frames = counters.get("frames_featurized", 0)
    rows = frames + counters.get("model_rows_padded", 0)
    return round(frames / rows, 4) if rows else None


def decode_paths(counters: dict) -> dict:
    """{how a video was decoded: videos} from the `decode_path_*` counters (summary.json's "counters"): "exact",
    fast mode's "skipping" (some packets were never decoded), or "full_<why>" (fast mode decoded everything)."""
    prefix = "decode_path_"
    return {name[len(prefix):]: n for name, n in sorted(counters.items()) if name.startswith(prefix) and n}


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
        f"{summary['wall_seconds']:.1f} s ({summary['frames_per_second']} frames/s end to end" + (
            f"; {summary['timing']['steady_frames_per_second']:.1f} frames/s once running, "
            f"{summary['timing']['start_up_seconds']:.1f} s from the process start to the first batch)"
            if summary.get("timing", {}).get(
                "steady_frames_per_second") else ")"))
    paths = decode_paths(summary.get("counters", {}))
    if paths:
        lines.append("decoded: " + ", ".join(f"{name} {n}" for name, n in paths.items()))
    lines += [f"warning: {w}" for w in summary["split_warnings"]]
    return "\n".join(lines)
