"""Regression tests from an adversarial review of the diagnosis page's promises (docs/diagnosing.md): each
builds the files runs write (difficulty_records.csv, metrics.json, predictions.csv) or an extraction output
(pipeline.synthetic), and checks the page's claim against an oracle computed here from those files."""

import json

import numpy as np


def _data(data_dir, class_names=("cat", "dog"), per_split=(("train", 6), ("valid", 2), ("test", 2))):
    from pipeline.synthetic import SyntheticVideo, write_extraction

    rng = np.random.default_rng(3)
    videos = []
    for label in range(len(class_names)):
        for split, n in per_split:
            for i in range(n):
                frames = rng.integers(0, 255, (2, 8, 8, 3)).astype(np.uint8)
                features = rng.normal(0, 1, (2, 2048)).astype(np.float32)
                videos.append(SyntheticVideo(f"c{label}/{split}{i}.mp4", label, split, features, frames))
    write_extraction(str(data_dir), videos, class_names)
    return videos


def _records(run_dir, rows):
    """difficulty_records.csv as training.artifacts writes it: (split, video_id, frame_index, epoch, label,
    confidence, correct)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = ["split,video_id,frame_index,epoch,label,confidence,correct"]
    lines += [f"{s},{v},{f},{e},{label},{c:.6f},{int(ok)}" for s, v, f, e, label, c, ok in rows]
    (run_dir / "difficulty_records.csv").write_text("\n".join(lines) + "\n")


def test_ambiguous_list_never_repeats_a_hard_example_even_beyond_the_shown_hard_ones(tmp_path):
    """Five train frames wrong in every epoch with a swinging confidence (hard, and variable); the page shows
    only `count` of the hard ones. Story 002: "ambiguous" never repeats a hard example (shown or not)."""
    from tools.report_sections import FrameStore
    from tools.report_story_difficulty import is_hard, prepare_difficulty

    _data(tmp_path / "data")
    rows = []
    for i in range(5):  # hard: never correct, confidence 0.05 / 0.45 -> mean 0.25, std 0.2
        for epoch, c in enumerate((0.05, 0.45)):
            rows.append(("train", f"c0/train{i}.mp4", 0, epoch, 0, c, False))
    for i in range(5):  # easy: always correct, confident
        for epoch in range(2):
            rows.append(("train", f"c1/train{i}.mp4", 0, epoch, 1, 0.95, True))
    _records(tmp_path / "runs" / "cnn", rows)
    oracle_hard = {f"c0/train{i}.mp4" for i in range(5)}

    prepared = prepare_difficulty([str(tmp_path / "runs" / "cnn" / "difficulty_records.csv")],
                                  str(tmp_path / "data"), FrameStore(str(tmp_path / "data")), limit=4)
    lists = prepared["lists"]["frames (CNN)", "train"]
    assert {e["video_id"] for e in lists["hard"]} == oracle_hard
    ambiguous = {e["video_id"] for e in lists["ambiguous"]}
    assert not ambiguous & oracle_hard, f"hard examples listed as ambiguous: {sorted(ambiguous & oracle_hard)}"
    assert not any(is_hard(e) for e in lists["ambiguous"])
