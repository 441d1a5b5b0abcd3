"""The diagnosis page's answers about examples (story 002): which train and valid examples are consistently hard
or ambiguous, for the CNN's frames and the LSTM's videos apart (`training.difficulty` over every run's
difficulty_records.csv), and which test examples the runs got wrong, with what they answered (predictions.csv).

"Hard" is a threshold, not a rank, so the hardest list never fills up with easy examples: an example is hard
when it was classified correctly in at most HARD_CORRECTNESS of the epochs and runs that recorded it, or its mean
confidence in its true label is below HARD_CONFIDENCE. "Ambiguous" examples are the others whose confidence
moved by at least AMBIGUOUS_VARIABILITY (its standard deviation) across epochs and runs.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Optional

import tensorflow as tf

from dataformat import files, schema
from tools import charts
from tools.page import esc, jpeg_img, section, table
from tools.report_sections import THUMB, FrameStore
from tools.report_story_runs import same_data

HARD_CORRECTNESS = 0.5
HARD_CONFIDENCE = 0.5
AMBIGUOUS_VARIABILITY = 0.1
STRIP = 4  # frames shown of a video whose sequence is the example
FRAMES, VIDEOS = "frames (CNN)", "videos (LSTM)"


def is_hard(e: dict) -> bool:
    return e["correctness"] <= HARD_CORRECTNESS or e["mean_confidence"] < HARD_CONFIDENCE


def _kind(frame_index: int) -> str:
    return FRAMES if frame_index >= 0 else VIDEOS


def _splits_csv(data_dir: str) -> tuple[dict, dict]:
    rows = files.read_csv(f"{data_dir}/{schema.SPLITS_CSV}")
    return {r["video_id"]: r["group"] for r in rows}, {r["video_id"]: int(r["frames"]) for r in rows}


def _want(frames: FrameStore, video_id: str, frame_index: int, frame_count: dict) -> None:
    for index in [frame_index] if frame_index >= 0 else range(min(STRIP, frame_count.get(video_id, 0))):
        frames.want(video_id, index)


def _runs_on(paths: list[str], data_dir: str) -> tuple[list[str], list[str]]:
    """The difficulty_records.csv files of runs on `data_dir` (or whose data is unknown: no metrics.json yet, as
    in a run still training), and why each other one is left out."""
    kept, left_out = [], []
    for path in paths:
        metrics_path = os.path.join(os.path.dirname(path), "metrics.json")
        if not tf.io.gfile.exists(metrics_path):
            kept.append(path)
            continue
        metrics = json.loads(files.read_text(metrics_path))
        if same_data(metrics, data_dir):
            kept.append(path)
        else:
            left_out.append(f"{os.path.dirname(path)}: trained on "
                            f"{(metrics.get('config') or {}).get('data_dir', '?')}, not {data_dir}")
    return kept, left_out


def prepare_difficulty(paths: list[str], data_dir: str, frames: FrameStore, limit: int) -> Optional[dict]:
    """Per kind (frames, videos) and split: the examples, the hard ones (hardest first) and the ambiguous ones
    not among them (most variable first), the pictures they need asked for. Only runs on `data_dir` count (the
    others' video ids may name other videos); the ones left out are listed with why."""
    from training.difficulty import summarize_by, summarize_examples

    if not paths:
        return None
    paths, left_out = _runs_on(paths, data_dir)
    if not paths:
        return {"lists": {}, "paths": [], "left_out": left_out, "frame_count": {}, "groups": {}}
    group_of, frame_count = _splits_csv(data_dir)
    records = []
    for path in paths:
        for row in files.read_csv(path):
            row["run"] = os.path.dirname(path)
            records.append(row)
    examples = summarize_examples(records, group_of)
    parts = collections.defaultdict(list)
    for e in examples:  # hardest first (summarize_examples' order)
        parts[_kind(e["frame_index"]), e["split"]].append(e)
    count = max(1, limit // max(1, 2 * len(parts)))
    lists = {}
    for key, members in sorted(parts.items()):
        hard = [e for e in members if is_hard(e)]
        ambiguous = sorted((e for e in members if not is_hard(e) and e["variability"] >= AMBIGUOUS_VARIABILITY),
                           key=lambda e: -e["variability"])
        lists[key] = {"examples": members, "hard": hard, "ambiguous": ambiguous, "count": count}
        for e in hard[:count] + ambiguous[:count]:
            _want(frames, e["video_id"], e["frame_index"], frame_count)
    return {"lists": lists, "paths": paths, "left_out": left_out, "frame_count": frame_count,
            "groups": {kind: summarize_by([e for e in examples if _kind(e["frame_index"]) == kind], "group")[:10]
                       for kind in {k for k, _ in parts}}}


def example_picture(frames: FrameStore, video_id: str, frame_index: int, frame_count: dict, caption: str) -> str:
    """A frame's thumbnail, or a video's first frames as a strip, with its caption."""
    if frame_index >= 0:
        data = frames.thumbnail(video_id, frame_index)
        image = jpeg_img(data, f"{video_id} frame {frame_index}", THUMB) if data else '<p class="note">(no frame)</p>'
        return f"<figure>{image}<figcaption>{caption}</figcaption></figure>"
    strip = "".join(jpeg_img(frames.thumbnail(video_id, i), f"{video_id} frame {i}")
                    for i in range(min(STRIP, frame_count.get(video_id, 0))) if frames.thumbnail(video_id, i))
    strip = strip or '<p class="note">(no frames)</p>'
    return f'<figure style="width: 250px"><div class="strip">{strip}</div><figcaption>{caption}</figcaption></figure>'


def _caption(e: dict) -> str:
    frame = f"#{e['frame_index']}" if e["frame_index"] >= 0 else ""
    return (f"{esc(e['split'])} · {esc(e['video_id'])}{frame}<br>group {esc(e['group'] or '?')}<br>confidence "
            f"{e['mean_confidence']:.2f} ± {e['variability']:.2f}<br>correct {e['correctness']:.0%} of "
            f"{e['observations']} epoch(s)")


def _gallery(chosen: list[dict], total: int, frames: FrameStore, frame_count: dict, none: str) -> str:
    if not chosen:
        return f'<p class="good">{none}</p>'
    more = f'<p class="note">{total - len(chosen)} more not shown (difficulty.csv of training.difficulty lists ' \
           "them all).</p>" if total > len(chosen) else ""
    return '<div class="thumbs">' + "".join(example_picture(frames, e["video_id"], e["frame_index"], frame_count,
                                                            _caption(e)) for e in chosen) + "</div>" + more


def _kind_block(kind: str, prepared: dict, frames: FrameStore) -> str:
    parts = {split: v for (k, split), v in prepared["lists"].items() if k == kind}
    everything = [e for v in parts.values() for e in v["examples"]]
    points = [(e["variability"], e["mean_confidence"], e["correctness"],
               f"{e['split']} {e['video_id']} #{e['frame_index']}: {e['mean_confidence']:.2f}") for e in everything]
    body = f"<h3>{esc(kind)}</h3>" + charts.scatter(
        points, "variability (std of the confidence across epochs and runs)", "mean confidence in the true label",
        (0.0, max(0.5, max((e["variability"] for e in everything), default=0.5))))
    body += '<p class="note">Colour: red, rarely classified correctly; blue, always.</p>'
    for split, v in sorted(parts.items(), key=lambda item: (item[0] != "train", item[0])):
        hard, ambiguous, count = v["hard"], v["ambiguous"], v["count"]
        body += (f"<h4>{esc(split)}: hardest ({len(hard)} of {len(v['examples'])} examples are hard)</h4>"
                 + _gallery(hard[:count], len(hard), frames, prepared["frame_count"],
                            f"No {split} example is hard: each was right in more than {HARD_CORRECTNESS:.0%} of its "
                            f"epochs with a mean confidence of at least {HARD_CONFIDENCE}."))
        body += (f"<h4>{esc(split)}: most ambiguous, not among the hardest ({len(ambiguous)} example(s))</h4>"
                 + _gallery(ambiguous[:count], len(ambiguous), frames, prepared["frame_count"],
                            f"No other {split} example's confidence moved by {AMBIGUOUS_VARIABILITY} or more."))
    body += "<h4>Hardest recording groups</h4>" + table(
        ["split", "group", "examples", "mean confidence"],
        [[g["split"], g["group"], g["examples"], g["mean_confidence"]] for g in prepared["groups"][kind]], (0, 1))
    return body


def difficulty_section(prepared: Optional[dict], frames: FrameStore) -> str:
    if not prepared:
        return ""
    kinds = sorted({k for k, _ in prepared["lists"]})
    body = "".join(_kind_block(kind, prepared, frames) for kind in kinds)
    if prepared["left_out"]:
        body = (f'<p class="warn">{len(prepared["left_out"])} run(s) with difficulty records left out, not trained '
                "on this --data_dir (their video ids may name other videos):</p><ul>"
                + "".join(f"<li>{esc(why)}</li>" for why in prepared["left_out"]) + "</ul>" + body)
    what = ("Which examples the model finds hard, over every epoch and run that recorded them (--track_difficulty; "
            "dataset cartography, Swayamdipta et al. 2020; story 002), for the CNN's frames and the LSTM's videos "
            f"apart, train and valid apart. <b>Hard</b>: classified correctly in at most {HARD_CORRECTNESS:.0%} of "
            f"its epochs, or a mean confidence in its true label below {HARD_CONFIDENCE}; only hard examples are "
            "listed, however few. <b>Ambiguous</b>: the others whose confidence moved (standard deviation at least "
            f"{AMBIGUOUS_VARIABILITY}) across epochs and runs. Look at the pictures: mislabelled, unrepresentative "
            "or near-identical frames of one recording explain most of it.")
    return section("difficulty", "Difficulty", what, body, prepared["paths"][:12])


# --- Misclassified test examples ------------------------------------------------------------------------------


def prepare_misclassified(metrics_paths: list[str], data_dir: str, frames: FrameStore, limit: int
                          ) -> Optional[dict]:
    """Every test example some run got wrong (predictions.csv of the runs on `data_dir`), most often wrong
    first, with the class the runs answered most often instead; its pictures asked for."""
    from training.artifacts import PREDICTIONS_CSV

    runs = []
    for path in metrics_paths:
        m = json.loads(files.read_text(path))
        predictions = os.path.join(os.path.dirname(path), PREDICTIONS_CSV)
        if same_data(m, data_dir) and tf.io.gfile.exists(predictions):
            runs.append((FRAMES if (m.get("config") or {}).get("model") == "cnn" else VIDEOS,
                         (m["class_names"], files.read_csv(predictions))))
    if not runs:
        return None
    answers = collections.defaultdict(list)
    for _, (names, rows) in runs:
        for r in rows:
            answers[r["split"], r["video_id"], int(r["frame_index"])].append(
                (names[int(r["label"])], names[int(r["predicted"])], float(r["confidence"])))
    wrong = []
    for (split, video_id, frame_index), got in answers.items():
        misses = [(p, c) for label, p, c in got if p != label]
        if misses:
            predicted = collections.Counter(p for p, _ in misses).most_common(1)[0][0]
            wrong.append({"split": split, "video_id": video_id, "frame_index": frame_index, "label": got[0][0],
                          "predicted": predicted, "wrong": len(misses), "runs": len(got),
                          "confidence": max(c for p, c in misses if p == predicted)})
    wrong.sort(key=lambda w: (-w["wrong"] / w["runs"], -w["confidence"], w["video_id"], w["frame_index"]))
    _, frame_count = _splits_csv(data_dir)
    for w in wrong[:limit]:
        _want(frames, w["video_id"], w["frame_index"], frame_count)
    examples = collections.Counter(_kind(frame_index) for _, _, frame_index in answers)
    runs_by_kind = collections.Counter(kind for kind, _ in runs)
    return {"wrong": wrong, "examples": examples, "runs": runs_by_kind, "frame_count": frame_count, "limit": limit}


def misclassified_section(prepared: Optional[dict], frames: FrameStore) -> str:
    if not prepared:
        return ""
    body = ""
    for kind in (FRAMES, VIDEOS):
        answered = prepared["examples"].get(kind, 0)
        if not answered:
            continue
        wrong = [w for w in prepared["wrong"] if _kind(w["frame_index"]) == kind]
        body += (f"<h3>{esc(kind)}: {len(wrong)} of N = {answered} test examples answered wrongly by at least one "
                 f"of the {prepared['runs'][kind]} run(s) that recorded them</h3>")
        figures = []
        for w in wrong[:prepared["limit"]]:
            frame = f"#{w['frame_index']}" if w["frame_index"] >= 0 else ""
            caption = (f"{esc(w['split'])} · {esc(w['video_id'])}{frame}<br>true <b>{esc(w['label'])}</b>, "
                       f"predicted <b class=\"bad\">{esc(w['predicted'])}</b> ({w['confidence']:.2f})<br>wrong in "
                       f"{w['wrong']} of {w['runs']} run(s)")
            figures.append(example_picture(frames, w["video_id"], w["frame_index"], prepared["frame_count"], caption))
        body += ('<div class="thumbs">' + "".join(figures) + "</div>" if figures else
                 '<p class="good">Every run answered every one of them correctly.</p>')
    what = ("The test examples the runs got wrong, as pictures, with the class they answered instead (its "
            "probability) and in how many runs (predictions.csv, written by every run for its final-evaluation "
            "splits), most often wrong first, frames and videos apart. A class always mistaken for the same other "
            "class, or one recording group throughout, says more than the accuracy does.")
    return section("misclassified", "Misclassified test examples", what, body)
