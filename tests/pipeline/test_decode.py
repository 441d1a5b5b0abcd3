import re

import numpy as np
import pytest

from pipeline.decode import DecodeError, DecodeReport, DecodeSettings, decode_frames
from tests.videos import encode, moving
from tools.samples import render_clip, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """3 s at 10 fps, 64x48: 30 encoded frames."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    frames = list(render_clip(0, 0, 1, 1, seconds=3.0, fps=10, width=64, height=48))
    write_video(str(path), frames, 10, 64, 48)
    return str(path)


def test_samples_one_frame_per_interval_with_real_timestamps(clip):
    frames = list(decode_frames(clip, DecodeSettings(fps=2, image_size=32)))
    assert [f.index for f in frames] == list(range(6))
    np.testing.assert_allclose([f.timestamp for f in frames], [0, 0.5, 1.0, 1.5, 2.0, 2.5], atol=1e-6)
    assert all(f.rgb.shape == (32, 32, 3) and f.rgb.dtype == np.uint8 for f in frames)


def test_default_one_fps(clip):
    assert len(list(decode_frames(clip, DecodeSettings(image_size=16)))) == 3


def test_asking_for_more_fps_than_the_video_has_never_duplicates(clip):
    frames = list(decode_frames(clip, DecodeSettings(fps=25, image_size=16)))
    assert len(frames) == 30
    assert len({f.timestamp for f in frames}) == 30


def test_max_frames(clip):
    report = DecodeReport()
    assert len(list(decode_frames(clip, DecodeSettings(fps=10, max_frames=4, image_size=16), report))) == 4
    assert report.frames == 4 and report.warning is None


def test_frames_resemble_the_rendered_ones(clip):
    rendered = next(render_clip(0, 0, 1, 1, seconds=0.1, fps=10, width=64, height=48))
    decoded = next(decode_frames(clip, DecodeSettings(image_size=48))).rgb
    # Same picture after H.264 and a 64x48 -> 48x48 resize: compare coarse colour means per quadrant.
    for a, b in ((rendered[:24, :32], decoded[:24, :24]), (rendered[24:, 32:], decoded[24:, 24:])):
        assert np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))).max() < 25


@pytest.mark.parametrize("name, data, message", [
    ("empty.mp4", b"", "empty file"),
    ("noise.mp4", bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), "cannot open as a video"),
    ("notes.mov", b"this is a text file, not a video\n" * 20, "cannot open as a video"),
])
def test_bad_files_raise_decode_error_with_reason(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DecodeError, match=message):
        list(decode_frames(str(path), DecodeSettings()))


def test_settings_are_validated():
    with pytest.raises(ValueError, match="fps"):
        DecodeSettings(fps=0)
    with pytest.raises(ValueError, match="max_frames"):
        DecodeSettings(max_frames=0)


@pytest.fixture(scope="module")
def gop_videos(tmp_path_factory):
    """Moving texture at 30 fps with B-frames (x264's pyramid: non-reference frames exist), 4 s each: a long GOP
    (one key frame, like x264's default of 250), phone-like one-second GOPs, and two of those joined by copying
    (timestamps restart at the joint)."""
    root = tmp_path_factory.mktemp("gops")
    rng = np.random.default_rng(3)
    texture = rng.integers(0, 256, (96, 400, 3), dtype=np.uint8)
    frames = [np.ascontiguousarray(texture[:, 2 * i:2 * i + 64]) for i in range(120)]
    encode(root / "long_gop.mp4", frames, 30, g="250", bf="3")
    encode(root / "short_gop.mp4", frames, 30, g="30", bf="3")
    encode(root / "part.ts", frames[:60], 30, g="30", bf="3")
    (root / "joined.ts").write_bytes((root / "part.ts").read_bytes() * 2)
    return root


@pytest.mark.parametrize("name", ["long_gop.mp4", "short_gop.mp4", "joined.ts"])
@pytest.mark.parametrize("fps, max_frames", [(1.0, None), (0.4, None), (7.0, None), (2.0, 3)])
def test_fast_mode_decodes_the_frames_exact_mode_decodes(gop_videos, name, fps, max_frames):
    """--decode_mode=fast skips packets no sampled frame needs: the same frames, byte for byte, at the same
    presentation times; and every report the same."""
    decoded = {}
    for mode in ("exact", "fast"):
        report = DecodeReport()
        frames = list(decode_frames(str(gop_videos / name), DecodeSettings(fps=fps, max_frames=max_frames,
                                                                           image_size=32, mode=mode), report))
        decoded[mode] = ([(f.index, f.timestamp, f.rgb.tobytes()) for f in frames], report)
    (exact, exact_report), (fast, fast_report) = decoded["exact"], decoded["fast"]
    assert len(exact) >= 2 and fast == exact
    assert (fast_report.frames, fast_report.warning, fast_report.partial) == (
        exact_report.frames, exact_report.warning, exact_report.partial)


def test_fast_mode_reads_fewer_packets(gop_videos):
    """What fast mode is for: at 1 fps from 30 fps video with one-second GOPs, most packets are never decoded."""
    report = DecodeReport()
    frames = list(decode_frames(str(gop_videos / "short_gop.mp4"), DecodeSettings(fps=1, image_size=16), report))
    assert len(frames) == 4 and report.path == "skipping"
    assert report.packets == (120, 4)  # the four sampled frames, each an IDR picture here, of 120 packets


# Seeds whose np.random.default_rng(seed).bytes(20000) FFmpeg's probe accepts as a video: raw H.263 whose one
# frame is flagged corrupt, and raw H.261 whose one frame is not (found by scanning seeds; most random files fail
# to open at all, see scripts/probe_random_files.py).
H263_NOISE_SEED, H261_NOISE_SEED = 4577, 15287


@pytest.mark.parametrize("seed, name, message", [
    (H263_NOISE_SEED, "broken.mp4", "named .mp4, but FFmpeg reads it as 'h263' (a bare video stream"),
    (H261_NOISE_SEED, "broken.mkv", "named .mkv, but FFmpeg reads it as 'h261' (a bare video stream"),
    (H263_NOISE_SEED, "broken.h263", "every sampled frame (1) decoded with errors"),
])
def test_random_bytes_that_pass_ffmpegs_probe_fail_rather_than_become_a_frame_of_noise(tmp_path, seed, name,
                                                                                       message):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(seed).bytes(20000))
    with pytest.raises(DecodeError, match=re.escape(message)):
        list(decode_frames(str(path), DecodeSettings(fps=1, image_size=32)))


def test_a_real_container_under_another_containers_name_is_kept_with_a_warning(tmp_path):
    path = tmp_path / "actually_mpegts.mp4"
    encode(path, [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(6)], rate=4, container_format="mpegts")
    report = DecodeReport()
    frames = list(decode_frames(str(path), DecodeSettings(fps=2, image_size=32), report))
    assert len(frames) == 3 and not report.partial
    assert "named .mp4, but FFmpeg reads it as 'mpegts' (another container)" in report.warning


@pytest.mark.slow  # 152 files; the seeds above are the fast loop's share
def test_no_random_file_is_silently_a_video(tmp_path):
    """Random bytes of several sizes, bare and behind plausible headers (scripts/probe_random_files.py runs
    thousands): each one fails or, at the very least, carries a warning."""
    from scripts.probe_random_files import HEADERS, SIZES, outcome_of

    rng = np.random.default_rng(2)
    outcomes = set()
    for seed in (H263_NOISE_SEED, H261_NOISE_SEED, *range(150)):
        header = list(HEADERS.values())[seed % len(HEADERS)]
        data = np.random.default_rng(seed).bytes(20000) if seed > 150 else header + rng.bytes(int(rng.choice(SIZES)))
        path = tmp_path / "broken.mp4"
        path.write_bytes(data)
        outcomes.add(outcome_of(str(path), DecodeSettings(fps=1, image_size=32))[1])
    assert outcomes <= {"failed", "warning"}, outcomes


@pytest.mark.slow
def test_a_damaged_picture_is_reported_alike_in_both_modes_and_every_run(tmp_path):
    """A byte flipped in the first IDR picture: exact mode flags the frame corrupt and warns. FFmpeg's frame
    threads lost that flag on a frame drained right after its packet (fast mode drains there), so fast mode
    skipped on without the warning, and a cut TS gave other pixels in some runs; the decoders use slice threads."""
    import av

    source = tmp_path / "source.mkv"
    encode(source, moving(150, 48, 64), rate=30, codec="libx264", g="30", bf="3")
    with av.open(str(source)) as container:
        first = next(p for p in container.demux(container.streams.video[0]) if p.size)
        pos, size = first.pos, first.size
    data = source.read_bytes()
    damaged = tmp_path / "damaged.mkv"
    noticed = 0
    for offset in range(pos + size // 2, pos + size - 4, 37):
        flipped = bytearray(data)
        flipped[offset] ^= 0x5A
        damaged.write_bytes(bytes(flipped))
        results = []
        for mode in ("exact", "fast", "fast"):
            report = DecodeReport()
            frames = list(decode_frames(str(damaged), DecodeSettings(fps=1, image_size=16, mode=mode), report))
            results.append(([(f.timestamp, f.rgb.tobytes()) for f in frames], report.warning, report.partial))
        assert results[1] == results[0] and results[2] == results[0], offset
        noticed += bool(results[0][1])
    assert noticed, "no flipped byte was noticed by FFmpeg: the test no longer covers a damaged picture"
