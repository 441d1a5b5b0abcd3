"""The class-scale parts of the diagnosis page (`tools.report`), laid out for 3 classes as for 400: counts per
class as rows or a sorted distribution with the imbalanced classes named, which frames the contact sheet shows,
the confusion matrix (a table up to TABLE_CLASSES classes, else a heatmap picture with confused classes side by
side), the most confused pairs with frames of both classes, and per-class accuracy worst first.

Nothing here is wider than a few columns, whatever the number of classes.
"""

from __future__ import annotations

import base64
import collections
import io
import json
import os
import statistics
from typing import Optional, Sequence

import numpy as np

from dataformat import files
from tools import charts
from tools.page import esc, heat_table, jpeg_img, table

TABLE_CLASSES = 20  # up to this many classes, counts and confusion are tables with a column per class (or split)
NAMED = 8  # classes named at each end of a distribution
WORST = 30  # rows of the per-class accuracy list
PAIRS = 10  # most confused pairs listed per run
MISTAKES = 2  # mistaken examples pictured per confused pair (from the run's predictions.csv)
THUMB = 112


def _classes_of(summary: dict, split: str) -> dict:
    return summary["splits"][split]["classes"]


# --- Counts --------------------------------------------------------------------------------------------------


def counts_html(summary: dict) -> str:
    """Videos per split (one row each), then per class: a class-by-split table when there are few classes, else
    per split a sorted bar chart with the rarest and commonest classes and the classes it lacks named."""
    names, splits = summary["class_names"], list(summary["splits"])
    rows = []
    for split in splits:
        per_class = [_classes_of(summary, split).get(n, {}).get("videos", 0) for n in names]
        present = [v for v in per_class if v]
        median = statistics.median(present) if present else 0
        rows.append([split, summary["splits"][split]["videos"], summary["splits"][split]["frames"],
                     summary["splits"][split]["groups"], f"{len(present)} of {len(names)}",
                     min(present, default=0), f"{median:g}", max(present, default=0)])
    body = table(["split", "videos", "frames", "groups", "classes", "fewest videos of a class", "median",
                  "most"], rows)
    if len(names) <= TABLE_CLASSES:
        class_rows = [[n] + [_classes_of(summary, s).get(n, {}).get("videos", 0) for s in splits] for n in names]
        return body + "<h3>Videos per class</h3>" + table(["class"] + [f"{s} (videos)" for s in splits], class_rows)
    for split in splits:
        counts = sorted(((_classes_of(summary, split).get(n, {}).get("videos", 0), n) for n in names),
                        key=lambda c: (c[0], c[1]))
        missing = [n for v, n in counts if v == 0]
        held = [(v, n) for v, n in counts if v]
        body += f"<h3>{esc(split)}: videos per class, most to fewest</h3>"
        body += charts.bars([v for v, _ in reversed(counts)], "videos", f"class ({len(names)}, sorted)")
        body += (f"<p>Fewest: {_named(held[:NAMED])}.<br>Most: {_named(held[::-1][:NAMED])}.</p>"
                 if held else "")
        if missing:
            body += (f'<p class="bad">{len(missing)} class(es) have no video in {esc(split)}: '
                     f"{_listed(missing)}.</p>")
    return body


def _named(counts: Sequence[tuple[int, str]]) -> str:
    return ", ".join(f"{esc(n)} ({v})" for v, n in counts)


def _listed(names: Sequence[str], cap: int = 20) -> str:
    more = f" and {len(names) - cap} more" if len(names) > cap else ""
    return ", ".join(esc(n) for n in names[:cap]) + more


# --- Which frames the contact sheet shows ----------------------------------------------------------------------


def class_priority(metrics_paths: Sequence[str], names: Sequence[str]) -> list[int]:
    """Class indices, the worst classes first: by the mean per-class test accuracy over the runs (classes
    without one after), in class order when there is no run."""
    scores: dict = {}
    for path in metrics_paths:
        per_class = json.loads(files.read_text(path)).get("per_class_accuracy") or {}
        for i, name in enumerate(names):
            if per_class.get(name) is not None:
                scores.setdefault(i, []).append(per_class[name])
    return sorted(range(len(names)), key=lambda i: (i not in scores, float(np.mean(scores.get(i, [0]))), i))


