"""Which packets of a video stream a sampled decode needs (`--decode_mode=fast`): the same frames as decoding
everything, for a fraction of the work, or, where that cannot be proven, everything.

Sampling keeps one frame per 1/fps seconds, the first at or after each instant; at 1 fps from 30 fps video,
29 of every 30 decoded frames are thrown away. Frames cannot simply be left undecoded: later frames are
predicted from earlier ones. But packets carry their presentation time before they are decoded, so the packets
are read (not decoded) one *unit* at a time: from one restart picture to the next. A unit may be decoded partly,
or skipped, only when both of its boundaries are PROVEN restarts, i.e. nothing on either side refers across them:

- the unit starts at a restart picture of its codec: an H.264 IDR picture, an HEVC IDR picture (its leading RADL pictures
  refer only to it), or an intra picture of a codec whose intra pictures reset every reference (VP8/VP9/AV1 key
  frames, MJPEG, MPEG-1/2/4 I pictures, the picture type read from the bitstream, not taken from the muxer's
  key flag) with no packet of its unit shown before it (an open GOP's leading B-frames refer to the previous
  GOP), except HEVC's RADL pictures (they refer only to the IDR) and MPEG B pictures (never references: the
  boundary holds when none of them is kept, which the previous unit's plan checks; the decoder then drops them).
  HEVC CRA and H.264 recovery-point I pictures never are: they do not end a unit;
- every presentation time of the new unit is later than every one of the previous unit (one unit of look-ahead).

At a proven boundary the decoder is drained (every frame it holds goes through the decode loop) and reset, so the
plan reads the decode loop's own sampling state and time origin instead of predicting them; it then computes
which of the unit's frames the sampling rule keeps (`Sampling`, as `decode.decode_frames` applies it), skips a
unit with no kept frame, skips the packets after the last kept one, and decodes the others not kept with
`skip_frame=NONREF` (the decoder drops them when nothing refers to them). Every other unit is decoded in full,
and so is the rest of a stream whose decode-order timestamps go back (a joint: the timeline's offset there depends
on the frame before it), that lacks timestamps, or whose codec is not known here. Units whose packets the demuxer
marks discard (edit lists) are decoded in full. The time origin is the first frame the decoder outputs, as in
exact mode: read at a drain, or, for a first unit that starts at a restart picture shown first, predicted as it.

Times the plan cannot read: a unit holding a B picture (read from the bitstream) whose packet times never go
back carries decode-order times (AVI stores no other), so which frame the decoder outputs when is unknown: it is
decoded in full. MPEG-TS and MPEG-PS cannot show a cut last packet (a cut PES looks whole), and a cut picture is
concealed from the frames decoded before it: their last two units are decoded in full, without a drain between.

Fast decoding is SPECULATIVE: once the plan has drained the decoder or left a packet out (`Watch.speculating`),
any anomaly raises `PlanMismatch` (its `why` names it) and `decode.decode_frames`, which held the frames so far,
decodes the video again in exact mode. Anomalies: a kept frame the plan did not predict, a predicted one missing,
a time origin other than predicted; inside a planned unit a timestamp restart or an output time not later than
the one before; any frame output without a timestamp or flagged damaged; a packet flagged corrupt (damage, or the
short last packet of a cut MP4/AVI), without a timestamp, or marked discard after a packet shown earlier; any
demux or decode error. Before speculating the same signs only make the rest of the stream decode in full (it is
then exact mode's decode). `tests/pipeline/test_decode_matrix.py` compares both modes byte for byte over codecs,
stream structures and damage.
"""

from __future__ import annotations

import collections
import copy
import math
from typing import Iterator, Optional

from pipeline.bitstream import MPEG_CODECS, is_b_picture, is_intra, mpeg_picture_type, nal_types

