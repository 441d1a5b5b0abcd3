"""Packs (`pipeline.packs`): how the plan is cut into packs, how a pack's frames are cut into forward passes, and
the decoder pool that hands a pack's frames over in pack order with bounded memory."""

import threading

import pytest

from pipeline.config import DecodeSettings
from pipeline.decode import DecodeReport
from pipeline.isolated_decode import DecoderPool, Failure
from pipeline.packs import MAX_PACK_VIDEOS, Pack, PackBatcher, pack_rows, plan_packs
from pipeline.plan import PlannedVideo


def test_packs_are_consecutive_runs_bounded_by_frames_and_videos():
    assert plan_packs([7, 7, 7, 9, 5, 40, 3], 21) == [range(0, 3), range(3, 5), range(5, 6), range(6, 7)]
    assert plan_packs([1] * (MAX_PACK_VIDEOS + 1), 10**6) == [range(0, MAX_PACK_VIDEOS),
                                                              range(MAX_PACK_VIDEOS, MAX_PACK_VIDEOS + 1)]
    assert plan_packs([7, 0, 7], 0) == [range(0, 1), range(1, 2), range(2, 3)]  # 0: one video per pack
    assert plan_packs([], 256) == []
    video = PlannedVideo("a/b.avi", "/x/a/b.avi", "a", "g", "train")
    assert Pack.from_json(Pack(3, (video, video)).to_json()) == Pack(3, (video, video))


def test_batch_fill_of_ucf_shaped_packs_passes_nine_tenths():
    """Packs of about 256 expected frames of 5-9 frame clips at --feature_batch_size=32 (the default)."""
    frames = [5 + (i * 7) % 5 for i in range(400)]
    fills = [sum(frames[i] for i in r) / pack_rows(sum(frames[i] for i in r), 32) for r in plan_packs(frames, 256)]
    assert min(fills[:-1]) >= 0.9
    assert pack_rows(250, 32) == 256 and pack_rows(7, 32) == 8 and pack_rows(64, 32) == 64


def _video(name):
    return PlannedVideo(name, f"/x/{name}", "a", name, "train")


def _ids(batches):
    return [[(f.video.video_id, f.frame, f.dropped) for f in batch] for batch in batches]


def test_forward_passes_span_videos_and_wait_for_them_to_finish():
    a, b, c = _video("a"), _video("b"), _video("c")
    batcher = PackBatcher(3, hold=64)
    out = []
    for i in range(4):
        out += batcher.add(a, i)
    assert out == []  # a's first batch waits until a has finished (it could still fail)
    out += batcher.finish(a, failed=False)
    assert _ids(out) == [[("a", 0, False), ("a", 1, False), ("a", 2, False)]]
    out += batcher.finish(b, failed=True)  # b failed before any frame: it takes no place
    for i in range(3):
        out += batcher.add(c, i)
    out += batcher.finish(c, failed=False)
    out += batcher.close()
    assert _ids(out)[1:] == [[("a", 3, False), ("c", 0, False), ("c", 1, False)], [("c", 2, False)]]


def test_a_video_failing_after_frames_keeps_their_places_and_is_dropped():
    a, b, c = _video("a"), _video("b"), _video("c")
    batcher = PackBatcher(2, hold=64)
    out = batcher.add(a, 0) + batcher.finish(a, failed=False)
    for i in range(3):
        out += batcher.add(b, i)
    out += batcher.finish(b, failed=True)
    out += batcher.add(c, 0) + batcher.finish(c, failed=False) + batcher.close()
    # c's frame sits where it would had b's frames been good: positions never depend on how b ended.
    assert _ids(out) == [[("a", 0, False), ("b", 0, True)], [("b", 1, True), ("b", 2, True)], [("c", 0, False)]]


def test_a_long_video_streams_out_past_the_hold():
    """Memory stays bounded: beyond `hold` waiting frames the oldest batch goes out before its video finished
    (a deterministic count, so the batches are the same on every run)."""
    long = _video("long")
    batcher = PackBatcher(4, hold=8)
    out = []
    for i in range(40):
        out += batcher.add(long, i)
        assert sum(map(len, batcher._batches)) <= 8 + 4
    assert len(out) == 8 and batcher.released == 32
    out += batcher.finish(long, failed=False) + batcher.close()
    assert [f.frame for batch in out for f in batch] == list(range(40))
    assert batcher.released == 0


@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=pytest.mark.slow)])  # slow: child processes
def test_pool_hands_a_packs_events_over_in_order_with_bounded_lookahead(sample_videos, tmp_path, isolate):
    """Several decoders at once; events come video by video, each video's frames then its report; a missing
    file fails only itself; decoders of later videos stop when `buffer` of their frames are waiting."""
    paths = sorted(str(p) for p in sample_videos.glob("*/*.mp4"))[:5]
    paths.insert(2, str(tmp_path / "missing.mp4"))
    settings = DecodeSettings(fps=8, image_size=16)  # 16 frames each
    decoded = []
    pool = DecoderPool(3, isolate=isolate, buffer=4, prepare=decoded.append)
    ahead = []
    try:
        events = []
        for key, event in pool.decode_in_order([(k, p, settings) for k, p in enumerate(paths)]):
            events.append((key, event[0] if isinstance(event, tuple) else event))
            if len(events) == 6:  # a slow consumer: the decoders run ahead, as far as they may
                threading.Event().wait(1.0)
                ahead.append(len(decoded) - len(events))
    finally:
        pool.close()
    keys = [k for k, _ in events]
    assert keys == sorted(keys)
    for k, path in enumerate(paths):
        mine = [e for key, e in events if key == k]
        if "missing" in path:
            assert len(mine) == 1 and isinstance(mine[0], Failure)
            continue
        assert [f.index for f in mine[:-1]] == list(range(16)) and isinstance(mine[-1], DecodeReport)
        assert mine[0].rgb.shape == (16, 16, 3)
    # The first video's remaining 11 frames, at most 4 of later videos, one prepared frame per decoder waiting to
    # be put; unbounded, the three decoders would have finished all five videos (80 frames) in that second.
    assert 8 <= ahead[0] <= 11 + 4 + 3, ahead
