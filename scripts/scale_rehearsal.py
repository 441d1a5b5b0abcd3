"""Scale rehearsal (scripts/bench.py, section scale_rehearsal): what to expect at UCF101 and Kinetics-400 size.

Runs one real, small extraction of UCF101-shaped clips (scripts/bench_ucf_clips.py's generator: 320 x 240
MPEG-4 Part 2 with B-frames in AVI, 5-9 s, in class folders) at 1 fps, `--weights=none`, at 299 px in the job's
precision, as a process of its own (peak memory of it and its decoder processes sampled from /proc), and measures
from its summary.json and its output: steady frames/s, start-up, batch fill, bytes on disk per frame (frames/,
JPEG) and per video (sequences/, at the job's float16; float32 and uint8 from the schema's 2048 features per
frame). It then projects, by linear extrapolation of those measured rates, to UCF101 (13,320 clips x 7 s) and
Kinetics-400 (240,000 clips x 10 s) at 1 fps: output sizes, packs and shards, extraction CPU-hours on this
machine's cores and wall time on N Dataflow workers, and the report and audit from BUILD_NOTES' report scaling
table (not re-measured here).

    .venv/bin/python scripts/scale_rehearsal.py [--also_75px] [--quick | --tiny] [--json=PATH] [--workers=10,50]
        [--worker_cores=8]
    .venv/bin/python scripts/bench.py --only=scale_rehearsal [--quick | --tiny]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile

from bench_data import pick
from bench_extraction import _run_measured
from bench_ucf_clips import CACHE, ROOT, batch_fill, class_folders_of_clips

FPS = 1
FEATURES = 2048  # InceptionV3's pooled features per frame
DTYPE_BYTES = {"float32": 4, "float16": 2, "uint8": 1}
SHARD_BYTES = 128 * 2**20  # pipeline.config.DEFAULT_SHARD_BYTES
PACK_FRAMES = 256  # --pack_frames' default
DATASETS = {"UCF101": (13_320, 7.0, 101), "Kinetics-400": (240_000, 10.0, 400)}
# BUILD_NOTES.md, "The report and the audit at 400 classes and 10,000 videos": (frames, seconds, peak MB) of the
# 1,000- and 10,000-video rows (10 frames each, 16 x 16 JPEGs), measured at load 6-10 on 2 cores. Not re-measured.
REPORT_SCALING = {"audit": ((10_000, 22.6, 613), (100_000, 22.5, 656)),
                  "report": ((10_000, 31.0, 724), (100_000, 46.2, 772))}
CAVEATS = ("linear extrapolation of rates measured on this machine; what could break it: I/O (reading AVIs and "
           "writing shards on remote storage such as gs:// rather than a local disk), per-worker start-up and "
           "Dataflow's own provisioning (minutes, not counted), a GPU featurizer moving the bound from the model to "
           "decoding, other load on these cores (uptime), and the report/audit reading 299 px JPEGs rather than the "
           "16 px ones they were measured on")

ASSUMPTIONS = ("per-core rate = steady frames/s measured here / this machine's cores; linear in workers (one SDK "
               "process per core, --decode_processes=1, each taking whole packs of 256 frames: wall = rounds of packs "
               "x a pack's core-seconds); plus the measured start-up; the report/audit by a straight line through "
               "BUILD_NOTES' 1,000- and 10,000-video rows (the audit was flat between them, its fixed costs "
               "dominating: read its projection as a floor)")


def rehearsal_clips(classes: int, per_class: int) -> tuple[str, int, float]:
    """(folder, clips, seconds): UCF-shaped clips in class folders, made once and cached."""
    return class_folders_of_clips(os.path.join(CACHE, f"rehearsal-{classes}x{per_class}"), classes, per_class)


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(path) for n in names)


def measure(root: str, image_size: int, work: str) -> dict:
    """One `pipeline.extract` process at 1 fps: its rates, batch fill, peak memory and bytes on disk."""
    out = os.path.join(work, f"out-{image_size}")
    seconds, peak_mb = _run_measured([sys.executable, "-m", "pipeline.extract", f"--input_dir={root}",
                                      f"--output_dir={out}", "--weights=none", f"--image_size={image_size}",
                                      f"--fps={FPS}", "--splits=train=1", "--group_regex=_g(\\d+)_"])
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    frames, videos = summary["frames"], summary["extracted"]
    sequence_bytes = _folder_bytes(os.path.join(out, "sequences")) / videos
    frames_per_video = frames / videos
    return {"image_size": image_size, "videos": videos, "frames": frames, "wall_seconds": round(seconds, 1),
            "steady_frames_per_s": summary["timing"]["steady_frames_per_second"],
            "start_up_seconds": summary["timing"]["start_up_seconds"], "batch_fill": batch_fill(summary),
            "peak_memory_mb": round(peak_mb), "frames_bytes_per_frame": round(
                _folder_bytes(os.path.join(out, "frames")) / frames),
            "sequence_bytes_per_frame": {dtype: round((sequence_bytes + frames_per_video * FEATURES * (
                size - DTYPE_BYTES["float16"])) / frames_per_video) for dtype, size in DTYPE_BYTES.items()},
            "sequence_bytes_measured": "float16 (the job's); the others from 2048 features x their bytes"}


def _report_at(frames: int, tool: str) -> dict:
    """Seconds and peak MB by a straight line through BUILD_NOTES' 10k- and 100k-frame points."""
    (f0, s0, m0), (f1, s1, m1) = REPORT_SCALING[tool]
    return {"seconds": round(max(s0, s0 + (s1 - s0) / (f1 - f0) * (frames - f0))),
            "peak_mb": round(m0 + (m1 - m0) / (f1 - f0) * (frames - f0))}


