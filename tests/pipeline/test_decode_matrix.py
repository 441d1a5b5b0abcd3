"""`--decode_mode=fast` against `--decode_mode=exact`, byte for byte, over a matrix of codecs and stream
structures (`decode_matrix_videos`) and a grid of sampling settings: the same frames (pixels, timestamps, count)
and the same report (warning, partial), or fast mode decoded in full."""

import dataclasses

import av
import pytest

from pipeline import bitstream, decode, packets
from pipeline.decode import DecodeError, DecodeReport, DecodeSettings, decode_frames
from tests.pipeline.decode_matrix_videos import DAMAGED, ENCODED, make_matrix, probe

FPS = (0.5, 1.0, 3.0, 7.0, 12.5, 30.0)
MAX_FRAMES = (None, 1, 3)
STRUCTURES = ("mp4_edit_list", "mp4_start_1_3s", "ts_h264_cut_mid_gop", "ts_hevc_cut_mid_gop", "joined_0_6s",
              "joined_2s", "vfr", "mkv_truncated", "ts_untimed_tail", "mp4_cut_in_packet", "mjpeg_avi_cut_unsampled",
              "mjpeg_avi_cut_sampled", "mpeg4_avi_cut_in_packet", "ts_cut_whole_packets", "ps_cut")
# How fast mode decodes each video at 1 fps: "skipping" (some packets never decoded) or why it decoded in full.
EXPECTED_PATH = {
    "h264_closed": "skipping", "h264_open_gop": "skipping", "h264_pyramid_long": "skipping",
    "h264_short_gop": "skipping", "hevc_open_cra": "skipping", "hevc_closed": "skipping",
    "vp8": "skipping", "vp9": "skipping", "av1": "skipping", "mpeg1_b": "skipping",
    "mpeg1_nob": "skipping", "mpeg2_b": "skipping", "mpeg2_b_ts": "skipping",
    "mpeg4_b_avi": "skipping", "mpeg4_b_avi_intra": "skipping", "mpeg4_nob_avi": "skipping", "mpeg4_b_mp4": "skipping",
    "mjpeg": "skipping", "mp4_edit_list": "skipping", "mp4_start_1_3s": "skipping",
    "ts_h264_cut_mid_gop": "skipping", "ts_hevc_cut_mid_gop": "full_final_units",
    "joined_0_6s": "full_corrupt_packet", "joined_2s": "full_timestamps_go_back", "vfr": "skipping",
    "mkv_truncated": "skipping", "h264_b_avi": "skipping", "mpeg4_interlaced_avi": "skipping",
    "ts_untimed_tail": "exact_after_untimed", "mp4_cut_in_packet": "exact_after_corrupt_packet",
    "mjpeg_avi_cut_unsampled": "exact_after_corrupt_packet", "mjpeg_avi_cut_sampled": "exact_after_corrupt_packet",
    "mpeg4_avi_cut_in_packet": "exact_after_corrupt_packet", "ts_cut_whole_packets": "exact_after_corrupt_frame",
    "ps_cut": "exact_after_corrupt_packet",
}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    return make_matrix(tmp_path_factory.mktemp("matrix"))


def _video(matrix, name):
    if name not in matrix:
        codec = ENCODED[name][1] if name in ENCODED else "libx265"
        pytest.skip(f"this PyAV has no {codec} encoder (av.codecs_available)")
    return str(matrix[name])


def _decode(path, fps, max_frames, mode):
    report = DecodeReport()
    try:
        frames = [(f.index, f.timestamp, f.rgb.tobytes())
                  for f in decode_frames(path, DecodeSettings(fps=fps, max_frames=max_frames, image_size=16,
                                                              mode=mode), report)]
    except DecodeError as e:
        return ("failed", str(e)), report
    return (frames, report.warning, report.partial), report


# The fast loop's rows (`-m "not slow"`), one of each thing fast mode must get right: closed and open GOPs, a
# B-pyramid, HEVC, MPEG-4 open GOPs in AVI, an edit list, a TS cut mid-GOP, timestamps that go back, a variable
# frame rate. The full suite runs every row.
FAST_ROWS = {"h264_closed", "h264_open_gop", "h264_pyramid_long", "hevc_open_cra", "mpeg4_b_avi", "mp4_edit_list",
             "ts_h264_cut_mid_gop", "joined_2s", "vfr"}


def _rows(names):
    return [name if name in FAST_ROWS else pytest.param(name, marks=pytest.mark.slow) for name in names]


