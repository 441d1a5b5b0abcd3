"""Which packets of a video stream a sampled decode needs (`--decode_mode=fast`): the same frames as decoding
everything, for a fraction of the work.

Sampling keeps one frame per 1/fps seconds, the first at or after each instant; at 1 fps from 30 fps video,
29 of every 30 decoded frames are thrown away. Frames cannot simply be left undecoded: later frames are
predicted from earlier ones. But packets carry their presentation time before they are decoded, so:

- The packets are read (not decoded) one group of pictures (GOP) at a time, from one *restart point* (an
  H.264/HEVC IDR picture, or a key frame of a codec whose key frames reset every reference) to the next.
- Which of the GOP's frames the sampling rule will keep is computed from those times, exactly as
  `decode.decode_frames` applies it to decoded frames (`Sampling`).
- A GOP with no kept frame is skipped whole: nothing after its restart point refers back into it. In a GOP
  with kept frames, the packets after the last kept one are skipped, and before it every packet that is not
  kept is decoded with `skip_frame=NONREF`: the decoder drops it when no other frame refers to it.

The kept frames are therefore decoded from exactly the references the full decode uses: the same pixels and
the same presentation times (`tests/pipeline/test_decode.py` compares both modes byte for byte). Where the
packets do not allow that reasoning (no timestamps, times that jump back, no restart points in sight, a codec
whose key frames may not reset its references), the rest of the stream is simply decoded in full.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional

# Codecs whose key frames reset every reference (a GOP after one never needs frames before it).
RESETTING_KEYFRAME_CODECS = frozenset({"vp8", "vp9", "av1", "mjpeg", "mpeg4", "mpeg2video", "mpeg1video"})
# A GOP longer than this (in packets) is decoded in full rather than buffered (a stream with no restart point).
MAX_GOP_PACKETS = 1200
H264_IDR, HEVC_IDR = (5,), (19, 20)


class Sampling:
    """The sampling rule of `decode.decode_frames`, on frame times: the first frame at or after 0, then the
    first at or after each next multiple of `interval` strictly after the last kept frame."""

    def __init__(self, interval: float, max_frames: Optional[int]):
        self.interval = interval
        self.max_frames = max_frames
        self.next_time = 0.0
        self.kept = 0
        self.start: Optional[float] = None  # the time of the stream's first frame, once known

    @property
    def done(self) -> bool:
        return self.max_frames is not None and self.kept >= self.max_frames

    def keeps(self, t: float) -> bool:
        """Whether the frame at `t` seconds (from the stream's first frame) is kept; advances the rule if so."""
        if self.done or t + 1e-6 < self.next_time:
            return False
        self.kept += 1
        self.next_time = (math.floor(t / self.interval + 1e-6) + 1) * self.interval
        return True


def _nal_types(data: bytes, length_size: Optional[int], hevc: bool) -> list[int]:
    """NAL unit types in one packet: length-prefixed (MP4, `length_size` bytes) or Annex B start codes (TS)."""
    types = []
    if length_size:
        i = 0
        while i + length_size < len(data):
            size = int.from_bytes(data[i:i + length_size], "big")
            i += length_size
            if size <= 0 or i >= len(data):
                break
            types.append((data[i] >> 1) & 0x3F if hevc else data[i] & 0x1F)
            i += size
        return types
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        header = data[i + 3]
        types.append((header >> 1) & 0x3F if hevc else header & 0x1F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


class _Restarts:
    """Tells whether a packet is a restart point of its stream's codec."""

    def __init__(self, stream):
        context = stream.codec_context
        self.codec = context.name
        extradata = bytes(context.extradata or b"")
        self.length_size = None
        if self.codec == "h264" and len(extradata) > 4 and extradata[0] == 1:  # avcC
            self.length_size = (extradata[4] & 3) + 1
        elif self.codec == "hevc" and len(extradata) > 21 and extradata[0] == 1:  # hvcC
            self.length_size = (extradata[21] & 3) + 1

    @property
    def known(self) -> bool:
        return self.codec in ("h264", "hevc") or self.codec in RESETTING_KEYFRAME_CODECS

    def __call__(self, packet) -> bool:
        if not packet.is_keyframe:
            return False
        if self.codec in ("h264", "hevc"):
            idr = HEVC_IDR if self.codec == "hevc" else H264_IDR
            return any(t in idr for t in _nal_types(bytes(packet), self.length_size, self.codec == "hevc"))
        return self.codec in RESETTING_KEYFRAME_CODECS


class PacketPlan:
    """The packets the sampled decode needs: iterating gives (packet, skip_frame setting) in decode order, ending
    with (None, "DEFAULT"): flush the decoder (see the module docstring). Afterwards `end` is the time (seconds from the
    first frame) of the latest packet read, decoded or not: where the stream ends."""

    def __init__(self, container, stream, interval: float, max_frames: Optional[int]):
        self._container, self._stream = container, stream
        self._sampling = Sampling(interval, max_frames)
        self.end = 0.0

    def __iter__(self) -> Iterator[tuple[object, str]]:
        restart = _Restarts(self._stream)
        time_base = float(self._stream.time_base)
        sampling = self._sampling
        gop: list = []
        latest = None
        in_full = not restart.known
        for packet in self._container.demux(self._stream):
            if packet.size == 0:  # the demuxer's end
                break
            t = packet.pts * time_base if packet.pts is not None else None
            if t is not None and sampling.start is not None:
                self.end = max(self.end, t - sampling.start)
            if in_full:
                yield packet, "DEFAULT"
                continue
            if t is None or (latest is not None and t < latest - 1.0) or len(gop) >= MAX_GOP_PACKETS:
                in_full = True  # untimed, restarting or unbounded: decode the rest in full, from this GOP on
                yield from ((p, "DEFAULT") for p in gop + [packet])
                gop = []
                continue
            if restart(packet) and gop:
                yield from _gop_packets(gop, sampling, time_base)
                gop = []
                if sampling.done:
                    break
            latest = t if latest is None else max(latest, t)
            gop.append(packet)
        yield from _gop_packets(gop, sampling, time_base)
        yield None, "DEFAULT"  # flush: the decoder still holds the frames it reordered


def _gop_packets(gop: list, sampling: Sampling, time_base: float):
    """The packets of one GOP that the sampled decode needs (see the module docstring)."""
    if not gop:
        return
    times = sorted(p.pts * time_base for p in gop)
    if sampling.start is None:
        sampling.start = times[0]  # the stream's first frame, which the decoder's timeline starts from
    kept = {t for t in times if sampling.keeps(t - sampling.start)}
    if not kept:
        return  # nothing after the next restart point refers into this GOP
    last = max(i for i, p in enumerate(gop) if p.pts * time_base in kept)
    for p in gop[:last + 1]:
        yield p, "DEFAULT" if p.pts * time_base in kept else "NONREF"