def project(job: dict, cores: int, workers: tuple[int, ...], worker_cores: int) -> dict:
    """Linear projections of one measured job to each dataset of DATASETS."""
    core_seconds_per_frame = cores / job["steady_frames_per_s"]
    projections = {}
    for name, (clips, clip_seconds, classes) in DATASETS.items():
        frames = int(clips * clip_seconds * FPS)
        frames_bytes = frames * job["frames_bytes_per_frame"]
        sequences = {d: frames * b for d, b in job["sequence_bytes_per_frame"].items()}
        core_hours = frames * core_seconds_per_frame / 3600
        packs = math.ceil(frames / PACK_FRAMES)
        pack_seconds = PACK_FRAMES * core_seconds_per_frame  # one pack on one SDK process's core
        projections[name] = {
            "clips": clips, "classes": classes, "frames": frames, "frames_gb": round(frames_bytes / 1e9, 2),
            "sequences_gb": {d: round(b / 1e9, 2) for d, b in sequences.items()},
            "packs": packs, "frames_shards": math.ceil(frames_bytes / SHARD_BYTES),
            "sequences_shards_float16": math.ceil(sequences["float16"] / SHARD_BYTES),
            "cpu_core_hours": round(core_hours, 1),
            f"hours_on_this_machine_{cores}_cores": round(core_hours / cores + job["start_up_seconds"] / 3600, 1),
            "dataflow_hours": {f"{n}x{worker_cores}_cores": round((math.ceil(packs / (n * worker_cores)) * pack_seconds
                                                                   + job["start_up_seconds"]) / 3600, 2)
                               for n in workers},
            "packs_per_sdk_process": {f"{n}x{worker_cores}_cores": round(packs / (n * worker_cores), 1)
                                      for n in workers},
            "audit": _report_at(frames, "audit"), "report": _report_at(frames, "report")}
    return projections


