"""The sections of the diagnosis page (`tools.report`): each reads its artifacts and returns HTML, or "" when
they are missing. Computations are the project's own (tools.audit, training.difficulty, training.experiment,
training.inspect_order); this module only lays them out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Optional

import tensorflow as tf

from dataformat import files, schema
from dataformat.schema import DataError
from tools import charts
from tools import report_story_runs as story_runs
from tools.page import esc, jpeg_img, section, table

THUMB = 112  # pixels of a thumbnail's side


def read_extraction(data_dir: str) -> dict:
    """summary.json of an extraction output (its datasets are checked when `FrameStore` opens frames/).

    Raises:
      DataError: `data_dir` is not an extraction output.
    """
    path = f"{data_dir}/{schema.SUMMARY_JSON}"
    if not tf.io.gfile.exists(path):
        raise DataError(f"--data_dir={data_dir} is not an extraction output (no {schema.SUMMARY_JSON}): point it at "
                        "the --output_dir of pipeline.extract")
    return json.loads(files.read_text(path))


class FrameStore:
    """Thumbnails of frames by (video_id, frame_index), read from frames/ in one pass over the splits that hold
    the frames asked for, plus the first frames of the (split, class) cells asked for with `want_class`."""

    def __init__(self, data_dir: str):
        self._data_dir = data_dir
        self._splits = schema.read_splits(data_dir, schema.FRAMES)
        self._wanted: set = set()
        self._cells: dict = {}  # (split, label) -> frames wanted
        self._thumbs: dict = {}
        self.samples: dict = {}  # (split, label) -> [(video_id, frame_index)]

    @property
    def splits(self) -> list[str]:
        return list(self._splits)

    def want(self, video_id: str, frame_index: int) -> None:
        """Asks for a frame's thumbnail; every request must come before `read`."""
        self._wanted.add((video_id, int(frame_index)))

    def want_class(self, split: str, label: int, count: int) -> None:
        """Asks for the first `count` frames of a class in a split (before `read`)."""
        self._cells[(split, int(label))] = max(count, self._cells.get((split, int(label)), 0))

    def class_frames(self, split: str, label: int) -> list[tuple[str, int]]:
        return self.samples.get((split, int(label)), [])

    def thumbnail(self, video_id: str, frame_index: int) -> Optional[bytes]:
        return self._thumbs.get((video_id, int(frame_index)))

    def read(self) -> None:
        """Reads the frames asked for, in one pass that stops as soon as it has them (frames are stored in hashed
        order, so a split's first frames are a fair sample of it); a split is skipped once nothing is missing
        but other splits' cells. Only the frames asked for are decoded and shrunk."""
        missing = set(self._wanted)
        for split, info in self._splits.items():
            cells = {label: count for (s, label), count in self._cells.items() if s == split}
            if not cells and not missing:
                continue
            parse = schema.batch_parser(schema.FRAMES, info.spec,
                                        [schema.VIDEO_ID, schema.FRAME_INDEX, schema.LABEL, schema.IMAGE])
            records = tf.data.TFRecordDataset(list(info.filepaths)).batch(256).map(parse)
            for batch in records.as_numpy_iterator():
                for video, index, label, jpeg in zip(batch[schema.VIDEO_ID], batch[schema.FRAME_INDEX],
                                                     batch[schema.LABEL], batch[schema.IMAGE]):
                    key = (video.decode(), int(index))
                    picks = self.samples.setdefault((split, int(label)), [])
                    if len(picks) < cells.get(int(label), 0):
                        picks.append(key)
                    elif key not in missing:
                        continue
                    missing.discard(key)
                    self._thumbs[key] = _thumbnail(jpeg)
                if not missing and all(len(self.samples.get((split, c), [])) >= n for c, n in cells.items()):
                    break


def _thumbnail(jpeg: bytes) -> bytes:
    image = tf.io.decode_jpeg(jpeg, channels=3)
    small = tf.image.resize(image, (THUMB, THUMB), method="area", antialias=True)
    return tf.io.encode_jpeg(tf.cast(tf.round(small), tf.uint8), quality=80).numpy()


