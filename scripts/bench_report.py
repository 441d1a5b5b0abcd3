"""The report_scaling section of scripts/bench.py: `tools.report` and `tools.audit` on synthetic extractions of
400 classes and growing numbers of videos (10 frames each, 16 x 16 JPEGs, float16 features, written with
`pipeline.synthetic`), each command a process of its own (peak memory sampled, as extraction_scaling does); and
the audit's near-duplicate search (multi-index hashing) against comparing every pair, on the largest dataset's
own frame hashes.

    .venv/bin/python scripts/bench.py --only=report_scaling [--quick | --tiny]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from bench_data import pick
from bench_extraction import _run_measured

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(data_dir: str, classes: int, videos: int) -> float:
    from pipeline.synthetic import many_classes, write_extraction

    start = time.perf_counter()
    made = many_classes(classes, videos, frames=10, side=16)
    write_extraction(data_dir, made, [f"class_{i:03d}" for i in range(classes)], "float16")
    return time.perf_counter() - start


def _search_speed(data_dir: str) -> dict:
    """The audit's search (`within`) vs every pair compared (`nearest`) on the valid-vs-train frame hashes."""
    from dataformat import schema
    from tools.audit import _read_split, nearest, within

    splits = schema.read_splits(data_dir, schema.FRAMES)
    hashes = {s: _read_split(splits[s], schema.FRAMES, [schema.IMAGE])[schema.IMAGE] for s in ("train", "valid")}
    start = time.perf_counter()
    fast = within(hashes["valid"], hashes["train"], 4)
    indexed = time.perf_counter() - start
    start = time.perf_counter()
    slow = nearest(hashes["valid"], hashes["train"])
    every_pair = time.perf_counter() - start
    close = slow[0] <= 4
    return {"queries": len(hashes["valid"]), "pool": len(hashes["train"]), "indexed_seconds": round(indexed, 3),
            "every_pair_seconds": round(every_pair, 3), "speed_up": every_pair / max(indexed, 1e-6),
            "same_result": bool((fast[0] <= 4).tolist() == close.tolist() and (fast[1][close] == slow[1][close]).all())}


def bench_report_scaling(size: str) -> dict:
    """Seconds and peak memory of `tools.audit` and `tools.report` (with one real 400-class training run, made
    on the smallest dataset, as --runs) for each dataset size, the synthetic writing time, the page's size."""
    classes = pick(size, 40, 400, 400)
    counts = pick(size, (120, 240), (1000, 3000), (1000, 3000, 10000))
    work = tempfile.mkdtemp(prefix="bench-report-")
    rows = []
    for n in counts:
        data = f"{work}/data-{n}"
        row = {"videos": n, "frames": 10 * n, "classes": classes,
               "synthetic_write_seconds": round(_write(data, classes, n), 1)}
        if n == counts[0]:
            subprocess.run([sys.executable, "-m", "training.main", f"--data_dir={data}", f"--workdir={work}/run",
                            "--model=lstm", "--epochs=1", "--lstm_units=8", "--dense_units=8"],
                           cwd=ROOT, check=True, capture_output=True)
        row["audit_seconds"], row["audit_peak_mb"] = _run_measured([sys.executable, "-m", "tools.audit",
                                                                f"--data_dir={data}"])
        row["report_seconds"], row["report_peak_mb"] = _run_measured([
            sys.executable, "-m", "tools.report", f"--data_dir={data}", f"--runs={work}/run",
            f"--output_dir={work}/report-{n}"])
        row["page_mb"] = round(os.path.getsize(f"{work}/report-{n}/index.html") / 2**20, 2)
        rows.append({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()})
    first, last = rows[0], rows[-1]
    search = _search_speed(f"{work}/data-{counts[-1]}")
    growth = last["videos"] / first["videos"]
    return {"runs": rows, "search": search, "videos_growth": growth,
            "ratios": {"report_time_growth_vs_videos_growth": round(
                           last["report_seconds"] / first["report_seconds"] / growth, 3),
                       "report_memory_growth": round(last["report_peak_mb"] / first["report_peak_mb"], 3),
                       "audit_time_growth_vs_videos_growth": round(
                           last["audit_seconds"] / first["audit_seconds"] / growth, 3),
                       "audit_memory_growth": round(last["audit_peak_mb"] / first["audit_peak_mb"], 3),
                       "near_duplicate_search_indexed_vs_every_pair": round(search.pop("speed_up"), 3)}}
