import numpy as np
import pytest

from pipeline.decode import DecodeError, DecodeReport, DecodeSettings, decode_frames
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
