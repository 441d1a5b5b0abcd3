import csv

import pytest

from training.difficulty import load_records, summarize_by, summarize_examples, write_report


def write_run(path, rows):
    path.mkdir(parents=True)
    with open(path / "difficulty_records.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "video_id", "frame_index", "epoch", "label", "confidence", "correct"])
        w.writerows(rows)


def test_cartography_statistics_across_epochs_and_runs(tmp_path):
    # Two runs x two epochs. "hard" is never learnt, "flip" swings between runs, "easy" is learnt at once.
    write_run(tmp_path / "seed_0", [["train", "hard.mp4", 0, 0, 1, 0.1, 0], ["train", "hard.mp4", 0, 1, 1, 0.1, 0],
                                    ["train", "flip.mp4", 2, 0, 0, 0.1, 0], ["train", "flip.mp4", 2, 1, 0, 0.9, 1],
                                    ["valid", "easy.mp4", 0, 0, 0, 0.9, 1], ["valid", "easy.mp4", 0, 1, 0, 0.9, 1]])
    write_run(tmp_path / "seed_1", [["train", "hard.mp4", 0, 0, 1, 0.3, 0], ["train", "hard.mp4", 0, 1, 1, 0.3, 0],
                                    ["train", "flip.mp4", 2, 0, 0, 0.9, 1], ["train", "flip.mp4", 2, 1, 0, 0.1, 0],
                                    ["valid", "easy.mp4", 0, 0, 0, 0.9, 1], ["valid", "easy.mp4", 0, 1, 0, 0.9, 1]])
    records = load_records([str(tmp_path)])
    assert len(records) == 12
    examples = summarize_examples(records, {"hard.mp4": "g1", "flip.mp4": "g1", "easy.mp4": "g2"})
    by_id = {e["video_id"]: e for e in examples}
    assert [e["video_id"] for e in examples] == ["hard.mp4", "flip.mp4", "easy.mp4"]  # hardest first
    assert by_id["hard.mp4"]["mean_confidence"] == pytest.approx(0.2)
    assert by_id["hard.mp4"]["variability"] == pytest.approx(0.1)
    assert by_id["flip.mp4"]["variability"] == pytest.approx(0.4)  # the most ambiguous
    assert by_id["flip.mp4"]["correctness"] == 0.5 and by_id["easy.mp4"]["correctness"] == 1.0
    assert by_id["hard.mp4"]["runs"] == 2 and by_id["hard.mp4"]["observations"] == 4
    assert by_id["flip.mp4"]["frame_index"] == 2 and by_id["hard.mp4"]["group"] == "g1"
    groups = summarize_by(examples, "group")
    assert [(g["split"], g["group"]) for g in groups] == [("train", "g1"), ("valid", "g2")]
    assert groups[0]["mean_confidence"] == pytest.approx(0.35)
    write_report(examples, str(tmp_path / "out"))
    with open(tmp_path / "out" / "difficulty.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["video_id"] for r in rows] == ["hard.mp4", "flip.mp4", "easy.mp4"]
    assert (tmp_path / "out" / "difficulty.png").exists()
