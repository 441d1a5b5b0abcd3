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


def test_a_near_duplicate_share_just_above_25_percent_is_a_leak(tmp_path):
    """1251 of 5003 test frames (25.005%) are copies of train frames, in other videos and groups: above 25%, so
    LEAK (the audit must not judge its share rounded to 4 decimals, 0.25, which is not above 25%)."""
    from pipeline.synthetic import SyntheticVideo, write_extraction
    from tools.audit import NEAR_DUPLICATE_LEAK, audit, verdict

    rng = np.random.default_rng(0)
    train = rng.integers(0, 255, (1251, 8, 8, 3)).astype(np.uint8)
    test = np.concatenate([train, rng.integers(0, 255, (3752, 8, 8, 3)).astype(np.uint8)])
    features = rng.normal(0, 1, (1, 2048)).astype(np.float32)
    write_extraction(str(tmp_path / "data"), [SyntheticVideo("a/train.mp4", 0, "train", features, train),
                                              SyntheticVideo("b/train.mp4", 1, "train", features, train[:2]),
                                              SyntheticVideo("a/test.mp4", 0, "test", features, test)], ("a", "b"))
    report = audit(str(tmp_path / "data"))
    test_part = report["near_duplicates"]["test"]
    assert (test_part["with_near_duplicate_in_train"], test_part["frames"]) == (1251, 5003)
    assert 1251 / 5003 > NEAR_DUPLICATE_LEAK
    assert verdict(report)[0] == "leak", verdict(report)[1]


def test_no_green_verdict_when_no_split_is_named_train_and_the_frames_repeat(tmp_path):
    """--splits=fit=0.8,holdout=0.2 is a valid extraction (split names are free; training takes --train_split=fit).
    Every holdout frame is a copy of a fit frame, in another video and group: the audit compares nothing (it looks
    for a split named "train") and calls it clean. Expected: not a green "No leak" over frames never compared."""
    from pipeline.synthetic import SyntheticVideo, write_extraction
    from tools.audit import audit, verdict

    rng = np.random.default_rng(0)
    fit = rng.integers(0, 255, (8, 8, 8, 3)).astype(np.uint8)
    features = rng.normal(0, 1, (1, 2048)).astype(np.float32)
    write_extraction(str(tmp_path / "data"), [SyntheticVideo("a/x.mp4", 0, "fit", features, fit),
                                              SyntheticVideo("b/x.mp4", 1, "fit", features, fit[::-1]),
                                              SyntheticVideo("a/y.mp4", 0, "holdout", features, fit)], ("a", "b"))
    level, text = verdict(audit(str(tmp_path / "data")))
    assert level != "clean", text