@pytest.mark.parametrize("name", _rows(list(ENCODED) + list(STRUCTURES)))
def test_fast_mode_gives_the_frames_of_exact_mode(matrix, name):
    path = _video(matrix, name)
    differing = []
    for fps in FPS:
        for max_frames in MAX_FRAMES:
            exact, _ = _decode(path, fps, max_frames, "exact")
            fast, report = _decode(path, fps, max_frames, "fast")
            assert exact[0] != "failed" and exact[0][0], (name, fps, max_frames, exact)
            if fast != exact:
                got = fast[1] if fast[0] == "failed" else f"{len(fast[0])} frames, warning {fast[1]!r}"
                differing.append(f"fps={fps} max_frames={max_frames}: fast {got} vs exact {len(exact[0])} "
                                 f"frames, warning {exact[1]!r} ({getattr(report, 'path', '') or 'fast'})")
    assert not differing, f"{name}: fast differs from exact at " + "; ".join(differing)


@pytest.mark.parametrize("name", sorted(EXPECTED_PATH))
def test_fast_mode_skips_where_it_is_proven_safe(matrix, name):
    """Which videos fast mode decodes less of (the speed it is for) and which in full (and why): a change that
    loses the skipping, or skips where nothing proves it safe, shows here."""
    _, report = _decode(_video(matrix, name), 1.0, None, "fast")
    assert report.path == EXPECTED_PATH[name]
    read, decoded = report.packets
    if not report.path.startswith("exact_after_"):  # decoded again in exact mode: fast mode's counts are gone
        assert (decoded < read) == (report.path == "skipping")


def test_the_videos_have_the_structures_they_stand_for(matrix):
    """Each video really has the structure its test relies on (a probe of its packets and frames)."""
    found = {name: probe(path) for name, path in matrix.items() if name not in DAMAGED}
    for name in ("h264_closed", "h264_open_gop", "h264_pyramid_long", "mpeg1_b", "mpeg2_b", "mpeg4_b_avi",
                 "mpeg4_b_avi_intra", "mpeg4_b_mp4", "mpeg2_b_ts"):
        assert found[name]["b_frames"], name
    for name in ("mpeg1_nob", "mpeg4_nob_avi", "vp8", "mjpeg"):
        assert not found[name]["b_frames"], name
    for name in ("mpeg1_b", "mpeg2_b", "mpeg4_b_avi", "mpeg4_b_avi_intra", "mpeg4_b_mp4"):  # open GOPs
        assert found[name]["leading"], name
    if "hevc_open_cra" in found:
        assert found["hevc_open_cra"]["leading"] and not found["hevc_closed"]["leading"]
    with av.open(str(matrix["h264_open_gop"])) as container:  # key pictures that are not IDR (recovery points)
        stream = container.streams.video[0]
        restart = packets._Restarts(stream)
        keys = [restart(p) for p in container.demux(stream) if p.size and p.is_keyframe]
    assert keys[0] and not all(keys)
    for name, has_p in (("mpeg4_b_avi", True), ("mpeg4_b_avi_intra", False)):  # I P B, and I B only
        with av.open(str(matrix[name])) as container:
            stream = container.streams.video[0]
            kinds = {bitstream.mpeg_picture_type("mpeg4", bytes(p)) for p in container.demux(stream) if p.size}
        assert kinds == ({"I", "P", "B"} if has_p else {"I", "B"}), name
    assert found["mp4_edit_list"]["discard"]  # the demuxer discards the first 0.5 s (an edit list)
    assert found["mp4_start_1_3s"]["start_time"] == pytest.approx(1.3)
    for name in ("ts_h264_cut_mid_gop", "ts_hevc_cut_mid_gop"):
        if name in found:
            assert found[name]["first_key"] is False and found[name]["keys"] >= 1, name
    assert found["joined_0_6s"]["dts_back"] and found["joined_2s"]["dts_back"]
    assert found["h264_b_avi"]["b_frames"] and not found["h264_b_avi"]["pts_back"]  # decode-order times
    assert found["mpeg4_interlaced_avi"]["b_frames"]
    for name in DAMAGED:  # the demuxer's signs of the damage: a corrupt flag (or none: the TS cut), no timestamps
        packets_read = [(p.is_corrupt, p.pts) for p in _packets(matrix[name])]
        assert any(corrupt for corrupt, _ in packets_read) == (name not in ("ts_cut_whole_packets",
                                                                              "ts_untimed_tail")), name
        assert any(pts is None for _, pts in packets_read) == (name == "ts_untimed_tail"), name


