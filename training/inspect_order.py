r"""Inspect what an input pipeline feeds the model, without training: the same flags as training.main.

    python -m training.inspect_order --data_dir=/tmp/extracted --model=cnn --shuffle_buffer=16 --epochs=3
    python -m training.inspect_order --data_dir=/tmp/extracted --model=lstm --sampling=replacement --json=inspect.json

Per epoch: how many distinct examples were seen, the most repeats of one example, how many were never seen, and
a fingerprint of the order. Per batch: the share of the majority class, the class entropy, and the most
examples from one video and from one group. Batches dominated by one video (story 002: frames written video
by video and a small shuffle buffer) show up as a large "max same video" against a well-mixed pipeline.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import sys

if __name__ == "__main__":  # before TensorFlow is imported: its start-up chatter is filtered (settings.console)
    from settings import console

    console.quiet_start_up()

import numpy as np
from absl import app, flags

import settings
from dataformat import schema
from training.config import TrainConfig

FLAGS = flags.FLAGS


def define_flags():
    """Defines this command's flags, training.main's (`TrainConfig`) and its own (only when it runs as a command,
    so libraries can be imported together)."""
    settings.define_flags(TrainConfig)
    flags.DEFINE_string("split", "train", "Which split to inspect.")
    flags.DEFINE_string("json", None, "Also write the full report (every epoch and batch) as JSON here.")


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def inspect_order(batches: list[dict], num_examples: int, num_classes: int, steps: int) -> dict:
    """Statistics of a sequence of metadata batches (dicts of arrays) covering whole epochs of `steps` batches."""
    epochs = []
    for start in range(0, len(batches), steps):
        epoch_batches = batches[start:start + steps]
        ids = [(v, int(f)) for b in epoch_batches for v, f in
               zip(b[schema.VIDEO_ID], b.get(schema.FRAME_INDEX, np.full(len(b[schema.LABEL]), -1)))]
        seen = collections.Counter(ids)
        per_batch = []
        for b in epoch_batches:
            counts = np.bincount(b[schema.LABEL], minlength=num_classes)
            per_batch.append({
                "size": int(counts.sum()),
                "majority_class_share": float(counts.max() / counts.sum()),
                "class_entropy_bits": _entropy_bits(counts),
                "max_same_video": max(collections.Counter(b[schema.VIDEO_ID].tolist()).values()),
                "max_same_group": max(collections.Counter(b[schema.GROUP].tolist()).values()),
            })
        fingerprint = hashlib.sha256(repr(ids).encode()).hexdigest()[:16]
        epochs.append({
            "epoch": len(epochs),
            "examples": len(ids),
            "distinct_fraction": len(seen) / num_examples,
            "max_repeats": max(seen.values()),
            "never_seen": num_examples - len(seen),
            "order_fingerprint": fingerprint,
            "mean_majority_class_share": float(np.mean([b["majority_class_share"] for b in per_batch])),
            "mean_class_entropy_bits": float(np.mean([b["class_entropy_bits"] for b in per_batch])),
            "mean_max_same_video": float(np.mean([b["max_same_video"] for b in per_batch])),
            "worst_max_same_video": max(b["max_same_video"] for b in per_batch),
            "mean_max_same_group": float(np.mean([b["max_same_group"] for b in per_batch])),
            "batches": per_batch,
        })
    overall = hashlib.sha256("".join(e["order_fingerprint"] for e in epochs).encode()).hexdigest()[:16]
    return {"epochs": epochs, "order_fingerprint": overall, "max_entropy_bits": math.log2(num_classes)}


def format_table(report: dict) -> str:
    header = ("epoch  examples  distinct  max repeats  never seen  majority share  entropy (bits)  "
              "max same video (mean/worst)  max same group  order")
    lines = [header]
    for e in report["epochs"]:
        lines.append(f"{e['epoch']:5d}  {e['examples']:8d}  {e['distinct_fraction']:7.1%}  {e['max_repeats']:11d}  "
                     f"{e['never_seen']:10d}  {e['mean_majority_class_share']:14.2f}  "
                     f"{e['mean_class_entropy_bits']:14.2f}  {e['mean_max_same_video']:15.1f} / "
                     f"{e['worst_max_same_video']:<9d}  {e['mean_max_same_group']:14.1f}  {e['order_fingerprint']}")
    lines.append(f"order fingerprint of all epochs: {report['order_fingerprint']} (same flags and seed -> same "
                 f"fingerprint); class entropy of a perfectly mixed batch: {report['max_entropy_bits']:.2f} bits")
    return "\n".join(lines)


def inspect_training_order(config: TrainConfig, split: str = "train") -> dict:
    """What `config`'s training input pipeline feeds the model from `split` (`inspect_order`'s report, with the
    settings), built by the functions `training.train` builds it with (the run's splits and data, repaired if
    --skip_corrupt; seeds and op determinism; the run's input settings), without decoding any input."""
    from training.input_pipeline import make_train_dataset  # TensorFlow: imported when used, so --help is instant
    from training.train import open_run_data, plan_run, run_input_config, set_up_process

    plan = plan_run(config)
    data = open_run_data(config, plan, also=(split,))
    set_up_process(config)  # tf.data's seeds depend on the global seed
    input_config = dataclasses.replace(run_input_config(config), with_metadata=True, decode=False)
    info = data.info(split)
    ds, steps = make_train_dataset(data, split, input_config, num_epochs=config.epochs)
    report = inspect_order(list(ds.as_numpy_iterator()), info.num_examples, len(info.spec.class_names), steps)
    report["settings"] = {"split": split, "kind": data.kind, "examples": info.num_examples, "seed": config.seed,
                          **dataclasses.asdict(input_config)}
    return report


def main(argv):
    from dataformat.files import write_atomically
    from dataformat.schema import DataError
    from training.input_pipeline import set_up_reading
    from training.train import TrainingError

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    set_up_reading()
    try:
        config = settings.config_from_flags(TrainConfig, data_dir=FLAGS.data_dir.rstrip("/"))
        report = inspect_training_order(config, FLAGS.split)
    except (settings.SettingError, DataError, TrainingError) as e:  # a missing folder or split, a bad setting
        print(f"inspect_order: error: {e}", file=sys.stderr)
        return 1
    used = report["settings"]
    print(f"{used['kind']} {FLAGS.split}: {used['examples']} examples, batch {used['batch_size']}, "
          f"order={used['order']}, sampling={used['sampling']}, shuffle_buffer="
          f"{used['shuffle_buffer'] or 'whole split'}, seed={used['seed']}")
    print(format_table(report))
    if FLAGS.json:
        write_atomically(FLAGS.json, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))
