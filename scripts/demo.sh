#!/usr/bin/env bash
# End-to-end demo on the embedded sample videos: sets up .venv if missing, writes the sample videos, extracts
# frames and InceptionV3 features into split, sharded TFRecords, reads them back with TFDS alone, then trains
# the LSTM on the feature sequences and the CNN on the frames for a few epochs, runs a small seed experiment
# (story 000: sampling with replacement vs once per epoch, 3 seeds each), prints their test accuracy, and
# writes the diagnosis report (demo_out/report/index.html). Each step says how long it took.
#
# Steps 3 and 4 are independent and run at once (each prints its output when it ends): a TensorFlow process
# spends seconds starting single-threaded and the LSTM's epochs are small, so they fill each other's idle cores.
# The experiment (step 5) runs after them: it trains in parallel itself (one worker process per core).
#
# This machine kind cannot download model weights, so the demo uses random InceptionV3 weights by default.
# On a machine with internet access: WEIGHTS=imagenet scripts/demo.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_venv.sh"
cd "$ROOT"
OUT="${OUT:-$ROOT/demo_out}"
WEIGHTS="${WEIGHTS:-none}"
SECONDS=0
began=$SECONDS
took() { echo "-- $1: $((SECONDS - began)) s"; began=$SECONDS; }
# Starts a step in the background, its output in $OUT/logs/NAME.txt; `finish NAME` waits for it and prints it.
declare -A pids
start() { local name=$1; shift; "$@" > "$OUT/logs/$name.txt" 2>&1 & pids[$name]=$!; }
finish() {
  local status=0
  wait "${pids[$1]}" || status=$?
  cat "$OUT/logs/$1.txt"
  if [ "$status" != 0 ]; then echo "demo: step $1 failed (exit $status)" >&2; exit "$status"; fi
}

echo "== 1. sample videos -> $OUT/videos"
rm -rf "$OUT"
"$PY" -m tools.samples --output_dir="$OUT/videos" --seed=0
mkdir -p "$OUT/logs"
took "sample videos"

echo "== 2. extraction (weights=$WEIGHTS, 2 frames/s, 299x299, split by recording session)"
"$PY" -m pipeline.extract --input_dir="$OUT/videos" --output_dir="$OUT/extracted" \
  --group_regex='^([^/]+/s\d+)_' --fps=2 --weights="$WEIGHTS"

took "extraction"

read_back() {
"$PY" - "$OUT/extracted" <<'PY'
import sys
from settings import console
console.quiet_start_up()  # TensorFlow's start-up chatter
import tensorflow_datasets as tfds
out = sys.argv[1]
for name in ("sequences", "frames"):
    builder = tfds.builder_from_directory(f"{out}/{name}")
    ex = next(iter(builder.as_dataset(split="train")))
    key = "features" if name == "sequences" else "image"
    counts = {s: i.num_examples for s, i in builder.info.splits.items()}
    print(f"{name:9s} {counts}  first train example: {key} {tuple(ex[key].shape)} {ex[key].dtype.name}, "
          f"video {ex['video_id'].numpy().decode()}")
PY
}
start tfds read_back
start lstm "$PY" -m training.main --data_dir="$OUT/extracted" --model=lstm --workdir="$OUT/runs/lstm" --epochs=15 \
  --seed=0 --track_difficulty
start cnn "$PY" -m training.main --data_dir="$OUT/extracted" --model=cnn --workdir="$OUT/runs/cnn" --epochs=10 --seed=0 \
  --augment=flip_h,flip_v,zoom
echo "== 3. read back with TFDS alone"
finish tfds
echo "== 4. train the LSTM on sequences/ and the CNN on frames/ (a few epochs each)"
finish lstm
finish cnn
took "steps 3-4 (at once)"

echo "== 5. is sampling with replacement worse than once per epoch, or seed noise? 3 seeds each, in parallel"
"$PY" -m training.experiment --workdir="$OUT/experiment" --vary=sampling=replacement,epoch --seeds=3 \
  --data_dir="$OUT/extracted" --model=lstm --epochs=10 --lstm_units=32 --dense_units=16
took "experiment"

echo "== 6. the diagnosis report: data, leakage, runs, the experiment, difficulty and input order on one page"
"$PY" -m tools.report --data_dir="$OUT/extracted" --runs="$OUT/runs" --runs="$OUT/experiment" --output_dir="$OUT/report"
took "report"

echo "== summary"
"$PY" - "$OUT/runs" "$OUT/experiment" <<'PY'
import json, sys
for model in ("lstm", "cnn"):
    with open(f"{sys.argv[1]}/{model}/metrics.json") as f:
        m = json.load(f)
    print(f"{model:4s}  test accuracy {m['test_accuracy']:.3f} on {m['test_examples']} examples "
          f"(chance {1 / m['num_classes']:.3f}), valid {m['val_accuracy']:.3f}, {m['epochs_run']} epochs, "
          f"weights {m['weights_sha256'][:12]}")
with open(f"{sys.argv[2]}/experiment.json") as f:
    e = json.load(f)
means = ", ".join(f"{name} {c['mean']:.3f}" for name, c in e["configurations"].items())
for v in e["sequential"]["rounds"][-1]["verdicts"]:
    print(f"experiment  mean test accuracy over {len(e['command']['seeds'])} seeds: {means}; verdict: "
          f"{v['outcome']} ({v['reason']})")
PY
echo "-- the whole demo: $SECONDS s"
