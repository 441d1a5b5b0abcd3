"""The reconciliation before publishing (`pipeline.reconcile`) on a real extraction output: intact, it passes
and says what it checked; with one record, row or reason removed or added, it names the input concerned; in the
job, a damaged staging output stops the run and leaves the previous output as it was."""

import csv
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from dataformat import schema
from pipeline.job import ExtractConfig, ExtractionError, list_inputs, run_extraction
from pipeline.plan import PlannedVideo
from pipeline.reconcile import ReconciliationError, reconcile_output
from pipeline.splits import assign_splits

pytestmark = pytest.mark.slow

SETTINGS = dict(weights="none", image_size=75, fps=2, splits="train=0.5,valid=0.5")


@pytest.fixture(scope="module")
def extraction(tmp_path_factory):
    """A real output of 4 tiny clips (4 frames each), random bytes that FFmpeg's probe takes for raw H.263, an
    empty file, and a file outside any class folder (a listing problem); with its config."""
    from tools.samples import write_samples

    inputs = tmp_path_factory.mktemp("inputs")
    write_samples(str(inputs), seed=0, num_classes=2, sessions=2, clips=1, seconds=2.0, video_fps=4, width=48,
                  height=32)
    (inputs / "circle" / "broken.mp4").write_bytes(np.random.default_rng(4577).bytes(20000))
    (inputs / "square" / "empty.mp4").write_bytes(b"")
    (inputs / "stray.mp4").write_bytes(b"not in a class folder")
    config = ExtractConfig(output_dir=str(tmp_path_factory.mktemp("out") / "extracted"), input_dir=str(inputs),
                           **SETTINGS)
    summary = run_extraction(config)
    return config, summary


def plan_of(config):
    listing = list_inputs(config)
    split_of = assign_splits(listing.records, {"train": 0.5, "valid": 0.5}, config.split_salt).split_of_video
    plan = [PlannedVideo(r.video_id, r.path, r.label, r.group, split_of[r.video_id]) for r in listing.records]
    return plan, listing.problems


def test_an_intact_output_passes_and_summary_says_what_was_checked(extraction):
    config, summary = extraction
    check = summary["reconciliation"]
    assert check["passed"] and check["inputs"] == 7 == summary["inputs"]
    assert check["statuses"] == {"failed": 2, "ok": 4} and check["listing_problems"] == 1
    assert check["frames_records"] == 16 == summary["frames"] and check["sequences_records"] == 4
    failed = {json.loads(line)["video_id"] for line in open(f"{config.output_dir}/failures.jsonl")}
    assert failed == {"circle/broken.mp4", "square/empty.mp4", "stray.mp4"}
    assert json.load(open(f"{config.output_dir}/summary.json"))["reconciliation"]["passed"]


def rewrite_shard_without_one_record(out, kind, duplicate=False):
    """Removes (or repeats) the first record of the first non-empty shard of `kind`; returns its video id."""
    for path in sorted(tf.io.gfile.glob(f"{out}/{kind}/{kind}-*.tfrecord-*")):
        records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
        if records:
            with tf.io.TFRecordWriter(path) as writer:
                for record in (records + records[:1] if duplicate else records[1:]):
                    writer.write(record)
            example = tf.train.Example.FromString(records[0])
            return example.features.feature[schema.VIDEO_ID].bytes_list.value[0].decode()
    raise AssertionError("no records")


def edit_csv(out, video_id=None, add=None):
    with open(f"{out}/splits.csv") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if r["video_id"] != video_id] + ([dict(rows[0], **add)] if add else [])
    with open(f"{out}/splits.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)


def edit_jsonl(out, video_id):
    lines = [line for line in open(f"{out}/failures.jsonl") if json.loads(line)["video_id"] != video_id]
    open(f"{out}/failures.jsonl", "w").writelines(lines)


DAMAGES = {
    "a frames/ record removed": (lambda out: rewrite_shard_without_one_record(out, "frames"), "frames/ holds 3"),
    "a frames/ record repeated": (lambda out: rewrite_shard_without_one_record(out, "frames", True),
                                  "frames/ holds 5"),
    "a sequences/ record removed": (lambda out: rewrite_shard_without_one_record(out, "sequences"),
                                    "sequences/ holds 0"),
    "a splits.csv row removed": (lambda out: edit_csv(out, "circle/s01_c01.mp4") or "circle/s01_c01.mp4",
                                 "an input with no row in splits.csv"),
    "a failed video's reason removed": (lambda out: edit_jsonl(out, "circle/broken.mp4") or "circle/broken.mp4",
                                        "failures.jsonl has no reason"),
    "a listing problem's reason removed": (lambda out: edit_jsonl(out, "stray.mp4") or "stray.mp4",
                                           "left out by the listing"),
    "a row that was not an input": (lambda out: edit_csv(out, add={"video_id": "circle/ghost.mp4"})
                                    or "circle/ghost.mp4", "a row in splits.csv but not an input"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_one_missing_or_extra_record_names_the_input(extraction, tmp_path, damage):
    config, _ = extraction
    out = str(tmp_path / "copy")
    shutil.copytree(config.output_dir, out)
    plan, problems = plan_of(config)
    reconcile_output(out, plan, problems, "video")  # the copy is intact
    apply, message = DAMAGES[damage]
    video_id = apply(out)
    with pytest.raises(ReconciliationError, match="not published") as raised:
        reconcile_output(out, plan, problems, "video")
    assert f"{video_id}: " in str(raised.value) and message in str(raised.value), str(raised.value)


def test_a_damaged_staging_output_stops_the_run_and_the_previous_output_stays(extraction):
    config, _ = extraction
    before = {name: open(f"{config.output_dir}/{name}", "rb").read() for name in ("summary.json", "splits.csv")}

    def drop_a_frame_record(staging):
        drop_a_frame_record.video_id = rewrite_shard_without_one_record(staging, "frames")

    with pytest.raises(ExtractionError, match="does not account for every input") as raised:
        run_extraction(config, before_check=drop_a_frame_record)
    assert f"{drop_a_frame_record.video_id}: splits.csv says 4 frame(s), frames/ holds 3" in str(raised.value)
    assert {name: open(f"{config.output_dir}/{name}", "rb").read() for name in before} == before


def test_repeated_runs_with_several_decoders_and_local_workers_all_account_for_every_input(tmp_path):
    """A small version of scripts/stress_extraction.py (which also runs worker processes, too slow here): each run
    publishes a reconciled output listing exactly the random-bytes and the empty file as failures, and the same
    shards as the others."""
    from scripts.stress_extraction import stress

    results = stress(str(tmp_path), repeats=1, configs=[(1, "in_process"), (4, "in_process"), (2, "threads"),
                                                        (4, "threads")], seed=7)
    assert [r["problems"] for r in results] == [[]] * 4
    assert len({r["digest"] for r in results}) == 1