# Codecs whose intra pictures reset every reference (the bitstream check is `is_intra`).
RESETTING_KEYFRAME_CODECS = frozenset({"vp8", "vp9", "av1", "mjpeg", "mpeg4", "mpeg2video", "mpeg1video"})
# A unit longer than this (in packets) is decoded in full as it is read rather than held (no restart point).
MAX_GOP_PACKETS = 1200
H264_IDR, HEVC_IDR = (5,), (19, 20)  # HEVC: IDR_W_RADL, IDR_N_LP
# MPEG_CODECS (`bitstream`): B pictures are never references: an open GOP's leading B pictures refer to the
# previous unit, and nothing else does, so the boundary holds when none of them is kept (the decoder drops them).
DRAIN = "DRAIN"  # the packet slot of the marker telling the decode loop to drain and reset the decoder
# Containers whose demuxer flags a short last packet corrupt (MP4/MOV, AVI: the index gives each packet's size)
# or drops it (Matroska: an incomplete block is never returned). In any other (MPEG-TS, MPEG-PS: a cut PES looks
# whole) the stream's last two units are decoded in full, without a drain between them: a cut last picture is
# concealed from the frames decoded before it, which are then exact mode's.
PACKET_SIZED_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "avi", "matroska,webm"})


class PlanMismatch(Exception):
    """Fast mode cannot vouch for its frames (an anomaly: see the module docstring); `why` names it for the
    decode-path counters ("exact_after_<why>")."""

    def __init__(self, text: str, why: str = "plan_mismatch"):
        super().__init__(text)
        self.why = why


class Sampling:
    """The sampling rule of `decode.decode_frames`, on frame times: the first frame at or after 0, then the
    first at or after each next multiple of `interval` strictly after the last kept frame."""

    def __init__(self, interval: float, max_frames: Optional[int]):
        self.interval = interval
        self.max_frames = max_frames
        self.next_time = 0.0
        self.kept = 0

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


def seconds(pts: int, time_base) -> float:
    """A timestamp in seconds, computed as PyAV's `Frame.time` computes it (so plan and decoder agree to the bit)."""
    return float(pts) * time_base.numerator / time_base.denominator


class Watch:
    """The plan's predictions, which the decode loop checks frame by frame (see the module docstring)."""

    def __init__(self):
        self.expected: Optional[collections.deque] = None  # kept times predicted for the planned unit in flight
        self.origin: Optional[float] = None  # the time origin predicted before the decoder output a frame
        self.speculating = False  # a unit was planned: the frames from here on are the plan's, not exact mode's
        self._last_output: Optional[float] = None  # the latest frame the decoder output in the planned unit

    def expect(self, times: list[float]) -> None:
        """The kept times predicted for the unit about to be decoded (seconds from the origin)."""
        self.expected = collections.deque(sorted(times))
        self._last_output = None

    def check_output(self, t: float, restarted: bool, untimed: bool, corrupt: bool = False) -> None:
        """Every frame the decoder outputs: while speculating each has a timestamp and is whole (a damaged frame
        is concealed from whatever the decoder holds, which differs), and inside a planned unit the timestamps
        neither restart nor go back (the plan predicted the unit's frames in time order)."""
        if untimed and self.speculating:
            raise PlanMismatch("a frame without a timestamp after the plan left packets out", "untimed")
        if corrupt and self.speculating:
            raise PlanMismatch(f"a damaged frame at {t:.3f} s after the plan left packets out", "corrupt_frame")
        if self.expected is None:
            return
        if restarted:
            raise PlanMismatch("the timestamps restart inside a unit the plan skipped parts of")
        if self._last_output is not None and t <= self._last_output:
            raise PlanMismatch(f"the decoder output a frame at {t:.3f} s after one at {self._last_output:.3f} s "
                               "inside a planned unit", "times_not_monotonic")
        self._last_output = t

    def check_origin(self, start: float) -> None:
        if self.origin is not None and start != self.origin:
            raise PlanMismatch(f"the first decoded frame is at {start:.3f} s, the plan expected {self.origin:.3f} s")

    def check_kept(self, t: float) -> None:
        if self.expected is None:
            return
        if not self.expected or self.expected[0] != t:
            predicted = f"{self.expected[0]:.3f} s" if self.expected else "none"
            raise PlanMismatch(f"kept a frame at {t:.3f} s, the plan predicted {predicted}")
        self.expected.popleft()

    def check_drained(self) -> None:
        if self.expected:
            raise PlanMismatch(f"{len(self.expected)} predicted frame(s) from {self.expected[0]:.3f} s not decoded")
        self.expected = None


