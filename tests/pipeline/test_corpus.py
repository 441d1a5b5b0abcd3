"""A corpus of real-world bad and odd inputs through one real extraction: every file is either extracted (with the
stated behaviour) or in failures.jsonl with a reason, and summary.json adds up."""

import json

import av
import numpy as np
import pytest

from dataformat.files import read_csv
from tests.entry_points import extract_here
from tests.videos import encode, encode_two_streams, moving, write_audio_only  # noqa: F401 (others import them here)

pytestmark = pytest.mark.slow

VFR_TIMES = [0.0, 0.05, 0.9, 0.95, 1.6, 2.4, 2.45, 3.1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """{video_id: expectation}; expectation is ('failed', reason) or ('ok' | 'partial', frames)."""
    root = tmp_path_factory.mktemp("corpus")
    cases = {}

    def case(video_id, expected):
        cases[video_id] = expected
        (root / video_id).parent.mkdir(parents=True, exist_ok=True)
        return root / video_id

    case("junk/random.mp4", ("failed", "cannot open as a video")).write_bytes(np.random.default_rng(1).bytes(50_000))
    (case("junk/empty.avi", ("failed", "empty file"))).write_bytes(b"")
    (case("junk/notes.mov", ("failed", "cannot open as a video"))).write_text("these are my notes, not a video\n")
    import tensorflow as tf

    case("junk/photo.mp4", ("failed", "a still image")).write_bytes(
        tf.io.encode_jpeg(moving(1)[0]).numpy())
    write_audio_only(case("junk/song.mp4", ("failed", "no video stream (streams found: audio)")))
    # Truncated: Matroska keeps what was written before the cut readable; the header still declares the full
    # duration, so the loss is reported. An MP4 whose index (moov) was at the end cannot be opened at all.
    full = root / "tmp_full.mkv"
    encode(full, moving(48))  # 4 s
    data = full.read_bytes()
    case("odd/truncated.mkv", ("partial", None)).write_bytes(data[: len(data) // 2])
    mp4 = root / "tmp_full.mp4"
    encode(mp4, moving(48))
    case("odd/truncated.mp4", ("failed", "cannot open as a video")).write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    full.unlink()
    mp4.unlink()
    encode(case("odd/short.mp4", ("ok", 1)), moving(3))  # 0.25 s, shorter than one 0.5 s sampling interval
    encode(case("odd/odd_size.mkv", ("ok", 2)), moving(12, height=61, width=97), codec="libx264", pix_fmt="yuv444p")
    rotated = np.zeros((32, 64, 3), np.uint8)
    rotated[:, :32] = 255  # landscape frame, left half white
    encode(case("odd/phone_rotated.mp4", ("ok", 2)), [rotated] * 12, rotation=90)
    vfr = [np.full((48, 64, 3), int(t * 60), np.uint8) for t in VFR_TIMES]
    encode(case("odd/variable_rate.mkv", ("ok", 5)), vfr, times=VFR_TIMES)
    encode(case("odd/huge.mp4", ("ok", 1)), moving(6, height=2160, width=3840))
    encode(case("chien méchant/mon clip é 視頻 01.mp4", ("ok", 2)), moving(12, seed=2))
    # Recordings joined by copying (`cat a.ts b.ts`) restart their timestamps at the joint: every frame after
    # it must be kept on one timeline (skipping them kept 4 of 8 s, status ok, no warning).
    encode(root / "tmp_a.ts", moving(48, seed=7))
    encode(root / "tmp_b.ts", moving(48, seed=8))
    case("odd/joined.ts", ("ok", 16)).write_bytes((root / "tmp_a.ts").read_bytes() + (root / "tmp_b.ts").read_bytes())
    # a raw H.264 elementary stream (raspivid) has no timestamps at all; it crashed the decoder.
    encode(case("odd/raspivid.h264", ("ok", 4)), moving(24, seed=9), container_format="h264")
    # a one-frame stub stream listed before the real video stream; only the stub was read.
    encode_two_streams(case("odd/stub_first.mkv", ("ok", 8)), moving(48, seed=10))
    for tmp in ("tmp_a.ts", "tmp_b.ts"):
        (root / tmp).unlink()
    encode(case("circle/clip.mp4", ("ok", 2)), moving(12, seed=3))
    encode(case("square/clip.mp4", ("ok", 2)), moving(12, seed=4))
    out = tmp_path_factory.mktemp("corpus_out")
    extract_here(root, out, splits="train=1")
    return root, out, cases


def test_every_input_is_extracted_or_failed_with_a_reason(corpus):
    root, out, cases = corpus
    rows = {r["video_id"]: r for r in read_csv(str(out / "splits.csv"))}
    failures = {f["video_id"]: f for f in map(json.loads, (out / "failures.jsonl").read_text().splitlines())}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == len(cases) == summary["extracted"] + summary["failed"]
    assert set(rows) | set(failures) == set(cases)
    for video_id, (status, detail) in cases.items():
        if status == "failed":
            assert video_id in failures and detail in failures[video_id]["error"], (video_id, failures.get(video_id))
        else:
            assert rows[video_id]["status"] == status, (video_id, rows[video_id])
            if detail is not None:
                assert int(rows[video_id]["frames"]) == detail, (video_id, rows[video_id])
    # The truncated Matroska file kept its first frames and says why it has no more.
    warning = next(w for w in summary["warnings"] if w["video_id"] == "odd/truncated.mkv")
    assert "truncated" in warning["warning"] and 1 <= int(rows["odd/truncated.mkv"]["frames"]) < 8
    # Kept whole, but with what a user should know about them.
    warnings = {w["video_id"]: w["warning"] for w in summary["warnings"]}
    assert "timestamps restart 1 time(s)" in warnings["odd/joined.ts"]
    assert "carry no timestamp" in warnings["odd/raspivid.h264"] and "12 fps" in warnings["odd/raspivid.h264"]


def test_joined_recordings_continue_one_timeline(corpus):
    _, out, _ = corpus
    np.testing.assert_allclose(sequences(out)["odd/joined.ts"]["timestamps"], np.arange(16) * 0.5, atol=1e-3)
    # The second half is the second recording (seed 8's pattern), not the first one's frames again.
    images = frames(out, "odd/joined.ts")
    assert np.abs(images[8].astype(float) - images[0].astype(float)).mean() > 20


def test_the_real_video_stream_is_read_not_a_stub_listed_first(corpus):
    _, out, _ = corpus
    found = sequences(out)["odd/stub_first.mkv"]
    assert found["num_frames"] == 8
    np.testing.assert_allclose(found["timestamps"], np.arange(8) * 0.5, atol=1e-3)


def sequences(out):
    import tensorflow_datasets as tfds

    return {ex["video_id"].decode(): ex for ex in
            tfds.as_numpy(tfds.builder_from_directory(str(out / "sequences")).as_dataset(split="train"))}


def frames(out, video_id):
    import tensorflow_datasets as tfds

    found = {ex["frame_index"]: ex["image"] for ex in
             tfds.as_numpy(tfds.builder_from_directory(str(out / "frames")).as_dataset(split="train"))
             if ex["video_id"].decode() == video_id}
    return [found[i] for i in sorted(found)]


def test_variable_frame_rate_is_sampled_by_timestamp(corpus):
    root, out, _ = corpus
    with av.open(str(root / "odd/variable_rate.mkv")) as container:
        stored = [float(f.time) for f in container.decode(video=0)]  # as the muxer rounded them
    assert len(stored) == len(VFR_TIMES) and np.ptp(np.diff(stored)) > 0.5  # really variable
    # At 2 frames/s: the first frame at or after 0, 0.5, 1.0, ... s (a slot without a frame is skipped).
    expected, slot = [], 0.0
    for t in stored:
        if t + 1e-6 >= slot:
            expected.append(t)
            slot = (np.floor(t / 0.5 + 1e-6) + 1) * 0.5
    np.testing.assert_allclose(sequences(out)["odd/variable_rate.mkv"]["timestamps"], expected, atol=1e-3)
    # And they are the frames written for those instants (each frame's brightness encodes its intended time).
    brightness = [float(img.mean()) for img in frames(out, "odd/variable_rate.mkv")]
    intended = [VFR_TIMES[stored.index(t)] for t in expected]
    np.testing.assert_allclose(brightness, [t * 60 for t in intended], atol=6)


def test_rotation_metadata_is_honoured(corpus):
    _, out, _ = corpus
    image = frames(out, "odd/phone_rotated.mp4")[0].astype(float)
    # Stored landscape with the left half white and a 90-degree counterclockwise display rotation: shown with
    # the white half at the bottom.
    top, bottom = image[:30].mean(), image[-30:].mean()
    assert bottom > 200 and top < 50, (top, bottom)


def test_odd_names_and_duplicate_base_names_keep_distinct_ids(corpus):
    _, out, _ = corpus
    found = sequences(out)
    assert {"circle/clip.mp4", "square/clip.mp4", "chien méchant/mon clip é 視頻 01.mp4"} <= set(found)
    labels = json.loads((out / "summary.json").read_text())["class_names"]
    assert "chien méchant" in labels


def test_a_decoder_crash_in_native_code_fails_one_video_not_the_job(tmp_path, monkeypatch):
    """The job here is this test's own process: a crash that reached it would end the test run."""
    from pipeline.isolated_decode import CRASH_MARKER_ENV

    root = tmp_path / "in"
    encode(root / "cat" / "fine.mp4", moving(12))
    encode(root / "cat" / "crash_me.mp4", moving(12, seed=5))
    encode(root / "dog" / "fine.mp4", moving(12, seed=6))
    out = tmp_path / "out"
    monkeypatch.setenv(CRASH_MARKER_ENV, "crash_me")  # read by the decoder's child process
    extract_here(root, out, splits="train=1")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == 3 == summary["extracted"] + summary["failed"]
    # The crash came after the first frame: that frame is kept, with a warning naming the signal.
    warning = next(w for w in summary["warnings"] if w["video_id"] == "cat/crash_me.mp4")["warning"]
    assert "crashed in native code (SIGSEGV)" in warning
    rows = {r["video_id"]: r for r in read_csv(str(out / "splits.csv"))}
    assert rows["cat/crash_me.mp4"]["status"] == "partial" and rows["cat/crash_me.mp4"]["frames"] == "1"
    assert rows["cat/fine.mp4"]["frames"] == rows["dog/fine.mp4"]["frames"] == "2"  # the decoder was restarted
