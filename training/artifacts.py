"""What a training run leaves in its workdir besides checkpoints: metrics.json, history.csv and its plot.

metrics.json is the record two runs are compared by: test/valid accuracy and loss, per-class accuracy, confusion
matrix, the settings (the TrainConfig), library versions, a fingerprint of the data and `weights_sha256`, a hash
of the evaluated model's weight bytes (equal hashes = bit-identical models), and `pairing`: digests of the
initial weights and of the first epoch's input order, by which an experiment sees that two configurations'
runs of one seed shared their start (training.experiment pairs them only then).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import platform

import numpy as np
import tensorflow as tf

from dataformat.files import write_atomically

DIFFICULTY_RECORDS_CSV = "difficulty_records.csv"
HISTORY_CSV = "history.csv"
HISTORY_PNG = "history.png"
METRICS_JSON = "metrics.json"
INITIAL_WEIGHTS_JSON = "initial_weights.json"  # written when a fresh model is built, read back on resume
PREDICTIONS_CSV = "predictions.csv"


def weights_sha256(model) -> str:
    """SHA-256 over every weight array's dtype, shape and bytes, in the model's weight order."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        digest.update(f"{w.dtype.str}{w.shape}".encode())
        digest.update(w.tobytes())
    return digest.hexdigest()


def record_initial_weights(workdir: str, model) -> None:
    """Keeps the digest of a freshly built model's weights (a resumed run's model is no longer initial)."""
    write_atomically(os.path.join(workdir, INITIAL_WEIGHTS_JSON),
                     json.dumps({"initial_weights_sha256": weights_sha256(model)}) + "\n")


def pairing_record(workdir: str, first_epoch_order_sha256: str) -> dict:
    """metrics.json's "pairing": the initial weights' digest (None for a run begun by an older version) and the
    first epoch's order digest."""
    path = os.path.join(workdir, INITIAL_WEIGHTS_JSON)
    initial = json.loads(tf.io.gfile.GFile(path).read()) if tf.io.gfile.exists(path) else {}
    return {"initial_weights_sha256": initial.get("initial_weights_sha256"),
            "first_epoch_order_sha256": first_epoch_order_sha256}


def _predictions(probabilities: np.ndarray) -> np.ndarray:
    if probabilities.shape[-1] == 1:
        return (probabilities[:, 0] >= 0.5).astype(np.int64)
    return probabilities.argmax(axis=-1)


def _cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    if p.shape[-1] == 1:
        return float(-np.mean(labels * np.log(p[:, 0]) + (1 - labels) * np.log(1 - p[:, 0])))
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def read_history(workdir: str) -> list[dict]:
    path = os.path.join(workdir, HISTORY_CSV)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        return list(csv.DictReader(f))


def truncate_history(workdir: str, epochs: int) -> None:
    """Keeps the rows of history.csv for epochs 0 .. epochs - 1 only (no file when epochs is 0)."""
    path = os.path.join(workdir, HISTORY_CSV)
    if not tf.io.gfile.exists(path):
        return
    if epochs == 0:
        tf.io.gfile.remove(path)
        return
    with tf.io.gfile.GFile(path) as f:
        lines = f.read().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if int(line.split(",", 1)[0]) < epochs]
    write_atomically(path, "\n".join(kept) + "\n")


def _versions() -> dict:
    import importlib.metadata

    import keras
    import tensorflow_datasets as tfds

    # Beam's version from its package metadata: importing it would cost a training run about 2 s.
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "tensorflow_datasets": tfds.__version__, "apache_beam": importlib.metadata.version("apache-beam"),
            "numpy": np.__version__}


def evaluation(labels: np.ndarray, probabilities: np.ndarray, class_names) -> dict:
    """Accuracy, loss, per-class accuracy and confusion matrix of one pass of predictions over a split."""
    predictions = _predictions(probabilities)
    k = len(class_names)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    per_class = {name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, name in enumerate(class_names)}
    return {"accuracy": float(np.mean(predictions == labels)), "loss": _cross_entropy(labels, probabilities),
            "examples": int(len(labels)), "per_class_accuracy": per_class, "confusion_matrix": confusion.tolist()}