class _Restarts:
    """Tells whether a packet is a restart point of its stream's codec."""

    def __init__(self, stream):
        context = stream.codec_context
        self.codec = context.codec.canonical_name  # av1, not libdav1d: the format, not the decoder
        self.reordering = bool(context.has_b_frames)  # the decoder delays its output to reorder pictures
        extradata = bytes(context.extradata or b"")
        self.length_size = None
        if self.codec == "h264" and len(extradata) > 4 and extradata[0] == 1:  # avcC
            self.length_size = (extradata[4] & 3) + 1
        elif self.codec == "hevc" and len(extradata) > 21 and extradata[0] == 1:  # hvcC
            self.length_size = (extradata[21] & 3) + 1

    @property
    def known(self) -> bool:
        return self.codec in ("h264", "hevc") or self.codec in RESETTING_KEYFRAME_CODECS

    def leading_allowed(self, packet) -> bool:
        """Whether a picture shown before its unit's restart picture but decoded after it keeps the boundary
        provable: HEVC RADL pictures (they refer only to the IDR), MPEG B pictures (see MPEG_CODECS)."""
        if self.codec == "hevc":
            return True
        return self.codec in MPEG_CODECS and mpeg_picture_type(self.codec, bytes(packet)) == "B"

    def b_picture(self, packet) -> bool:
        return self.reordering and is_b_picture(self.codec, bytes(packet), self.length_size)

    def __call__(self, packet) -> bool:
        if not packet.is_keyframe:
            return False
        if self.codec in ("h264", "hevc"):
            idr = HEVC_IDR if self.codec == "hevc" else H264_IDR
            return any(t in idr for t in nal_types(bytes(packet), self.length_size, self.codec == "hevc"))
        return self.codec in RESETTING_KEYFRAME_CODECS and is_intra(self.codec, bytes(packet))


class _Unit:
    """The packets from one key packet to the next, with what the plan needs to know about them."""

    def __init__(self, first, restart: bool, time_base):
        self.packets: list = []
        self.restart = restart  # starts at a restart point of the codec
        self.start_time = seconds(first.pts, time_base)
        self.times: set = set()
        self.min_time = self.max_time = self.start_time
        self.clean = True  # no discarded packet, no repeated time
        self.held = True  # False: too long to hold, its packets went to the decoder as they came
        self.start_proven = False  # nothing in or after it refers to a frame before it
        self.leading: set = set()  # times of pictures shown before the restart picture, decoded after it
        self.leading_allowed = True
        self.leading_cleared = False  # MPEG leading B pictures: the previous unit's plan keeps none of them
        self.times_in_decode_order = True  # no packet's time is before the one read before it
        self.b_pictures = False  # some packet holds a B picture
        self._last_time = self.start_time

    def add(self, packet, t: float, restart: "_Restarts") -> None:
        self.clean = self.clean and not packet.is_discard and t not in self.times
        if t < self.start_time:
            self.leading.add(t)
            self.leading_allowed = self.leading_allowed and restart.leading_allowed(packet)
        self.times.add(t)
        self.times_in_decode_order = self.times_in_decode_order and t >= self._last_time
        self.b_pictures = self.b_pictures or (self.times_in_decode_order and restart.b_picture(packet))
        self._last_time = t
        self.min_time, self.max_time = min(self.min_time, t), max(self.max_time, t)
        if self.held:
            self.packets.append(packet)

    def proves_start(self, previous: Optional["_Unit"]) -> bool:
        """Whether this unit's start is a proven restart (see the module docstring; MPEG leading B pictures are
        cleared when the previous unit is planned)."""
        if not self.restart or not self.leading_allowed:
            return False
        return previous is None or self.min_time > previous.max_time


def _timestamp_problem(packet, last_dts: Optional[int], max_pts: Optional[int], tolerance: int) -> Optional[str]:
    """Why the rest of a stream must be decoded in full from this (timed) packet on, if it must: a decode-order
    timestamp that goes back (a joint; without a dts, a pts more than `tolerance` before the latest)."""
    if packet.dts is not None:
        return "timestamps_go_back" if last_dts is not None and packet.dts < last_dts else None
    return "timestamps_go_back" if max_pts is not None and packet.pts < max_pts - tolerance else None


