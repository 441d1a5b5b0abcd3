"""Tiny videos of every codec and stream structure `--decode_mode=fast` must handle, each with a probe of the
structure it is meant to have (B-frames, open GOPs, edit lists, cuts, joints), for tests/pipeline/test_decode_matrix.py.

Content is a random texture moving 3 px a frame, so a frame decoded from the wrong references differs visibly.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from tests.videos import encode, moving

RATE = 30
B_PICTURE = 3  # AV_PICTURE_TYPE_B
os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
QUIET_X265 = "log-level=error"
# FFmpeg's MPEG encoders code this moving noise as I pictures only unless scene-change detection is off; with it
# off, P pictures (which the muxers flag as key too) and B pictures between them. "mpeg4_b_avi_intra" keeps the
# default: I and B pictures, the leading B pictures referring to the previous GOP's last I picture.
P_PICTURES = {"sc_threshold": "1000000000"}


def _frames(seconds: float, height=48, width=64, seed=0):
    return moving(int(round(seconds * RATE)), height=height, width=width, seed=seed)


# name -> (file name, codec, container format or None, encoder options, seconds, frame size)
ENCODED = {
    "h264_closed": ("h264_closed.mp4", "libx264", None, dict(g="30", bf="3"), 3.0, (48, 64)),
    "h264_open_gop": ("h264_open.mp4", "libx264", None, {"g": "30", "bf": "3", "x264-params": "open-gop=1"}, 3.0,
                      (48, 64)),
    "h264_pyramid_long": ("h264_long.mkv", "libx264", None, {"g": "250", "bf": "3", "x264-params": "b-pyramid=normal"},
                          3.0, (48, 64)),
    "h264_short_gop": ("h264_short.mp4", "libx264", None, dict(g="5", bf="2"), 2.0, (48, 64)),
    "hevc_open_cra": ("hevc_open.mp4", "libx265", None, {"x265-params": f"keyint=30:open-gop=1:{QUIET_X265}"}, 3.0,
                      (64, 96)),
    "hevc_closed": ("hevc_closed.mkv", "libx265", None, {"x265-params": f"keyint=30:open-gop=0:{QUIET_X265}"}, 3.0,
                    (64, 96)),
    "vp8": ("vp8.webm", "libvpx", None, dict(g="30"), 2.0, (48, 64)),
    "vp9": ("vp9.webm", "libvpx-vp9", None, dict(g="30"), 2.0, (48, 64)),
    "av1": ("av1.mkv", "libsvtav1", None, dict(g="30", preset="12"), 2.0, (64, 96)),
    "mpeg1_b": ("mpeg1_b.mpg", "mpeg1video", "mpeg", dict(g="15", bf="2", **P_PICTURES), 3.0, (48, 64)),
    "mpeg1_nob": ("mpeg1.mpg", "mpeg1video", "mpeg", dict(g="15", bf="0", **P_PICTURES), 2.0, (48, 64)),
    "mpeg2_b": ("mpeg2_b.mpg", "mpeg2video", "mpeg", dict(g="15", bf="2", **P_PICTURES), 3.0, (48, 64)),
    "mpeg2_b_ts": ("mpeg2_b.ts", "mpeg2video", None, dict(g="15", bf="2", **P_PICTURES), 3.0, (48, 64)),
    "mpeg4_b_avi": ("mpeg4_b.avi", "mpeg4", None, dict(g="15", bf="2", **P_PICTURES), 3.0, (48, 64)),
    "mpeg4_b_avi_intra": ("mpeg4_b_intra.avi", "mpeg4", None, dict(g="15", bf="2"), 3.0, (48, 64)),
    "mpeg4_nob_avi": ("mpeg4.avi", "mpeg4", None, dict(g="15", bf="0", **P_PICTURES), 2.0, (48, 64)),
    "mpeg4_b_mp4": ("mpeg4_b.mp4", "mpeg4", None, dict(g="15", bf="2", **P_PICTURES), 3.0, (48, 64)),
    "mjpeg": ("mjpeg.avi", "mjpeg", None, {}, 1.0, (48, 64)),
    # AVI stores no reordering: each packet's pts is its decode position, so frames come out of order.
    "h264_b_avi": ("h264_b.avi", "libx264", None, dict(g="30", bf="3"), 3.0, (48, 64)),
    "mpeg4_interlaced_avi": ("mpeg4_interlaced.avi", "mpeg4", None,
                             dict(g="15", bf="2", flags="+ilme+ildct", **P_PICTURES), 3.0, (48, 64)),
}


def _pix_fmt(codec: str) -> str:
    return "yuvj420p" if codec == "mjpeg" else "yuv420p"


def _remux(source: Path, target: Path, shift_seconds: float, start_packet: int = 0, **mux_options) -> None:
    """Copies the video packets of `source` from the `start_packet`-th on (decode order) into `target`, every
    timestamp moved by `shift_seconds` (negative: the packets before that instant are to be discarded by an edit
    list, as `ffmpeg -ss ... -c copy` writes)."""
    with av.open(str(source)) as inp, av.open(str(target), "w", options=mux_options) as out:
        stream_in = inp.streams.video[0]
        stream_out = out.add_stream_from_template(stream_in)
        shift = int(round(shift_seconds / stream_in.time_base))
        for i, packet in enumerate(inp.demux(stream_in)):
            if packet.size == 0 or i < start_packet:
                continue
            packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
            packet.stream = stream_out
            out.mux(packet)


def _cut_mid_gop(source: Path, target: Path, seconds: float) -> None:
    """The bytes of a TS file from the 188-byte packet holding the first non-key video packet at or after
    `seconds` on: a recording that starts in the middle of a group of pictures."""
    with av.open(str(source)) as inp:
        stream = inp.streams.video[0]
        pos = next(p.pos for p in inp.demux(stream)
                   if p.size and not p.is_keyframe and p.pts * stream.time_base >= seconds)
    data = source.read_bytes()
    target.write_bytes(data[pos - pos % 188:])


# Damaged streams (`_damaged`): their probe cannot decode them through
DAMAGED = ("ts_untimed_tail", "mp4_cut_in_packet", "mjpeg_avi_cut_unsampled", "mjpeg_avi_cut_sampled",
           "mpeg4_avi_cut_in_packet", "ts_cut_whole_packets", "ps_cut")


def _cut_in_packet(source: Path, target: Path, packet: int, keep: int) -> None:
    """`source` cut `keep` bytes into its `packet`-th video packet (decode order): a download or copy broken
    off (`keep` < 0: that many bytes before the packet's end)."""
    with av.open(str(source)) as inp:
        stream = inp.streams.video[0]
        pos, size = [(p.pos, p.size) for p in inp.demux(stream) if p.size][packet]
    target.write_bytes(source.read_bytes()[:pos + (keep if keep >= 0 else size + keep)])


def _continuous_counters(data: bytes) -> bytes:
    """TS bytes with each PID's continuity counter counting on across joints (as a splicer rewrites them;
    `cat` leaves a jump, which the demuxer flags corrupt)."""
    out, counters = bytearray(data), {}
    for i in range(0, len(out) - 187, 188):
        pid = ((out[i + 1] & 0x1F) << 8) | out[i + 2]
        if out[i + 3] & 0x10:  # carries a payload: the counter advances
            counters[pid] = (counters[pid] + 1) & 15 if pid in counters else out[i + 3] & 15
            out[i + 3] = (out[i + 3] & 0xF0) | counters[pid]
    return bytes(out)


def _strip_pts_from_middle(data: bytes) -> bytes:
    """TS bytes whose video PES headers from the middle of the file on carry no PTS/DTS (the flags cleared, the
    old bytes left as header stuffing): a stream whose timestamps stop."""
    out = bytearray(data)
    for i in range(len(out) // 2 - (len(out) // 2) % 188, len(out) - 187, 188):
        if out[i] == 0x47 and out[i + 1] & 0x40:  # a payload unit starts here
            j = i + 4 + (1 + out[i + 4] if (out[i + 3] >> 4) & 2 else 0)
            if out[j:j + 4] == b"\x00\x00\x01\xe0":
                out[j + 7] &= 0x3F
    return bytes(out)


def _damaged(root: Path, paths: dict) -> None:
    """Streams whose damage fast mode meets after it began leaving packets out: timestamps that stop, files cut
    inside a packet (MP4 with its index first, MJPEG and MPEG-4 AVI, MPEG-TS, MPEG-PS)."""
    source = root / "tmp_stripped.ts"
    encode(source, _frames(5.0, seed=13), RATE, g="30", bf="3")
    paths["ts_untimed_tail"] = root / "untimed_tail.ts"
    paths["ts_untimed_tail"].write_bytes(_strip_pts_from_middle(source.read_bytes()))
    faststart = root / "tmp_faststart.mp4"
    _remux(paths["h264_closed"], faststart, 0.0, movflags="+faststart")
    cut_h264 = root / "tmp_cut.ts"
    encode(cut_h264, _frames(3.0, seed=7), RATE, g="30", bf="3")
    cut_mpeg2 = root / "tmp_cut.mpg"
    encode(cut_mpeg2, _frames(3.0, seed=7), RATE, codec="mpeg2video", container_format="mpeg", g="15", bf="2",
           **P_PICTURES)
    for name, source, packet, keep in (("mp4_cut_in_packet", faststart, 68, 10),
                                       ("mjpeg_avi_cut_unsampled", paths["mjpeg"], 20, 30),
                                       ("mjpeg_avi_cut_sampled", paths["mjpeg"], 15, -300),
                                       ("mpeg4_avi_cut_in_packet", paths["mpeg4_b_avi"], 70, 20)):
        paths[name] = root / f"{name}{source.suffix}"
        _cut_in_packet(source, paths[name], packet, keep)
    # TS and PS: cut at 70 % of the bytes, the TS at a 188-byte boundary (a recorder stopped: no sign of it)
    for name, source, align in (("ts_cut_whole_packets", cut_h264, 188), ("ps_cut", cut_mpeg2, 1)):
        data = source.read_bytes()
        paths[name] = root / f"{name}{source.suffix}"
        paths[name].write_bytes(data[:int(len(data) * 0.7) // align * align])


def make_matrix(root: Path) -> dict[str, Path]:
    """Writes every video of the matrix under `root`; returns {name: path}. Names whose encoder this PyAV lacks
    are left out (`missing_encoders` says which)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (file_name, codec, container_format, options, seconds, (height, width)) in ENCODED.items():
        if codec not in av.codecs_available:
            continue
        paths[name] = root / file_name
        encode(paths[name], _frames(seconds, height, width), RATE, codec=codec, pix_fmt=_pix_fmt(codec),
               container_format=container_format, **options)
    # Trimmed MP4: the packets of an H.264 file, moved 0.5 s earlier (an edit list discards the first 15 frames).
    paths["mp4_edit_list"] = root / "edit_list.mp4"
    _remux(paths["h264_closed"], paths["mp4_edit_list"], -0.5)
    paths["mp4_start_1_3s"] = root / "start_1_3s.mp4"
    _remux(paths["h264_closed"], paths["mp4_start_1_3s"], 1.3)
    for name, codec, options, size in (("ts_h264", "libx264", dict(g="30", bf="3"), (48, 64)),
                                       ("ts_hevc", "libx265", {"x265-params": f"keyint=30:{QUIET_X265}"}, (64, 96))):
        if codec not in av.codecs_available:
            continue
        whole = root / f"tmp_{name}.ts"
        encode(whole, _frames(4.0, *size), RATE, codec=codec, **options)
        paths[f"{name}_cut_mid_gop"] = root / f"{name}_cut.ts"
        _cut_mid_gop(whole, paths[f"{name}_cut_mid_gop"], 0.4)
    for name, seconds in (("joined_0_6s", 0.6), ("joined_2s", 2.0)):
        clip = root / f"tmp_{name}.ts"
        encode(clip, _frames(seconds, seed=5), RATE, g="30", bf="3")
        paths[name] = root / f"{name}.ts"
        paths[name].write_bytes(clip.read_bytes() * 3)  # `cat`: counters jump at each joint
    paths["joined_2s"].write_bytes(_continuous_counters(paths["joined_2s"].read_bytes()))
    whole = root / "tmp_whole.mkv"  # cut in half: the header still declares 3 s (a truncation warning)
    encode(whole, _frames(3.0, seed=6), RATE, g="15", bf="3")
    paths["mkv_truncated"] = root / "truncated.mkv"
    paths["mkv_truncated"].write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    vfr_times = np.cumsum(np.random.default_rng(9).choice([0.01, 0.04, 0.1, 0.3], 60)) - 0.01
    paths["vfr"] = root / "vfr.mkv"
    encode(paths["vfr"], moving(60, seed=4), 1000, times=list(vfr_times), g="12", bf="2")
    _damaged(root, paths)
    return paths


def missing_encoders() -> list[str]:
    return sorted({codec for (_, codec, *_rest) in ENCODED.values()} - set(av.codecs_available))


def probe(path: Path) -> dict:
    """What a video's packets show: B-frames (pict type B among decoded frames), leading packets (after a key
    packet in decode order, before it in presentation order: an open GOP), discard packets (an edit list), the
    start time, the first packet's key flag, timestamps that go back (decode order; pts_back: presentation times
    out of decode order, as B-frames give where the container stores them)."""
    found = dict(b_frames=False, leading=False, discard=False, first_key=None, dts_back=False, keys=0,
                 pts_back=False)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        found["start_time"] = float(stream.start_time * stream.time_base) if stream.start_time is not None else None
        key_pts, last_dts, last_pts = None, None, None
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if found["first_key"] is None:
                found["first_key"] = packet.is_keyframe
            found["discard"] |= packet.is_discard
            found["keys"] += packet.is_keyframe
            if packet.dts is not None and last_dts is not None and packet.dts < last_dts:
                found["dts_back"] = True
            last_dts = packet.dts if packet.dts is not None else last_dts
            found["pts_back"] |= last_pts is not None and packet.pts < last_pts
            last_pts = packet.pts
            if packet.is_keyframe:
                key_pts = packet.pts
            elif key_pts is not None and packet.pts is not None and packet.pts < key_pts:
                found["leading"] = True
            for frame in packet.decode():
                found["b_frames"] |= int(frame.pict_type) == B_PICTURE
    return found


