"""The same small extraction many times, over decoder counts and local runner modes, each output reconciled.

Inputs: four tiny H.264 clips in two classes, an empty `empty.mp4`, and `broken.mp4` of 20,000 random bytes drawn
anew for every run. Every run must publish an output whose reconciliation passed (`pipeline.reconcile`), list
exactly broken.mp4 and empty.mp4 in failures.jsonl, and write the same shards as every other run (shards are
deterministic). CPU heavy: bounded by --repeats.

    python scripts/stress_extraction.py --repeats=2 --work_dir=/tmp/stress
"""

import argparse
import hashlib
import json
import logging
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (--decode_processes, Beam options): one decoder process and several, the in-process runner and several local
# workers in threads or processes.
RUNNERS = {
    "in_process": [],
    "threads": ["--direct_num_workers=2", "--direct_running_mode=multi_threading"],
    "processes": ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
}
DECODE_PROCESSES = (1, 2, 4)
EXPECTED_FAILURES = ["circle/broken.mp4", "square/empty.mp4"]


def write_inputs(root: str) -> None:
    """Four 2 s clips of 48 x 32 px (2 classes x 2 sessions) and an empty file; broken.mp4 comes per run."""
    from tools.samples import write_samples

    write_samples(root, seed=0, num_classes=2, sessions=2, clips=1, seconds=2.0, video_fps=4, width=48, height=32)
    open(os.path.join(root, "square", "empty.mp4"), "wb").close()


def shards_digest(out: str) -> str:
    """SHA-256 over the names and bytes of every shard of frames/ and sequences/."""
    digest = hashlib.sha256()
    for kind in ("frames", "sequences"):
        for name in sorted(os.listdir(os.path.join(out, kind))):
            if ".tfrecord-" in name:
                digest.update(name.encode())
                with open(os.path.join(out, kind, name), "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()


def run_once(inputs: str, out: str, decode_processes: int, beam_args: list, broken_seed: int) -> dict:
    """One extraction; returns what was seen: problems (empty when all is well), digest, seconds."""
    from pipeline.job import ExtractConfig, ExtractionError, run_extraction

    with open(os.path.join(inputs, "circle", "broken.mp4"), "wb") as f:
        f.write(np.random.default_rng(broken_seed).bytes(20000))
    config = ExtractConfig(output_dir=out, input_dir=inputs, weights="none", image_size=75, fps=1,
                           splits="train=0.5,valid=0.25,test=0.25", decode_processes=decode_processes)
    start = time.time()
    try:
        summary = run_extraction(config, beam_args)
    except ExtractionError as e:
        return {"problems": [f"the run stopped: {e}"], "digest": None, "seconds": time.time() - start}
    problems = []
    with open(os.path.join(out, "failures.jsonl")) as f:
        failed = sorted(json.loads(line)["video_id"] for line in f)
    if failed != EXPECTED_FAILURES:
        problems.append(f"failures.jsonl lists {failed}, expected {EXPECTED_FAILURES}")
    if not summary.get("reconciliation", {}).get("passed"):
        problems.append("summary.json records no passed reconciliation")
    if summary["extracted"] != 4:
        problems.append(f"{summary['extracted']} videos extracted, expected 4")
    return {"problems": problems, "digest": shards_digest(out), "seconds": time.time() - start,
            "reconcile_seconds": summary.get("reconciliation", {}).get("seconds")}


def stress(work_dir: str, repeats: int, configs: list, seed: int = 0) -> list[dict]:
    """Runs every (decode_processes, runner name) of `configs` `repeats` times; returns one result per run, each
    with its problems, including a digest that differs from the first run's."""
    inputs = os.path.join(work_dir, "inputs")
    if not os.path.isdir(inputs):
        write_inputs(inputs)
    results, first_digest, run = [], None, 0
    for repeat in range(repeats):
        for decode_processes, runner in configs:
            result = run_once(inputs, os.path.join(work_dir, "out"), decode_processes, RUNNERS[runner],
                              seed * 100_000 + run)
            run += 1
            first_digest = first_digest or result["digest"]
            if result["digest"] is not None and result["digest"] != first_digest:
                result["problems"].append("shards differ from the first run's")
            result.update(repeat=repeat, decode_processes=decode_processes, runner=runner)
            results.append(result)
            print(f"repeat {repeat} decoders {decode_processes} {runner:<10} {result['seconds']:6.1f} s "
                  f"(reconciliation {result.get('reconcile_seconds')} s) "
                  + ("; ".join(result["problems"]) or "ok"), flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--seed", type=int, default=0, help="draws the random bytes of broken.mp4 per run")
    parser.add_argument("--runners", default=",".join(RUNNERS), help=f"some of {', '.join(RUNNERS)}")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    configs = [(p, r) for r in args.runners.split(",") for p in DECODE_PROCESSES]
    results = stress(args.work_dir, args.repeats, configs, args.seed)
    bad = [r for r in results if r["problems"]]
    print(f"{len(results)} runs, {len(bad)} with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