def metrics_record(*, config, final, class_names, val_loss, val_accuracy, epochs_run, model, precision,
                   splits_read, data_fingerprint) -> dict:
    """The metrics.json content. `final` maps each final-evaluation split to its `evaluation`; the split named
    `test` (else the first one) also gives the top-level test_accuracy, test_loss, test_examples,
    per_class_accuracy and confusion_matrix (absent when the run has no final split)."""
    record = {}
    if final:
        first = final.get("test") or next(iter(final.values()))
        record.update(test_accuracy=first["accuracy"], test_loss=first["loss"], test_examples=first["examples"],
                      per_class_accuracy=first["per_class_accuracy"], confusion_matrix=first["confusion_matrix"])
    return {
        **record,
        "final_evaluation": final,
        "val_accuracy": float(val_accuracy),
        "val_loss": float(val_loss),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "epochs_run": epochs_run,
        "seed": config.seed,
        "weights_sha256": weights_sha256(model),
        "data_fingerprint": data_fingerprint,
        "precision": precision,
        "splits_read": splits_read,
        "config": dataclasses.asdict(config),  # the run's settings (a TrainConfig), by setting name
        "versions": _versions(),
    }


def write_difficulty_records(workdir: str, records) -> None:
    """Per-epoch confidence of every train/valid example in its true label (see training.monitors)."""
    lines = ["split,video_id,frame_index,epoch,label,confidence,correct"]
    lines += [f"{s},{csv_field(v)},{f},{e},{label},{c:.6f},{int(ok)}" for s, v, f, e, label, c, ok in records]
    write_atomically(os.path.join(workdir, DIFFICULTY_RECORDS_CSV), "\n".join(lines) + "\n")


def write_predictions(workdir: str, splits) -> None:
    """predictions.csv: the selected model's answer for every example of the final-evaluation splits (split,
    video_id, frame_index (-1 for sequences), label, predicted class, its probability, the true label's);
    `splits`: [(split, ids with video_id/frame_index/label arrays, [N, K] class probabilities)]."""
    lines = ["split,video_id,frame_index,label,predicted,confidence,true_confidence"]
    for split, ids, probabilities in splits:
        predicted = probabilities.argmax(axis=-1)
        for i, (video_id, frame_index, label) in enumerate(zip(ids["video_id"], ids["frame_index"], ids["label"])):
            lines.append(f"{split},{csv_field(str(video_id))},{int(frame_index)},{int(label)},{int(predicted[i])},"
                         f"{probabilities[i, predicted[i]]:.6f},{probabilities[i, int(label)]:.6f}")
    write_atomically(os.path.join(workdir, PREDICTIONS_CSV), "\n".join(lines) + "\n")


def csv_field(text: str) -> str:
    """A CSV cell: quoted when it holds a comma, quote or newline."""
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_metrics(workdir: str, metrics: dict) -> None:
    write_atomically(os.path.join(workdir, METRICS_JSON), json.dumps(metrics, indent=2, default=str) + "\n")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on training machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str) -> None:
    """Saves a figure as PNG, atomically and on any file system (`gs://` too: matplotlib writes only local
    files, so the PNG is rendered in memory), and closes it."""
    png = io.BytesIO()
    fig.tight_layout()
    fig.savefig(png, format="png", dpi=80)
    pyplot().close(fig)
    write_atomically(path, png.getvalue())


def plot_history(workdir: str) -> None:
    """history.png: loss and accuracy per epoch, train and valid."""
    plt = pyplot()
    rows = read_history(workdir)
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in rows[0]:
                ax.plot(epochs, [float(r[prefix + key]) for r in rows], style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    save_figure(fig, os.path.join(workdir, HISTORY_PNG))