def _figure(frames: FrameStore, video_id: str, frame_index: int, caption: str) -> str:
    data = frames.thumbnail(video_id, frame_index)
    image = jpeg_img(data, f"{video_id} frame {frame_index}", THUMB) if data else "<p class=\"note\">(no frame)</p>"
    return f"<figure>{image}<figcaption>{caption}</figcaption></figure>"


# --- Data ----------------------------------------------------------------------------------------------------


def data_section(data_dir: str, summary: dict, frames: FrameStore, plan: list) -> str:
    """`plan`: the contact sheet's [(split, label, frames)] (`report_classes.thumbnail_plan`), asked of `frames`."""
    from tools.report_classes import counts_html

    names = summary["class_names"]
    body = counts_html(summary)
    failures = files.read_jsonl(f"{data_dir}/{schema.FAILURES_JSONL}")
    warnings = files.read_jsonl(f"{data_dir}/{schema.WARNINGS_JSONL}")
    body += f"<p>{summary['inputs']} inputs: {summary['extracted']} extracted, {summary['failed']} failed, " \
            f"{summary['kept_with_warning']} kept with a warning.</p>"
    if failures:
        body += "<h3>Failed inputs</h3>" + table(["video", "reason"], [[f["video_id"], f["error"]]
                                                                       for f in failures[:50]], (0, 1))
    if warnings:
        body += "<h3>Kept with a warning</h3>" + table(["video", "warning"], [[w["video_id"], w["warning"]]
                                                                             for w in warnings[:50]], (0, 1))
    picks = [(split, names[label], key) for split, label, count in plan
             for key in frames.class_frames(split, label)[:count]]
    sheet = [_figure(frames, video_id, index, f"{esc(split)} · {esc(name)}<br>{esc(video_id)} #{index}")
             for split, name, (video_id, index) in picks]
    if sheet:
        body += "<h3>Frames per split and class</h3><div class=\"thumbs\">" + "".join(sheet) + "</div>"
    what = ("What the extraction wrote: counts per split and class, every input it could not use and why, and real "
            "frames of every split, of as many classes as --thumbnails allows (the runs' worst classes first). "
            "Check that the classes look like what you meant, that no split lacks a class, and that failures are "
            "files you expected to fail.")
    return section("data", "Data", what, body, [f"{data_dir}/{n}" for n in (schema.SUMMARY_JSON, schema.SPLITS_CSV,
                                                                          schema.FAILURES_JSONL, schema.WARNINGS_JSONL,
                                                                          schema.FRAMES)])


# --- Leakage -------------------------------------------------------------------------------------------------


def _frame_id(text: str) -> tuple[str, int]:
    video, _, index = text.rpartition("#")
    return video, int(index)


def leakage_verdict(report: dict) -> tuple[str, str]:
    """tools.audit's one verdict (overlap and near-duplicates weighed together) as (page class, sentence)."""
    from tools.audit import verdict

    level, text = verdict(report)
    return {"leak": "bad", "suspect": "warn", "clean": "good"}[level], text


def train_split_of_runs(metrics_paths: list[str], data_dir: str) -> str:
    """The split the runs on `data_dir` trained on (their --train_split, the most common one), else "train"."""
    import collections

    from tools.audit import TRAIN

    named = collections.Counter()
    for path in metrics_paths:
        config = json.loads(files.read_text(path))
        if story_runs.same_data(config, data_dir) and (config.get("config") or {}).get("train_split"):
            named[config["config"]["train_split"]] += 1
    return named.most_common(1)[0][0] if named else TRAIN


def prepare_leakage(data_dir: str, frames: FrameStore, limit: int, metrics_paths: list[str] = ()) -> dict:
    """tools.audit's report, the other splits compared with the split the runs trained on; its example pairs'
    frames asked for."""
    from tools.audit import audit

    report = audit(data_dir, examples=max(1, limit // 4), train_split=train_split_of_runs(list(metrics_paths),
                                                                                          data_dir))
    for duplicates in report["near_duplicates"].values():
        for example in duplicates["examples"]:
            for frame in (example["frame"], example["train_frame"]):
                frames.want(*_frame_id(frame))
    return report


