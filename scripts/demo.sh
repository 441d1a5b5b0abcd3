#!/usr/bin/env bash
# End-to-end demo on the embedded sample videos: sets up .venv if missing, writes the sample videos, extracts
# frames and InceptionV3 features into split, sharded TFRecords, and reads them back with TFDS alone.
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
"$PY" -m pipeline.samples --output_dir="$OUT/videos" --seed=0

echo "== 2. extraction (weights=$WEIGHTS, 2 frames/s, 299x299, split by recording session)"
"$PY" -m pipeline.extract --input_dir="$OUT/videos" --output_dir="$OUT/extracted" \
  --group_regex='^([^/]+/s\d+)_' --fps=2 --weights="$WEIGHTS"

echo "== 3. read back with TFDS alone"
"$PY" - "$OUT/extracted" <<'PY'
import sys
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
