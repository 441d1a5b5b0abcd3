"""The inspector's counts on a known order, and story 002's effect on real extracted frames."""

import numpy as np
import pytest

from tests.entry_points import run_module
from training.inspect_order import inspect_order


def batch(videos, frames, labels, groups=None):
    return {"video_id": np.array(videos), "frame_index": np.array(frames), "label": np.array(labels),
            "group": np.array(groups or videos)}


def test_counts_on_a_known_order():
    # 4 examples, batches of 2, 2 epochs. Epoch 0 sees a#0 twice and never sees b#1; epoch 1 sees all once.
    batches = [batch(["a", "a"], [0, 0], [0, 0], ["g1", "g1"]), batch(["a", "b"], [1, 0], [0, 1], ["g1", "g2"]),
               batch(["b", "a"], [1, 0], [1, 0], ["g2", "g1"]), batch(["b", "a"], [0, 1], [1, 0], ["g2", "g1"])]
    report = inspect_order(batches, num_examples=4, num_classes=2, steps=2)
    e0, e1 = report["epochs"]
    assert (e0["distinct_fraction"], e0["max_repeats"], e0["never_seen"]) == (0.75, 2, 1)
    assert (e1["distinct_fraction"], e1["max_repeats"], e1["never_seen"]) == (1.0, 1, 0)
    assert [b["majority_class_share"] for b in e0["batches"]] == [1.0, 0.5]
    assert [b["class_entropy_bits"] for b in e0["batches"]] == [0.0, 1.0]
    assert [b["max_same_video"] for b in e0["batches"]] == [2, 1]
    assert [b["max_same_group"] for b in e0["batches"]] == [2, 1]
    assert e0["order_fingerprint"] != e1["order_fingerprint"]
    again = inspect_order(batches, num_examples=4, num_classes=2, steps=2)
    assert again["order_fingerprint"] == report["order_fingerprint"]


@pytest.mark.slow
def test_video_ordered_frames_and_a_small_buffer_give_batches_of_one_video(sample_videos, tmp_path):
    from pipeline.job import ExtractConfig, run_extraction
    from tools.samples import SESSION_GROUP_REGEX

    run_extraction(ExtractConfig(output_dir=str(tmp_path), input_dir=str(sample_videos), fps=4, image_size=75,
                                 weights="none", group_regex=SESSION_GROUP_REGEX, frame_order="video"))

    def worst_same_video(*args):
        result = run_module("training.inspect_order", f"--data_dir={tmp_path}", "--model=cnn", "--epochs=2",
                            "--batch_size=16", f"--json={tmp_path}/i.json", *args, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "frames train: 96 examples, batch 16" in result.stdout
        import json
        with open(f"{tmp_path}/i.json") as f:
            return json.load(f)["epochs"][0]["mean_max_same_video"]

    def worst_same_video_here(**settings):  # the library the command calls, in this process
        from training.input_pipeline import InputConfig
        from training.inspect_order import inspect_training_order
        from training.train import TrainConfig

        from tests.training.conftest import process_settings_restored

        config = TrainConfig(data_dir=str(tmp_path), model="cnn", epochs=2,
                             input=InputConfig(batch_size=16, **settings))
        with process_settings_restored():
            return inspect_training_order(config)["epochs"][0]["mean_max_same_video"]

    # 8 frames per video (2 s at 4 fps), 12 train videos, batches of 16. A 4-example buffer keeps each video's
    # run of frames together (about 7 of 16 from one video); the default whole-split shuffle scatters them
    # (about 3.5, what random batches from 12 videos give).
    small, whole = worst_same_video("--shuffle_buffer=4"), worst_same_video_here()
    assert small >= 6 and whole <= 4.5 and small - whole >= 2.5, (small, whole)


def test_a_missing_folder_or_split_is_a_clear_error(tmp_path):
    """A missing folder or split is named in a clear error, not a traceback."""
    from tests.training.conftest import make_config
    from tests.training.test_train_e2e import write_sequences
    from training.inspect_order import inspect_training_order

    with pytest.raises(ValueError, match="is not an extraction output"):
        inspect_training_order(make_config(tmp_path / "nope"))
    write_sequences(str(tmp_path / "data"), {"train": [(0, 2), (1, 2)], "valid": [(0, 2)]})
    with pytest.raises(ValueError, match=r"has no split 'holdout'; it has \['train', 'valid'\]"):
        inspect_training_order(make_config(tmp_path / "data"), "holdout")