def leakage_section(report: dict, frames: FrameStore) -> str:
    videos, groups = report["videos_in_several_splits"], report["groups_in_several_splits"]
    level, text = leakage_verdict(report)
    body = f'<p class="{level}">{esc(text)}</p>'
    if videos or groups:
        body += table(["video or group", "splits"], [[v["video_id"], ", ".join(v["splits"])] for v in videos[:20]]
                      + [[g["group"], ", ".join(g["splits"])] for g in groups[:20]], (0, 1))
    for split, d in sorted(report["near_duplicates"].items()):
        body += (f"<h3>{esc(split)}: {d['with_near_duplicate_in_train']} of {d['frames']} frames ({d['share']:.0%}) "
                 f"have a near-duplicate in {esc(report['train_split'])}, {d['of_which_same_video']} of them from the same video</h3>")
        pairs = []
        for e in d["examples"]:
            (video, index), (train_video, train_index) = _frame_id(e["frame"]), _frame_id(e["train_frame"])
            images = "".join(jpeg_img(frames.thumbnail(v, i), f"{v} frame {i}", THUMB)
                             for v, i in ((video, index), (train_video, train_index)) if frames.thumbnail(v, i))
            pairs.append(f'<figure style="width: {2 * THUMB + 8}px"><div class="pair">{images}</div><figcaption>'
                         f"{esc(split)}: {esc(e['frame'])}<br>{esc(report['train_split'])}: {esc(e['train_frame'])}<br>dHash distance "
                         f"{e['distance']} of 64</figcaption></figure>")
        if pairs:
            body += '<div class="thumbs">' + "".join(pairs) + "</div>"
    what = ("Whether validation and test really hold unseen recordings: videos or groups on both sides of a split, "
            "and frames of valid/test whose near-duplicate (64-bit difference hash within "
            f"{report['max_distance']} bits) is in the training split ({esc(str(report['train_split']))}), shown side by side. Near-duplicates from other videos of "
            "one group mean the --group_regex is too fine; from the same video, a frame-level split (story 002).")
    return section("leakage", "Leakage", what, body, [f"{report['data_dir']}/frames (python -m tools.audit)"])


# --- Runs ----------------------------------------------------------------------------------------------------

RUNS_SHOWN = 12  # run blocks on the page; the others are named


def run_block(metrics_path: str, frames: Optional[FrameStore] = None, pictured: Optional[dict] = None) -> str:
    """One run: its verdict, curves (the learning rate under the loss), confusion matrix, per-class accuracy and
    settings (its most confused pairs pictured as `report_classes.prepare_confusion_frames` asked of `frames`)."""
    from tools.report_classes import confusion_html

    m = json.loads(files.read_text(metrics_path))
    workdir = os.path.dirname(metrics_path)
    curves = story_runs.run_curves(workdir, m)
    if m.get("collapsed"):
        verdict = ('<p class="bad">COLLAPSED: the model ends up answering one class (the red epochs). Story 001: try '
                   "another --seed, a lower --learning_rate, or --lr_schedule=cyclic.</p>")
    else:
        recovered = m.get("recovered_collapses") or []
        verdict = '<p class="good">Not collapsed' + (f" (recovered from {len(recovered)} collapse(s), shaded)"
                                                     if recovered else "") + ".</p>"
    scores = story_runs.scores(m)
    body = (f"<h3>{esc(workdir)}</h3>{verdict}<p>{esc(m['config'].get('model', ''))}: {esc(scores)}; "
            f"{m.get('epochs_run')} epochs; seed {m.get('seed')}; weights <code>{esc(m.get('weights_sha256', ''))[:16]}"
            f"</code>; data <code>{esc(m.get('data_fingerprint', ''))[:16]}</code></p>{curves}")
    if m.get("confusion_matrix"):
        body += confusion_html(m, frames, pictured)
    body += story_runs.settings_table(m.get("config") or {})
    return body


