#!/usr/bin/env bash
# Reruns the case studies of docs/diagnosing.md on the sample videos (about 25 minutes on 2 cores).
# Usage: scripts/stories.sh [000|001|002|precision ...]   (default: the three stories). Outputs under $OUT (default
# /tmp/stories). `precision` measures what --precision=bfloat16 does to features and to the LSTM (BUILD_NOTES.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_venv.sh"
cd "$ROOT"
OUT="${OUT:-/tmp/stories}"
GROUPS_BY_SESSION='^([^/]+/s\d+)_'
stories=("${@:-000 001 002}")
mkdir -p "$OUT"

# The harder sample variant: shapes in random colours, so only outline and motion tell the class.
samples() {
  [ -d "$OUT/videos" ] || "$PY" -m tools.samples --output_dir="$OUT/videos" --sessions=10 --clips=3 --noclass_colours
}

for story in ${stories[@]}; do
  case "$story" in
    precision)  # bfloat16 vs float32 InceptionV3: cosine of the features, and the LSTM's accuracy over seeds.
      samples
      for precision in float32 bfloat16; do
        [ -d "$OUT/extracted_$precision" ] || "$PY" -m pipeline.extract --input_dir="$OUT/videos" \
          --output_dir="$OUT/extracted_$precision" --weights=none --fps=2 --group_regex="$GROUPS_BY_SESSION" \
          --precision="$precision"
      done
      "$PY" - "$OUT" <<'PY'
import sys
from settings import console
console.quiet_start_up()
import numpy as np
import tensorflow_datasets as tfds
out = sys.argv[1]
def features(precision):
    ds = tfds.builder_from_directory(f"{out}/extracted_{precision}/sequences").as_dataset(split="train+valid+test")
    return {ex["video_id"]: ex["features"].astype(np.float32) for ex in tfds.as_numpy(ds)}
a, b = features("float32"), features("bfloat16")
rows = np.concatenate([a[v] for v in sorted(a)]), np.concatenate([b[v] for v in sorted(a)])
cosine = (rows[0] * rows[1]).sum(1) / np.linalg.norm(rows[0], axis=1) / np.linalg.norm(rows[1], axis=1)
print(f"features of {len(cosine)} frames: cosine bfloat16 vs float32 min {cosine.min():.6f}, "
      f"mean {cosine.mean():.6f}")
PY
      "$PY" -m training.experiment --workdir="$OUT/exp_precision" --seeds=5 \
        --vary=data_dir="$OUT/extracted_float32,$OUT/extracted_bfloat16" --model=lstm --epochs=15
      ;;
    000)  # Does sampling with replacement beat "every sample once per epoch"? Many seeds, one command.
      samples
      [ -d "$OUT/extracted" ] || "$PY" -m pipeline.extract --input_dir="$OUT/videos" --output_dir="$OUT/extracted" \
        --weights=none --image_size=75 --fps=2 --group_regex="$GROUPS_BY_SESSION"
      "$PY" -m training.experiment --workdir="$OUT/exp000" --seeds=8 --vary=sampling=epoch,replacement \
        --data_dir="$OUT/extracted" --model=lstm --epochs=15
      ;;
    001)  # Same data, same seed: same weights? Which runs collapse to one class?
      # The default (coloured) samples, small: 3 classes x 6 sessions x 5 clips of 2 s.
      [ -d "$OUT/videos001" ] || "$PY" -m tools.samples --output_dir="$OUT/videos001" --sessions=6 --clips=5 \
        --seconds=2 --video_fps=8 --width=64 --height=48
      [ -d "$OUT/extracted001" ] || "$PY" -m pipeline.extract --input_dir="$OUT/videos001" \
        --output_dir="$OUT/extracted001" --weights=none --image_size=75 --fps=2 --group_regex="$GROUPS_BY_SESSION"
      for run in a b; do
        "$PY" -m training.main --data_dir="$OUT/extracted001" --workdir="$OUT/exp001/repeat_$run" --model=cnn \
          --epochs=5 --seed=1 --deterministic > /dev/null
      done
      grep -h weights_sha256 "$OUT"/exp001/repeat_*/metrics.json
      # A learning rate far too high saturates the LSTM into answering one class: flagged, and counted.
      "$PY" -m training.experiment --workdir="$OUT/exp001/lr" --seeds=3 --vary=learning_rate=0.01,100 \
        --data_dir="$OUT/extracted001" --model=lstm --epochs=6 --optimizer=sgd --lstm_units=32 --dense_units=16
      ;;
    002)  # Frames of one video on both sides of a random split: what does it do to validation accuracy?
      samples
      for by in group frame; do
        [ -d "$OUT/split_by_$by" ] || "$PY" -m pipeline.extract --input_dir="$OUT/videos" \
          --output_dir="$OUT/split_by_$by" --weights=none --image_size=75 --fps=2 \
          --group_regex="$GROUPS_BY_SESSION" --split_by=$by --frame_order=video
      done
      "$PY" -m tools.audit --data_dir="$OUT/split_by_frame" --examples=3 || true
      "$PY" -m training.experiment --workdir="$OUT/exp002" --seeds=3 --metric=val_accuracy \
        --vary=data_dir="$OUT/split_by_group,$OUT/split_by_frame" --model=cnn --epochs=10 --track_difficulty
      "$PY" -m training.experiment --workdir="$OUT/exp002" --seeds=3 --metric=test_accuracy \
        --vary=data_dir="$OUT/split_by_group,$OUT/split_by_frame" --model=cnn --epochs=10 --track_difficulty
      "$PY" -m training.inspect_order --data_dir="$OUT/split_by_group" --model=cnn --epochs=1 --shuffle_buffer=16
      "$PY" -m training.inspect_order --data_dir="$OUT/split_by_group" --model=cnn --epochs=1
      "$PY" -m training.difficulty --runs="$OUT/exp002/data_dir=split_by_group" \
        --data_dir="$OUT/split_by_group" --output_dir="$OUT/difficulty" --top=3
      ;;
    *) echo "unknown story $story (expected 000, 001 or 002)" >&2; exit 2 ;;
  esac
done