class PacketPlan:
    """The packets the sampled decode needs: iterating gives (packet, skip_frame setting) in decode order; a packet
    of None means: drain the decoder (its held frames go through the decode loop) and reset it. The last item is
    always such a drain. The plan reads the decode loop's `sampling` and `timeline` at drains (see the module
    docstring) and tells the timeline every packet it reads (`note_packet`); `watch` carries its predictions to
    the loop. Afterwards `path` says how the video was decoded ("skipping": some packet was left out or sent with
    skip_frame=NONREF; "full_<why>": none was, and the first reason), and `packets_read`, `packets_decoded` how
    much of it. An anomaly once the plan speculates (`Watch.speculating`) raises `PlanMismatch`."""

    def __init__(self, container, stream, sampling: Sampling, timeline):
        self._container, self._stream = container, stream
        self._sampling, self._timeline = sampling, timeline
        self._time_base = stream.time_base
        self.watch = Watch()
        self.packets_read = self.packets_decoded = 0
        self._skipped = False  # some packet was left out or sent with skip_frame=NONREF
        self._first_reason: Optional[str] = None
        self._full_reason: Optional[str] = None  # set: the rest of the stream is decoded in full
        self._sent = False  # packets went to the decoder since it was last drained
        self._done = False
        self._mpeg = False
        self._packet_sized = container.format.name in PACKET_SIZED_FORMATS
        self._earliest_shown: Optional[float] = None  # the earliest time of a packet not marked discard

    @property
    def path(self) -> str:
        return "skipping" if self._skipped else f"full_{self._first_reason or 'every_frame_sampled'}"

    def _decode_rest_in_full(self, reason: str) -> None:
        self._full_reason = self._full_reason or reason
        self._note_full(reason)

    def _note_full(self, reason: str) -> None:
        self._first_reason = self._first_reason or reason

    def _anomaly(self, packet) -> Optional[tuple[str, str]]:
        """(what, why) if a packet shows the stream is not what the plan can reason about: flagged corrupt (damaged,
        or the short last packet of a cut MP4/AVI), without a timestamp, or marked discard after a packet shown
        earlier (an edit list trims only a stream's start)."""
        if packet.is_corrupt:
            return f"a packet the demuxer flags corrupt (damaged or cut short) at pts {packet.pts}", "corrupt_packet"
        if packet.pts is None:
            return "a packet without a timestamp", "untimed"
        t = seconds(packet.pts, self._time_base)
        if packet.is_discard:
            if self._earliest_shown is not None and t > self._earliest_shown:
                return f"a packet marked discard at {t:.3f} s, after one shown at {self._earliest_shown:.3f} s", \
                    "discard_packet"
        elif self._earliest_shown is None or t < self._earliest_shown:
            self._earliest_shown = t
        return None

    def __iter__(self) -> Iterator[tuple[object, str]]:
        restart = _Restarts(self._stream)
        self._mpeg = restart.codec in MPEG_CODECS  # leading B pictures refer to the previous unit
        if not restart.known:
            self._decode_rest_in_full("unknown_codec")
        rate = float(self._stream.average_rate or self._stream.guessed_rate or 25)
        back_tolerance = max(2.0 / rate, 0.1)
        previous: Optional[_Unit] = None
        unit: Optional[_Unit] = None
        last_dts = max_pts = None
        demuxed = self._container.demux(self._stream)
        while True:
            try:
                packet = next(demuxed)
            except StopIteration:
                break
            except Exception:  # a read error: the packets read before it reach the decoder, as in a full decode
                for held in (previous, unit):
                    if held is not None and held.held and self._full_reason is None:
                        yield from self._full(held.packets)
                raise
            if packet.size == 0:  # the demuxer's end
                break
            self.packets_read += 1
            self._timeline.note_packet(packet)
            anomaly = self._anomaly(packet)
            if anomaly is not None and self.watch.speculating:
                raise PlanMismatch(*anomaly)
            if self._full_reason is None:
                problem = anomaly[1] if anomaly else _timestamp_problem(packet, last_dts, max_pts,
                                                                        back_tolerance / float(self._time_base))
                if problem:  # from the units not yet sent on (the frame before a joint among them), all in full
                    self._decode_rest_in_full(problem)
                    for held in (previous, unit):
                        if held is not None and held.held:
                            yield from self._full(held.packets)
                    previous = unit = None
            if packet.pts is not None:
                max_pts = packet.pts if max_pts is None else max(max_pts, packet.pts)
            last_dts = packet.dts if packet.dts is not None else last_dts
            if self._full_reason is not None:
                yield from self._full([packet])
                continue
            t = seconds(packet.pts, self._time_base)
            is_restart = restart(packet)
            if unit is not None and not is_restart:  # other key pictures (HEVC CRA, ...) do not end a unit
                unit.add(packet, t, restart)
                if unit.held and len(unit.packets) > MAX_GOP_PACKETS:  # too long to hold: send it as it comes
                    unit.start_proven = False
                    yield from self._emit(previous, unit)
                    previous = None
                    self._note_full("long_gop")
                    unit.held = False
                    yield from self._full(unit.packets)
                    unit.packets = []
                elif not unit.held:
                    yield from self._full([packet])
                continue
            new = _Unit(packet, is_restart, self._time_base)
            if unit is not None:  # `unit` is complete: its start can be judged, and `previous` emitted
                unit.start_proven = unit.proves_start(previous)
                yield from self._emit(previous, unit)
                previous = unit
                if self._done:
                    break
            unit = new
            unit.add(packet, t, restart)
        if not self._done and unit is not None:
            if self._full_reason is None:
                unit.start_proven = unit.proves_start(previous)
            if not self._packet_sized:  # a cut last picture is concealed from the frames before it: all decoded
                self._decode_rest_in_full("final_units")
            yield from self._emit(previous, unit)
            if not self._done:
                yield from self._emit(unit, None)  # nothing after the stream's last unit
        yield None, DRAIN  # the decoder still holds the frames it reordered
        self.watch.check_drained()

    def _full(self, packets: list):
        for packet in packets:
            self._sent = True
            self.packets_decoded += 1
            yield packet, "DEFAULT"

    def _emit(self, unit: Optional[_Unit], following: Optional[_Unit]):
        """The packets of a complete unit: all of them, or (both its boundaries proven) those the sampling needs.
        `following`: the next unit (None at the end of the stream)."""
        if unit is None or not unit.held:
            return
        end_proven = following is None or following.start_proven
        leading_unsafe = self._mpeg and unit.leading and not unit.leading_cleared
        why = ("rest" if self._full_reason else "unproven_restart" if not (unit.start_proven and end_proven)
               or leading_unsafe else "discarded_or_repeated_times" if not unit.clean
               else "decode_order_times" if unit.b_pictures and unit.times_in_decode_order else None)
        if why is None and self._sent:
            self.watch.speculating = True  # the decoder's state from here on is no longer exact mode's
            yield None, DRAIN  # everything sent so far goes through the decode loop first
            self._sent = False
        if why is None:
            self.watch.check_drained()
            why = self._plan_reason(unit)
        if why is None:
            self.watch.speculating = True
        origin = self._timeline.start if self._timeline.start is not None else self.watch.origin
        sampling = copy.copy(self._sampling)
        leading_after = following.leading if following is not None and self._mpeg else set()
        kept = set() if why else {t for t in sorted(unit.times | leading_after) if sampling.keeps(t - origin)}
        if kept & leading_after:  # a frame kept there needs this unit's last reference picture, decoded in order
            following.start_proven, why = False, "unproven_restart"
        if why is not None:
            if why != "rest":
                self._note_full(why)
            yield from self._full(unit.packets)
            return
        if kept & unit.leading:
            raise PlanMismatch("a leading picture the previous unit's plan left out would be kept")
        if following is not None:
            following.leading_cleared = True
        self._done = sampling.done
        self._skipped = self._skipped or len(kept) < len(unit.packets)
        if not kept:
            return  # nothing after it refers into it
        self.watch.expect([t - origin for t in kept])
        last = max(i for i, p in enumerate(unit.packets) if seconds(p.pts, self._time_base) in kept)
        self.packets_decoded += last + 1  # at most: the decoder drops those marked NONREF that nothing refers to
        self._sent = True
        for p in unit.packets[:last + 1]:
            yield p, "DEFAULT" if seconds(p.pts, self._time_base) in kept else "NONREF"
        yield None, DRAIN  # the unit's kept frames are checked before anything else is decoded
        self.watch.check_drained()

    def _plan_reason(self, unit: _Unit) -> Optional[str]:
        """Why a unit with proven boundaries, after a drain, must still be decoded in full (None: it need not)."""
        timeline = self._timeline
        if timeline.restarts or timeline.untimed:
            self._decode_rest_in_full("timeline_restarts")
            return "rest"
        if timeline.start is None:
            if self._sent or self.watch.origin is not None or unit.start_time != unit.min_time:
                return "no_frame_yet"
            self.watch.origin = unit.start_time  # the first unit: its restart picture is the first frame out
        return None