def runs_section(metrics_paths: list[str], frames: Optional[FrameStore] = None,
                 with_frames: Optional[dict] = None) -> str:
    if not metrics_paths:
        return ""
    what = ("Each training run: loss and accuracy per epoch (red: epochs in which the model answered one class; "
            "dashed: the epoch whose model was kept), its test confusion matrix and per-class accuracy, its settings "
            "and the hash of its weights (equal hashes: identical models).")
    shown, rest = metrics_paths[:RUNS_SHOWN], metrics_paths[RUNS_SHOWN:]
    body = "".join(run_block(p, frames, (with_frames or {}).get(p)) for p in shown)
    if rest:
        body += (f'<p class="warn">{len(rest)} more run(s) not shown (the page shows the first {RUNS_SHOWN}): '
                 + ", ".join(f"<code>{esc(os.path.dirname(p))}</code>" for p in rest)
                 + ". Give --runs their folders to see them.</p>")
    return section("runs", "Runs", what, body, shown)


# --- Experiments ---------------------------------------------------------------------------------------------


def _partial_report(runs: list[str]) -> Optional[dict]:
    """An experiment still running (or stopped): its finished runs, compared as training.experiment would."""
    from training.experiment_report import build_report

    results: dict = {}
    for run in sorted(runs):
        metrics = os.path.join(run, "metrics.json")
        if tf.io.gfile.exists(metrics):
            results.setdefault(os.path.basename(os.path.dirname(run)), []).append(
                json.loads(files.read_text(metrics)))
    metric = "test_accuracy" if all("test_accuracy" in r for rs in results.values() for r in rs) else "val_accuracy"
    return build_report(results, metric) if results else None


def experiment_block(report: dict, where: str, partial: Optional[str] = None) -> str:
    """One experiment: every seed's value, each configuration with the test-set size of its accuracy, and each
    comparison's analysis (paired or not, and why), interval, p, verdict and the seeds a study would need."""
    from training.experiment_report import better_text, examples_label, upgrade_report

    report = upgrade_report(report)
    metric = report["metric"]
    configurations = report["configurations"]
    rows = [[name, c["n"], c["mean"], examples_label(c), _interval(c), c["minimum"],
             c["maximum"], c["collapsed_runs"]] for name, c in configurations.items()]
    body = f"<h3>{esc(where)}</h3>"
    if partial:
        body += f'<p class="bad">PARTIAL: {esc(partial)}</p>'
    if report.get("recomputed"):
        body += f'<p class="note">This experiment.json was {esc(report["recomputed"])}.</p>'
    body += charts.strip_plot(configurations, metric)
    body += table(["configuration", "seeds", f"mean {metric}", "test examples", "95% interval (seeds and test set)",
                   "min", "max", "collapsed"], rows)
    body += "".join(_comparison_paragraph(c, metric, better_text(c, metric), min(
        configurations.get(c["a"], {}).get("n", 2), configurations.get(c["b"], {}).get("n", 2)))
        for c in report["comparisons"])
    return body


def _interval(c: dict) -> str:
    """A configuration's 95% interval, or why it has none (one seed has no spread to measure)."""
    low, high = c.get("ci_low"), c.get("ci_high")
    if c.get("n", 0) < 2 or low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "none: needs 2+ seeds"
    return f"[{low:.3f}, {high:.3f}]"


def _comparison_paragraph(c: dict, metric: str, better: str, seeds: int) -> str:
    """A comparison; `seeds`: the fewer seeds of its two configurations (one seed: no interval, no verdict)."""
    points = 100 if metric.endswith("accuracy") else 1
    unit = " points" if points == 100 else ""
    if seeds < 2:
        return (f"<p><b>{esc(c['a'])}</b> vs <b>{esc(c['b'])}</b>: {points * c['difference']:+.2f}{unit}; no interval "
                "and no verdict: each configuration needs 2+ seeds.</p>")
    verdict = (f'<span class="good">{esc(c["verdict"])}</span>' if c["distinguishable"]
               else f'<span class="bad">{esc(c["verdict"])}</span>')
    return (f"<p><b>{esc(c['a'])}</b> vs <b>{esc(c['b'])}</b>: {points * c['difference']:+.2f}{unit} (95% "
            f"interval {points * c['ci_low']:+.2f} to {points * c['ci_high']:+.2f}), p = {c['p_value']:.3g} "
            f"({esc(c['test'])}); better: {esc(better)}. {verdict}</p><ul><li>Analysis: {esc(c['method_reason'])}.</li>"
            f"<li>Seeds needed: {esc(c['seeds_advice'])}</li></ul>")


