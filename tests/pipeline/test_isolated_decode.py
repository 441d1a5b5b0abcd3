"""The decoder child process (pipeline.isolated_decode): a child that dies fails at most the video it decodes."""

import os
import signal

import pytest

from pipeline.decode import DecodeReport, DecodeSettings
from pipeline.isolated_decode import DecoderProcess
from tools.samples import render_clip, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """1 s at 8 fps, 32x32."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(str(path), list(render_clip(0, 0, 1, 1, seconds=1.0, fps=8, width=32, height=32)), 8, 32, 32)
    return str(path)


def _decode(decoder, path):
    report = DecodeReport()
    frames = list(decoder.decode(path, DecodeSettings(fps=4, image_size=32), report))
    return frames, report


def test_a_child_killed_while_idle_is_replaced_and_the_next_video_decodes(clip):
    """A dead idle child is replaced before the next request: sent to the dead child, outside the code that
    replaces one, the request failed every later video on that decoder (34 of 36, exit 0)."""
    decoder = DecoderProcess(timeout=60)
    try:
        first, _ = _decode(decoder, clip)
        pid = decoder.pid
        os.kill(pid, signal.SIGKILL)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead (not reaped: the decoder reaps its child)
        second, report = _decode(decoder, clip)
        assert decoder.pid != pid
        assert [f.timestamp for f in second] == [f.timestamp for f in first] and len(first) == 4
        assert report.frames == 4 and report.warning is None
        third, _ = _decode(decoder, clip)  # and the new child serves the videos after it
        assert len(third) == 4
    finally:
        decoder.close()



@pytest.mark.slow
def test_a_fast_decode_holding_its_frames_is_not_taken_for_a_hung_decoder(tmp_path, clip):
    """Fast mode holds its frames until its decode ends cleanly (about a second here); the parent, which stops a
    decoder that sends nothing for --decode_timeout seconds, hears a sign of life meanwhile instead of killing a
    working child."""
    from tests.pipeline.test_corpus import encode, moving

    path = str(tmp_path / "long.mp4")
    encode(path, moving(300, 720, 1280), rate=25, codec="mpeg4")
    decoder = DecoderProcess(timeout=60)
    try:
        _decode(decoder, clip)  # the child has started (its start-up is not what this test times)
        decoder.timeout = 0.4
        report = DecodeReport()
        frames = list(decoder.decode(path, DecodeSettings(fps=25, image_size=64, threads=1), report))
    finally:
        decoder.close()
    assert len(frames) == 300 and report.warning is None, report.warning
