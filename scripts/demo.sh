#!/usr/bin/env bash
# End-to-end demo on the embedded sample videos: sets up .venv if missing, writes the sample videos, extracts
# frames and InceptionV3 features into split, sharded TFRecords, reads them back with TFDS alone, then trains
# the LSTM on the feature sequences and the CNN on the frames for a few epochs, prints their test accuracy, and
# writes the diagnosis report (demo_out/report/index.html).
#
# This machine kind cannot download model weights, so the demo uses random InceptionV3 weights by default.
# On a machine with internet access: WEIGHTS=imagenet scripts/demo.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_venv.sh"
cd "$ROOT"
OUT="${OUT:-$ROOT/demo_out}"
WEIGHTS="${WEIGHTS:-none}"

echo "== 1. sample videos -> $OUT/videos"
rm -rf "$OUT"
"$PY" -m tools.samples --output_dir="$OUT/videos" --seed=0

echo "== 2. extraction (weights=$WEIGHTS, 2 frames/s, 299x299, split by recording session)"
"$PY" -m pipeline.extract --input_dir="$OUT/videos" --output_dir="$OUT/extracted" \
  --group_regex='^([^/]+/s\d+)_' --fps=2 --weights="$WEIGHTS"

echo "== 3. read back with TFDS alone"
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

echo "== 4. train the LSTM on sequences/ and the CNN on frames/ (a few epochs each)"
"$PY" -m training.main --data_dir="$OUT/extracted" --model=lstm --workdir="$OUT/runs/lstm" --epochs=15 --seed=0 \
  --track_difficulty
"$PY" -m training.main --data_dir="$OUT/extracted" --model=cnn --workdir="$OUT/runs/cnn" --epochs=10 --seed=0 \
  --augment=flip_h,flip_v,zoom

echo "== 5. the diagnosis report: data, leakage, runs, difficulty and input order on one page"
"$PY" -m tools.report --data_dir="$OUT/extracted" --runs="$OUT/runs" --output_dir="$OUT/report"

echo "== summary"
"$PY" - "$OUT/runs" <<'PY'
import json, sys
for model in ("lstm", "cnn"):
    with open(f"{sys.argv[1]}/{model}/metrics.json") as f:
        m = json.load(f)
    print(f"{model:4s}  test accuracy {m['test_accuracy']:.3f} on {m['test_examples']} examples "
          f"(chance {1 / m['num_classes']:.3f}), valid {m['val_accuracy']:.3f}, {m['epochs_run']} epochs, "
          f"weights {m['weights_sha256'][:12]}")
PY