def experiments_section(paths: list[str], partial: dict) -> str:
    blocks = [experiment_block(json.loads(files.read_text(p)), os.path.dirname(p)) for p in paths]
    for root, runs in sorted(partial.items()):
        try:
            report = _partial_report(runs)
        except ValueError as e:  # a run's value the statistics refuse (e.g. NaN): this experiment only, named
            blocks.append(f"<h3>{esc(root)}</h3><p class=\"bad\">PARTIAL, not compared: {esc(str(e))}</p>")
            continue
        finished = sum(tf.io.gfile.exists(os.path.join(r, "metrics.json")) for r in runs)
        note = (f"{finished} of the {len(runs)} runs started so far have finished; no experiment.json yet (still "
                "running, or stopped: rerun the same training.experiment command to finish it)")
        blocks.append(experiment_block(report, root, note) if report else
                      f"<h3>{esc(root)}</h3><p class=\"bad\">PARTIAL: {esc(note)}</p>")
    if not blocks:
        return ""
    what = ("Is a difference between configurations real, or seed noise (story 000)? Every seed is a dot; the bar is "
            "the mean's 95% interval, which counts the spread between seeds and the test set's own sampling noise (an "
            "accuracy from N examples is no surer than a binomial proportion). Configurations whose runs of one "
            "seed share initial weights and input order are compared seed by seed (paired). A difference is "
            "distinguishable when its interval excludes 0, which it does only when an exact permutation test of the "
            "seeds gives p <= 0.05 and, with the test-set size known, so does the test that adds the test set's "
            "noise; otherwise run the seeds (or collect the test examples) given before believing it.")
    return section("experiments", "Experiments", what, "".join(blocks), paths + sorted(partial))


# --- Input order ---------------------------------------------------------------------------------------------


def order_section(metrics_paths: list[str], max_batches: int = 200) -> str:
    """What the first run's input pipeline feeds the model in its first epoch, rebuilt by
    training.inspect_order from the run's own settings (no training, no decoding)."""
    import settings
    from training.inspect_order import inspect_training_order
    from training.train import TrainConfig

    for path in metrics_paths:
        m = json.loads(files.read_text(path))
        logging.disable(logging.INFO)  # the run's set-up lines (seeds, precision) are training's, not the page's
        try:
            config = settings.config_from_dict(TrainConfig, m["config"])
            report = inspect_training_order(dataclasses.replace(config, epochs=1), config.train_split)
        except (KeyError, TypeError, ValueError):  # an older metrics.json, or its data moved: try the next run
            continue
        finally:
            logging.disable(logging.NOTSET)
        batches = report["epochs"][0]["batches"][:max_batches]
        classes = len(schema.read_spec(config.data_dir).class_names)
        body = (f"<h3>{esc(os.path.dirname(path))}: {report['settings']['kind']} {esc(config.train_split)}, batch "
                f"{report['settings']['batch_size']}, order={esc(report['settings']['order'])}, "
                f"sampling={esc(report['settings']['sampling'])}</h3>")
        body += charts.bars([b["majority_class_share"] for b in batches], "majority class share", "batch", 1.0,
                            1 / classes, "perfectly mixed")
        body += charts.bars([b["max_same_video"] for b in batches], "most examples of one video", "batch")
        what = ("The first epoch as the model receives it, batch by batch, rebuilt from the run's own settings: how "
                "much of each batch is one class, and how many of its examples come from one video. Batches of one "
                "class or one video (frames written video by video and a small shuffle buffer, story 002) make "
                "training and validation loss swing; shuffle the whole split (the default) or write frames hashed.")
        return section("order", "Input order", what, body, [path])
    return ""
