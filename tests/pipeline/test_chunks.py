"""Chunked local extraction, in process: chunk planning, sorted spills, and a merge that writes one-pass bytes."""

import dataclasses
import logging
import random

import pytest

from dataformat import schema, shards
from pipeline import chunks, job, spills
from pipeline.plan import PlannedVideo
from pipeline.decode import DecodeSettings


def test_chunks_are_consecutive_and_hold_at_most_the_setting():
    frames = [4, 4, 4, 10, 30, 1, 1, 0, 2]
    parts = chunks.plan_chunks(frames, 10)
    assert [i for part in parts for i in part] == list(range(len(frames)))  # every video once, in plan order
    assert [sum(frames[i] for i in part) for part in parts] == [8, 4, 10, 30, 4]  # a longer video stays whole
    assert chunks.plan_chunks([], 10) == []
    assert chunks.plan_chunks(frames, 10**6) == [range(len(frames))]


def test_frames_are_estimated_from_declared_durations(sample_videos, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    paths = [str(p) for p in sorted(sample_videos.glob("*/*.mp4"))[:3]] + [str(bad)]
    # 2 s clips sampled at 2 fps give frames at 0, 0.5, 1 and 1.5 s; the unreadable file counts as the median.
    assert chunks.estimate_frames(paths, DecodeSettings(fps=2)) == [4, 4, 4, 4]
    assert chunks.estimate_frames(paths[:1], DecodeSettings(fps=2, max_frames=3)) == [3]


def _records(n, seed):
    rng = random.Random(seed)
    return [(shards.sort_key(f"video{i}", i % 7), rng.randbytes(rng.randrange(1, 300))) for i in range(n)]


def test_sorted_merge_of_spills_writes_the_shards_write_shard_writes(tmp_path):
    records = _records(200, 0)
    n = 3
    # One pass: each shard from its own records (what WriteShards does).
    one = tmp_path / "one"
    one.mkdir()
    for index in range(n):
        shards.write_shard(str(one), "x", "train", index, n,
                           [r for r in records if shards.shard_of(r[0], n) == index])
    # Chunked: four chunks spill their records (in any order), the merge streams them into all shards at once.
    spill_dirs = []
    for c in range(4):
        d = tmp_path / f"chunk{c}"
        d.mkdir()
        info = spills.write_spill(str(d), "train", records[c::4][::-1])
        spills.write_spill_index(str(d), [info])
        spill_dirs.append(str(d))
    assert spills.splits_of(spill_dirs) == {"train": {"records": 200, "bytes": sum(len(r[1]) for r in records)}}
    merged = tmp_path / "merged"
    merged.mkdir()
    infos = shards.write_sorted_shards(str(merged), "x", "train", spills.merged(spill_dirs, "train"), n)
    assert sum(i.num_examples for i in infos) == 200
    for index in range(n):
        name = schema.shard_file_name("x", "train", index, n)
        assert (merged / name).read_bytes() == (one / name).read_bytes(), name
    assert not [p for p in merged.iterdir() if ".tmp-" in p.name]


def test_records_out_of_key_order_are_refused(tmp_path):
    records = sorted(_records(5, 1))
    with pytest.raises(ValueError, match="out of order"):
        shards.write_sorted_shards(str(tmp_path), "x", "train", records[::-1], 2)


def test_a_job_that_will_not_fit_says_so_with_the_estimate_and_the_setting(sample_videos, monkeypatch, caplog):
    plan = [PlannedVideo(str(p.relative_to(sample_videos)), str(p), p.parent.name, p.name, "train")
            for p in sorted(sample_videos.glob("*/*.mp4"))]  # 18 videos of 4 frames
    config = job.ExtractConfig(output_dir="unused_out", input_dir="unused_in", fps=2, image_size=75,
                                      chunk_frames=8, pack_frames=8)
    options = job.PipelineOptions([])
    monkeypatch.setattr(job, "_available_memory", lambda: 10 * 2**30)
    with caplog.at_level(logging.INFO):
        parts = job._plan_chunks(config, options, plan)
    assert len(parts) == 9 and all(len(part) == 1 and len(part[0].videos) == 2 for part in parts)
    assert [pack.index for part in parts for pack in part] == list(range(9))  # numbered over the whole plan
    assert "about 72 frames to extract in 9 packs (--pack_frames=8), 9 chunks" in caplog.text
    assert "out of memory" not in caplog.text

    monkeypatch.setattr(job, "_available_memory", lambda: 2**20)  # 1 MiB free
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        job._plan_chunks(config, options, plan)
    assert "about 8 frames at once need about" in caplog.text and "--chunk_frames" in caplog.text
    # Distributed runners keep one pass unless asked, with the same packs; with --pack_frames=0 they need no
    # estimate (one video per pack).
    dataflow = job.PipelineOptions(["--runner=DataflowRunner"])
    (one_pass,) = job._plan_chunks(dataclasses.replace(config, chunk_frames=None), dataflow, plan)
    assert one_pass == [pack for part in parts for pack in part]
    (per_video,) = job._plan_chunks(dataclasses.replace(config, chunk_frames=None, pack_frames=0), dataflow, plan)
    assert [pack.videos for pack in per_video] == [(video,) for video in plan]