def table(result: dict) -> list[str]:
    job, p = result["job_299px"], result["projections"]
    names = list(p)
    rows = [("measured: clips, frames (299 px, 1 fps)", f"{job['videos']}, {job['frames']}"),
            ("steady frames/s, start-up s, batch fill", f"{job['steady_frames_per_s']}, {job['start_up_seconds']}, "
                                                        f"{job['batch_fill']}"),
            ("peak memory of the job (MB)", str(job["peak_memory_mb"])),
            ("bytes per frame: frames/ JPEG, sequences/ f16", f"{job['frames_bytes_per_frame']}, "
                                                              f"{job['sequence_bytes_per_frame']['float16']}")]
    if "job_75px" in result:
        small = result["job_75px"]
        rows.append(("at 75 px: steady frames/s, start-up s, peak MB",
                     f"{small['steady_frames_per_s']}, {small['start_up_seconds']}, {small['peak_memory_mb']}"))
    lines = ["| measured (one run) | |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in rows]
    lines += ["", "| projected (linear) | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    keys = [("clips x s at 1 fps: frames", lambda d: f"{d['frames']:,}"),
            ("frames/ (GB)", lambda d: str(d["frames_gb"])),
            ("sequences/ f16 / u8 / f32 (GB)", lambda d: "{float16} / {uint8} / {float32}".format(**d["sequences_gb"])),
            ("packs of 256; shards frames/ + sequences/", lambda d: f"{d['packs']:,}; {d['frames_shards']} + "
                                                                      f"{d['sequences_shards_float16']}"),
            ("CPU core-hours (this CPU)", lambda d: str(d["cpu_core_hours"])),
            *([("CPU core-hours at 75 px", lambda d: str(d["cpu_core_hours_75px"]))] if "job_75px" in result else []),
            (f"hours on this machine ({result['cores']} cores)",
             lambda d: str(d[f"hours_on_this_machine_{result['cores']}_cores"]))]
    for workers in result["dataflow_workers"]:
        key = f"{workers}x{result['worker_cores']}_cores"
        keys.append((f"hours on Dataflow, {workers} workers x {result['worker_cores']} cores",
                     lambda d, k=key: f"{d['dataflow_hours'][k]} ({d['packs_per_sdk_process'][k]} packs/process)"))
    keys += [(f"{tool} s{' (a floor)' if tool == 'audit' else ''}, peak MB (from BUILD_NOTES)",
              lambda d, t=tool: f"{d[t]['seconds']}, {d[t]['peak_mb']}") for tool in ("audit", "report")]
    lines += [f"| {label} | " + " | ".join(f(p[n]) for n in names) + " |" for label, f in keys]
    return lines


def bench_scale_rehearsal(size: str, workers: tuple[int, ...] = (10, 50), worker_cores: int = 8,
                          also_75px: bool = False) -> dict:
    classes, per_class = pick(size, (3, 2), (8, 4), (10, 4))
    root, clips, seconds = rehearsal_clips(classes, per_class)
    work = tempfile.mkdtemp(prefix="bench-rehearsal-")
    job = measure(root, 299, work)
    cores = os.cpu_count() or 1
    result = {"clips": clips, "video_seconds": seconds, "cores": cores, "load_average": os.getloadavg(),
              "job_299px": job, "dataflow_workers": list(workers), "worker_cores": worker_cores,
              "projections": project(job, cores, workers, worker_cores), "caveats": CAVEATS,
              "assumptions": ASSUMPTIONS,
              "ratios": {"rehearsal_batch_fill_32": float(job["batch_fill"])}}
    if also_75px:  # the same clips at 75 px: where decoding, not the model, weighs most
        small = measure(root, 75, work)
        result["job_75px"] = small
        for name, p in result["projections"].items():
            p["cpu_core_hours_75px"] = round(p["frames"] * cores / small["steady_frames_per_s"] / 3600, 1)
    result["table"] = table(result)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 clips")
    parser.add_argument("--tiny", action="store_true", help="6 clips: a smoke test, not a measurement")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--workers", default="10,50", help="Dataflow worker counts to project to")
    parser.add_argument("--also_75px", action="store_true", help="measure the clips at 75 px as well")
    parser.add_argument("--worker_cores", type=int, default=8, help="cores per Dataflow worker (n2-standard-8: 8)")
    args = parser.parse_args()
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    result = bench_scale_rehearsal(size, tuple(int(w) for w in args.workers.split(",")), args.worker_cores,
                                   args.also_75px)
    print("\n".join(result["table"]))
    print(f"\nload average {result['load_average']}; {result['assumptions']}.\nCaveats: {CAVEATS}.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