def _packets(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [p for p in container.demux(stream) if p.size]


def test_a_wrong_time_origin_decodes_the_video_again_in_exact_mode(matrix, monkeypatch):
    """The self-check: a plan whose predicted origin is off (injected here) is caught before any frame is
    yielded, and the video is decoded in full; its frames are exact mode's."""
    path = str(matrix["h264_closed"])
    exact, _ = _decode(path, 3.0, None, "exact")
    original = packets.PacketPlan._plan_reason

    def off_by_a_frame(self, unit):
        why = original(self, unit)
        if self.watch.origin is not None and self._timeline.start is None:
            self.watch.origin += 1 / 30
        return why

    monkeypatch.setattr(packets.PacketPlan, "_plan_reason", off_by_a_frame)
    fast, report = _decode(path, 3.0, None, "fast")
    assert fast == exact and report.path == "exact_after_plan_mismatch"


def _wrong_on_the_third_kept_frame(monkeypatch):
    original = packets.Watch.check_kept
    calls = []

    def wrong_on_the_third(self, t):
        calls.append(t)
        if len(calls) == 3 and self.expected is not None:
            self.expected[0] += 1.0
        return original(self, t)

    monkeypatch.setattr(packets.Watch, "check_kept", wrong_on_the_third)


def test_fast_mode_holds_its_frames_so_a_late_anomaly_still_gives_exact_modes(matrix, monkeypatch):
    """A kept frame the plan did not predict after two frames were decoded: fast mode still held them, so the
    video is decoded again in exact mode and the caller sees exact mode's frames only (before this design: the
    video failed, although exact mode decodes it)."""
    path = str(matrix["h264_closed"])
    exact, _ = _decode(path, 3.0, None, "exact")
    _wrong_on_the_third_kept_frame(monkeypatch)
    fast, report = _decode(path, 3.0, None, "fast")
    assert fast == exact and report.path == "exact_after_plan_mismatch"


def test_past_the_hold_exact_mode_continues_after_the_frames_given_out_if_they_were_its_own(matrix, monkeypatch):
    """With nothing held (the bound reached at once), the frames already given out are checked against exact mode's
    first frames: the same, exact mode's others follow; different, the video fails naming --decode_mode=exact."""
    path = str(matrix["h264_closed"])
    exact, _ = _decode(path, 3.0, None, "exact")
    monkeypatch.setattr(decode, "HOLD_BYTES", 0)
    _wrong_on_the_third_kept_frame(monkeypatch)
    fast, report = _decode(path, 3.0, None, "fast")
    assert fast == exact and report.path == "exact_after_plan_mismatch"

    real_decode = decode._decode

    def second_frame_off(path, settings, report, fast):  # fast mode gave out a wrong frame before the anomaly
        for frame in real_decode(path, settings, report, fast):
            yield dataclasses.replace(frame, rgb=frame.rgb ^ 1) if fast and frame.index == 1 else frame

    monkeypatch.setattr(decode, "_decode", second_frame_off)
    _wrong_on_the_third_kept_frame(monkeypatch)
    fast, _ = _decode(path, 3.0, None, "fast")
    assert fast[0] == "failed" and "--decode_mode=exact" in fast[1]


def test_damage_where_fast_mode_skips_goes_unseen_so_the_mode_is_a_content_setting(matrix, tmp_path):
    """Why --decode_mode stays part of what an extraction is (dataformat.integrity): a damaged packet in a part of
    the stream fast mode never decodes stops exact mode early (fewer frames, partial); fast mode does not see it."""
    from dataformat.integrity import EXECUTION_SETTINGS

    source = matrix["h264_closed"]
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        pos = [p.pos for p in container.demux(stream) if p.size][40]  # not sampled at 1 fps
    data = bytearray(source.read_bytes())
    data[pos + 4] |= 0x80  # after the 4-byte NAL length: the NAL header's forbidden_zero_bit set
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    exact, _ = _decode(str(damaged), 1.0, None, "exact")
    fast, _ = _decode(str(damaged), 1.0, None, "fast")
    assert exact[2] and "stopped early" in exact[1]  # exact mode: partial
    assert not fast[2] and len(fast[0]) > len(exact[0])
    assert "decode_mode" not in EXECUTION_SETTINGS