def thumbnail_plan(summary: dict, limit: int, priority: Sequence[int], per_cell: int = 4) -> list[tuple]:
    """[(split, label, frames)] for the contact sheet: at most `limit` frames, every split, as many classes as
    fit. With room for every (split, class), each gets up to `per_cell` frames; otherwise one frame each, the
    classes in `priority` order handed to the splits in turn (class k to split k, then k + 1, ...) so that
    every split appears and no class repeats before all have been shown."""
    names, splits = summary["class_names"], list(summary["splits"])
    held = {(s, i) for s in splits for i, n in enumerate(names) if _classes_of(summary, s).get(n, {}).get("videos")}
    if not held or limit <= 0:
        return []
    if len(held) <= limit:
        each = max(1, min(per_cell, limit // len(held)))
        return [(s, i, each) for s in splits for i in priority if (s, i) in held]
    plan: list[tuple] = []
    chosen: set = set()
    for turn in range(len(splits)):
        for k, label in enumerate(priority):
            split = splits[(k + turn) % len(splits)]
            if len(plan) < limit and (split, label) in held and (split, label) not in chosen:
                chosen.add((split, label))
                plan.append((split, label, 1))
    return sorted(plan, key=lambda p: splits.index(p[0]))


# --- Confusion -----------------------------------------------------------------------------------------------


def class_order(confusion: np.ndarray) -> np.ndarray:
    """The classes reordered so that classes confused with each other sit together: average-linkage clustering
    of the symmetrised row-normalised confusion (off the diagonal), leaves in order. Deterministic."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    k = len(confusion)
    if k < 3:
        return np.arange(k)
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    np.fill_diagonal(shares, 0)
    affinity = shares + shares.T
    distance = affinity.max() - affinity
    np.fill_diagonal(distance, 0)
    return leaves_list(linkage(squareform(distance, checks=False), method="average"))


def confused_pairs(confusion: np.ndarray, count: int) -> list[tuple[int, int, int, float]]:
    """The `count` largest off-diagonal cells as (true, predicted, examples, share of the true class's
    examples), largest first (ties: higher share, then class order)."""
    totals = np.maximum(confusion.sum(axis=1), 1)
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    cells = np.argwhere(off > 0)
    ranked = sorted(((int(off[t, p]), off[t, p] / totals[t], int(t), int(p)) for t, p in cells),
                    key=lambda c: (-c[0], -c[1], c[2], c[3]))[:count]
    return [(t, p, n, float(share)) for n, share, t, p in ranked]


def heatmap_png(confusion: np.ndarray, names: Sequence[str], order: np.ndarray) -> bytes:
    """The row-normalised confusion in `order` as a PNG (one cell per class pair; at most about 40 names on
    each axis)."""
    from matplotlib import colors

    from training.artifacts import pyplot

    plt = pyplot()
    k = len(names)
    shares = (confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1))[np.ix_(order, order)]
    fig, ax = plt.subplots(figsize=(8.4, 8), dpi=100)
    shown = ax.imshow(shares, cmap="Blues", norm=colors.PowerNorm(0.5, 0, 1), interpolation="nearest")
    step = max(1, int(np.ceil(k / 40)))
    ticks = np.arange(0, k, step)
    labels = [str(names[order[i]])[:24] for i in ticks]
    ax.set_xticks(ticks, labels, rotation=90, fontsize=6)
    ax.set_yticks(ticks, labels, fontsize=6)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(shown, ax=ax, shrink=0.8, label="share of the true class's test examples")
    png = io.BytesIO()
    fig.savefig(png, format="png", bbox_inches="tight")
    plt.close(fig)
    return png.getvalue()


def png_img(data: bytes, alt: str) -> str:
    """An inline PNG that shrinks with the page."""
    return (f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{esc(alt)}" '
            'style="max-width: 100%; height: auto">')


def _splits_by_preference(splits: Sequence[str]) -> list[str]:
    """Where a class's example frame comes from: test (what the confusion counts), valid, train, the others."""
    return sorted(splits, key=lambda s: ({"test": 0, "valid": 1, "train": 2}.get(s, 3), s))


def _confusion_split(m: dict) -> str:
    """The split metrics.json's confusion_matrix counts (training.artifacts.metrics_record): test, else the first."""
    final = m.get("final_evaluation") or {}
    return "test" if "test" in final or not final else next(iter(final))


def pair_mistakes(metrics_path: str, m: dict, pairs: Sequence[tuple]) -> Optional[dict]:
    """From the run's predictions.csv: per confused pair (true, predicted), its examples of the confusion's split
    that the run predicted so, most confident first (at most MISTAKES); None when the run wrote none."""
    import tensorflow as tf

    from training.artifacts import PREDICTIONS_CSV

    path = os.path.join(os.path.dirname(metrics_path), PREDICTIONS_CSV)
    if not tf.io.gfile.exists(path):
        return None
    split, wanted, found = _confusion_split(m), {(t, p) for t, p, _, _ in pairs}, collections.defaultdict(list)
    for r in files.read_csv(path):
        key = (int(r["label"]), int(r["predicted"]))
        if r["split"] == split and key in wanted:
            found[key].append((r["video_id"], int(r["frame_index"]), float(r["confidence"])))
    return {key: sorted(v, key=lambda e: (-e[2], e[0], e[1]))[:MISTAKES] for key, v in found.items()}


def prepare_confusion_frames(metrics_paths: Sequence[str], summary: dict, frames, limit: int, data_dir: str
                             ) -> dict:
    """Asks `frames` (before it reads), for each of the most confused pairs, for its mistaken examples (runs on
    `data_dir` with predictions.csv) or else one frame of each class (from the first split of test, valid, train
    that holds the class), run by run until `limit` pictures are asked for; returns {metrics path: {"pairs": how
    many of its pairs are pictured, "mistakes": pair_mistakes or None}}."""
    from tools.report_story_runs import same_data

    budget, shown = limit, {}
    names = summary["class_names"]
    for path in metrics_paths:
        m = json.loads(files.read_text(path))
        if not m.get("confusion_matrix") or m.get("class_names") != names:
            continue
        pairs = confused_pairs(np.asarray(m["confusion_matrix"]), min(PAIRS, budget // 2))
        mistakes = pair_mistakes(path, m, pairs) if same_data(m, data_dir) else None
        if mistakes is not None:
            for video_id, frame_index, _ in (e for v in mistakes.values() for e in v):
                frames.want(video_id, max(0, frame_index))
        for label in {c for t, p, _, _ in pairs for c in (t, p)} if mistakes is None else ():
            split = next((s for s in _splits_by_preference(summary["splits"])
                          if _classes_of(summary, s).get(names[label], {}).get("videos")), None)
            if split is not None:
                frames.want_class(split, label, 1)
        budget -= 2 * len(pairs)
        shown[path] = {"pairs": len(pairs), "mistakes": mistakes}
    return shown


def confusion_html(m: dict, frames, pictured: Optional[dict] = None) -> str:
    """A run's test confusion (a table up to TABLE_CLASSES classes, else a heatmap picture in an order that puts
    confused classes together), its most confused pairs (the first pictured["pairs"] with their mistaken
    examples, or for a run without predictions.csv a frame of each class), and per-class accuracy worst first."""
    confusion, names = np.asarray(m["confusion_matrix"]), m["class_names"]
    if len(names) <= TABLE_CLASSES:
        body = "<h4>Confusion matrix (test)</h4>" + heat_table(confusion.tolist(), names)
    else:
        order = class_order(confusion)
        body = (f"<h4>Confusion matrix (test, {len(names)} classes)</h4>"
                + png_img(heatmap_png(confusion, names, order), "confusion matrix heatmap")
                + '<p class="note">Rows: true class, columns: predicted, shade: share of the row. Classes are '
                "ordered so that classes confused with each other sit together (clustering of the symmetrised "
                "confusion): a dark square off the diagonal is a group of classes the model mixes up.</p>"
                + "<details><summary>class order of the picture</summary><p>"
                + ", ".join(esc(names[i]) for i in order) + "</p></details>")
    pairs = confused_pairs(confusion, PAIRS)
    if pairs:
        rows = [[names[t], names[p], n, f"{share:.0%}"] for t, p, n, share in pairs]
        body += "<h4>Most confused pairs (test)</h4>" + table(["true class", "predicted as", "examples",
                                                               "share of the true class"], rows, (0, 1))
        pictured = pictured or {"pairs": 0, "mistakes": None}
        mistakes = pictured["mistakes"]
        if mistakes is not None and frames and pictured["pairs"]:
            body += _mistake_figures(frames, names, pairs[:pictured["pairs"]], mistakes, _confusion_split(m))
            return body + per_class_html(m)
        figures = [_pair_figure(frames, names, pair) for pair in pairs[:pictured["pairs"]]] if frames else []
        if any(figures):
            body += ('<p class="note">A frame of each class (from test, else valid, else train): the run records '
                     "no prediction per example, so these show the two classes, not the mistakes."
                     '</p><div class="thumbs">' + "".join(figures) + "</div>")
    return body + per_class_html(m)


def _pair_figure(frames, names, pair) -> str:
    t, p, n, share = pair
    keys = [next((k for s in _splits_by_preference(frames.splits) for k in frames.class_frames(s, label)), None)
            for label in (t, p)]
    if not all(keys):
        return ""
    images = "".join(jpeg_img(frames.thumbnail(*k), f"{names[c]}: {k[0]} frame {k[1]}", THUMB)
                     for k, c in zip(keys, (t, p)) if frames.thumbnail(*k))
    return (f'<figure style="width: {2 * THUMB + 8}px"><div class="pair">{images}</div><figcaption>'
            f"{esc(names[t])} → {esc(names[p])}: {n} ({share:.0%})</figcaption></figure>")


def _mistake_figures(frames, names, pairs, mistakes: dict, split: str) -> str:
    """Each confused pair's mistaken examples (predictions.csv), most confident first."""
    figures = []
    for t, p, n, share in pairs:
        for video_id, frame_index, confidence in mistakes.get((t, p), []):
            data = frames.thumbnail(video_id, max(0, frame_index))
            image = jpeg_img(data, f"{video_id} frame {max(0, frame_index)}", THUMB) if data else \
                '<p class="note">(no frame)</p>'
            where = f"#{frame_index}" if frame_index >= 0 else " (first frame of the video)"
            figures.append(f"<figure>{image}<figcaption>true <b>{esc(names[t])}</b>, predicted <b class=\"bad\">"
                           f"{esc(names[p])}</b> ({confidence:.2f})<br>{esc(video_id)}{where}</figcaption></figure>")
    return (f'<p class="note">Mistakes of the most confused pairs: {esc(split)} examples of the true class the run '
            f"predicted as the other (its predictions.csv), at most {MISTAKES} per pair, most confident first.</p>"
            '<div class="thumbs">' + "".join(figures) + "</div>")


def per_class_html(m: dict) -> str:
    """Per-class test accuracy, worst first (at most WORST rows), with each class's test examples and what it
    is most often taken for."""
    confusion, names = np.asarray(m["confusion_matrix"]), m["class_names"]
    totals = confusion.sum(axis=1)
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    accuracy = {i: confusion[i, i] / totals[i] for i in range(len(names)) if totals[i]}
    worst = sorted(accuracy, key=lambda i: (accuracy[i], i))
    rows = [[names[i], float(accuracy[i]), int(totals[i]),
             f"{names[int(off[i].argmax())]} ({off[i].max()})" if off[i].max() else ""] for i in worst[:WORST]]
    values = list(accuracy.values())
    shown = f"the {len(rows)} worst of {len(names)}" if len(worst) > len(rows) else f"all {len(names)}"
    note = (f"<p>Per-class test accuracy, {shown} classes, worst first: median {statistics.median(values):.3f}, "
            f"{sum(v == 0 for v in values)} class(es) at 0" if values else "<p>No test examples")
    empty = [names[i] for i in range(len(names)) if not totals[i]]
    note += f"; {len(empty)} class(es) without test examples: {_listed(empty)}.</p>" if empty else ".</p>"
    return "<h4>Per-class accuracy (test)</h4>" + note + table(
        ["class", "accuracy", "test examples", "most often predicted instead"], rows, (0, 3))
