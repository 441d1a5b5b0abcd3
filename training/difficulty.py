r"""Which examples are consistently hard? Dataset cartography over epochs and seeds (story 002's answer).

    python -m training.main ... --track_difficulty --workdir=runs/seed_0      # (or an experiment with it)
    python -m training.difficulty --runs=runs --data_dir=/tmp/extracted --output_dir=runs/difficulty

Reads every difficulty_records.csv below --runs (one per training run), and for each train/valid example
computes its mean confidence in the true label across all epochs and runs (low = hard), the standard deviation
of that confidence (high = ambiguous: the model keeps changing its mind) and the fraction of epochs it was
classified correctly (Swayamdipta et al., 2020). Writes difficulty.csv (hardest first) and difficulty.png (the
map), and prints the hardest and most ambiguous examples and the videos and groups they come from.
"""

from __future__ import annotations

import collections
import os
import sys

if __name__ == "__main__":  # before TensorFlow is imported: its start-up chatter is filtered (settings.console)
    from settings import console

    console.quiet_start_up()

import numpy as np
from absl import app, flags

from dataformat import schema

# TensorFlow (paths, in `dataformat.files` and `training.artifacts`) is imported by the functions that use it, so
# that --help answers at once.

FLAGS = flags.FLAGS

COLUMNS = ("split", "video_id", "frame_index", "group", "label", "mean_confidence", "variability", "correctness",
           "observations", "runs")


def define_flags():
    """Defines this command's flags (only when it runs as a command, so libraries can be imported together)."""
    flags.DEFINE_multi_string("runs", [], "Folders searched (recursively) for difficulty_records.csv.")
    flags.DEFINE_string("data_dir", None, "The extraction output (for each video's group, from splits.csv).")
    flags.DEFINE_string("output_dir", None, "Where difficulty.csv and difficulty.png go.")
    flags.DEFINE_integer("top", 10, "How many examples, videos and groups to print.")


def load_records(run_dirs: list[str]) -> list[dict]:
    """Every record of every run below `run_dirs`, with the run's folder."""
    from dataformat import files
    from training.artifacts import DIFFICULTY_RECORDS_CSV

    rows = []
    for root in run_dirs:
        for path in files.find(root, DIFFICULTY_RECORDS_CSV):
            for row in files.read_csv(path):
                row["run"] = os.path.dirname(path)
                rows.append(row)
    return rows


def summarize_examples(records: list[dict], group_of: dict[str, str]) -> list[dict]:
    """One row per (split, video_id, frame_index): mean confidence, variability, correctness; hardest first."""
    by_example = collections.defaultdict(list)
    for r in records:
        by_example[r["split"], r["video_id"], int(r["frame_index"])].append(r)
    out = []
    for (split, video_id, frame_index), rows in by_example.items():
        confidence = np.array([float(r["confidence"]) for r in rows])
        out.append({
            "split": split, "video_id": video_id, "frame_index": frame_index,
            "group": group_of.get(video_id, ""), "label": int(rows[0]["label"]),
            "mean_confidence": float(confidence.mean()), "variability": float(confidence.std()),
            "correctness": float(np.mean([r["correct"] in ("1", "True") for r in rows])),
            "observations": len(rows), "runs": len({r["run"] for r in rows}),
        })
    out.sort(key=lambda e: (e["mean_confidence"], e["split"], e["video_id"], e["frame_index"]))
    return out


def summarize_by(examples: list[dict], key: str) -> list[dict]:
    """Mean confidence per video or group (`key`), hardest first."""
    groups = collections.defaultdict(list)
    for e in examples:
        groups[e["split"], e[key]].append(e["mean_confidence"])
    rows = [{"split": s, key: k, "examples": len(v), "mean_confidence": float(np.mean(v))}
            for (s, k), v in groups.items()]
    return sorted(rows, key=lambda r: (r["mean_confidence"], r["split"], r[key]))


def _groups_from_splits_csv(data_dir: str) -> dict[str, str]:
    import tensorflow as tf

    from dataformat import files

    path = os.path.join(data_dir, schema.SPLITS_CSV)
    if not tf.io.gfile.exists(path):
        return {}
    return {r["video_id"]: r["group"] for r in files.read_csv(path)}


def plot_map(examples: list[dict], path: str) -> None:
    from training import artifacts

    plt = artifacts.pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter([e["variability"] for e in examples], [e["mean_confidence"] for e in examples],
                        c=[e["correctness"] for e in examples], cmap="coolwarm_r", s=12, vmin=0, vmax=1)
    fig.colorbar(points, label="correctness (share of epochs)")
    ax.set_xlabel("variability (std of confidence across epochs and runs)")
    ax.set_ylabel("mean confidence in the true label")
    ax.set_title("hard: bottom left; ambiguous: right; easy: top left")
    artifacts.save_figure(fig, path)


def write_report(examples: list[dict], output_dir: str) -> None:
    import tensorflow as tf

    from dataformat.files import write_atomically
    from training.artifacts import csv_field

    tf.io.gfile.makedirs(output_dir)
    lines = [",".join(COLUMNS)]
    for e in examples:
        lines.append(",".join(csv_field(str(e[c])) if isinstance(e[c], str) else
                              (f"{e[c]:.6f}" if isinstance(e[c], float) else str(e[c])) for c in COLUMNS))
    write_atomically(os.path.join(output_dir, "difficulty.csv"), "\n".join(lines) + "\n")
    plot_map(examples, os.path.join(output_dir, "difficulty.png"))


def format_summary(examples: list[dict], top: int) -> str:
    def example(e):
        frame = f"#{e['frame_index']}" if e["frame_index"] >= 0 else ""
        return (f"  {e['split']:5s} {e['video_id']}{frame} (group {e['group'] or '?'}): confidence "
                f"{e['mean_confidence']:.2f} +- {e['variability']:.2f}, correct {e['correctness']:.0%}")

    runs = max((e["runs"] for e in examples), default=0)
    lines = [f"{len(examples)} examples over {runs} run(s)", "hardest (lowest mean confidence):"]
    lines += [example(e) for e in examples[:top]]
    lines += ["most ambiguous (highest variability):"]
    lines += [example(e) for e in sorted(examples, key=lambda e: -e["variability"])[:top]]
    for key in ("group", "video_id"):
        lines += [f"hardest {key.replace('_id', '')}s:"]
        lines += [f"  {r['split']:5s} {r[key]}: mean confidence {r['mean_confidence']:.2f} over {r['examples']} "
                  f"example(s)" for r in summarize_by(examples, key)[:top]]
    return "\n".join(lines)


def main(argv):
    del argv
    if not FLAGS.runs or not FLAGS.output_dir:
        raise app.UsageError("--runs and --output_dir are required")
    from training.artifacts import DIFFICULTY_RECORDS_CSV

    records = load_records(FLAGS.runs)
    if not records:
        print(f"difficulty: no {DIFFICULTY_RECORDS_CSV} below {FLAGS.runs}; train with --track_difficulty",
              file=sys.stderr)
        return 1
    examples = summarize_examples(records, _groups_from_splits_csv(FLAGS.data_dir) if FLAGS.data_dir else {})
    write_report(examples, FLAGS.output_dir)
    print(format_summary(examples, FLAGS.top))
    return 0


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))
