"""Decoding videos into sampled RGB frames with PyAV (FFmpeg in-process: no shell, no ffmpeg binary).

Frames are sampled by presentation time: the first decoded frame, then the first frame at or after each further
multiple of 1/fps seconds (as the YouTube-8M extractor samples at 1 fps). A video whose own frame rate is below
`fps` gives each frame once; nothing is duplicated. Only sampled frames are converted to RGB and resized (in
FFmpeg's swscale), and frames are yielded one at a time, so memory does not grow with the video's length.

`--decode_mode=fast` (`pipeline.packets`) is speculative: its frames are held (up to HOLD_BYTES / HOLD_SECONDS)
until its decode ends cleanly; on any anomaly they are discarded and the video is decoded again in exact mode
(counted as "exact_after_<why>"). Past the hold, frames go out as they come with a digest kept, and an anomaly
then decodes exact mode from the start, checks its first frames against those digests and gives out the rest;
only frames that differ from exact mode's fail the video, naming --decode_mode=exact. The truncation warning
compares the header's duration with where the stream ends by facts both modes share (`_Timeline.end`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import struct
import time
from typing import Callable, Iterator, Optional

import av
import numpy as np

from dataformat.paths import is_remote
from pipeline.config import DecodeSettings  # noqa: F401 - also for decode_frames' callers
from pipeline.containers import RAW_STREAM_FORMATS, STILL_IMAGE_FORMATS, format_mismatch
from pipeline.packets import DRAIN, PacketPlan, PlanMismatch, Sampling, seconds

# Fast mode holds its frames until its decode ends cleanly (`_speculate`), up to this many bytes of pixels and
# seconds (how late a long video's first frames may reach the model); then it gives them out and checks them
# afterwards. While it holds them, `decode_frames`' `holding` tells a watching parent the decoder is alive.
HOLD_BYTES = 64 << 20
HOLD_SECONDS = 60.0


class DecodeError(Exception):
    """A video could not be opened or yielded no frame; the message says why, for failures.jsonl."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One sampled frame: its index among the sampled frames, its time in seconds, and RGB pixels [S, S, 3]."""

    index: int
    timestamp: float
    rgb: np.ndarray


@dataclasses.dataclass
class DecodeReport:
    """Filled in while `decode_frames` runs: what a caller should know once the generator is exhausted.

    warning: what a user should know about this video (warnings.jsonl), or None.
    partial: frames were lost (the file is damaged or cut short); the video's status is then `partial`. A
      warning without loss (e.g. timestamps that restart) leaves the status `ok`.
    """

    frames: int = 0
    warning: Optional[str] = None
    partial: bool = False
    path: str = ""  # how it was decoded: "exact", or fast mode's "skipping" or "full_<why>" (`packets.PacketPlan`)
    packets: tuple = (0, 0)  # fast mode: packets read, packets sent to the decoder (at most)

    def warn(self, text: str, partial: bool) -> None:
        self.warning = f"{self.warning}; {text}" if self.warning else text
        self.partial = self.partial or partial


def _open(path: str, device: str = "cpu"):
    # Local files are opened by name (seekable, fastest); remote ones (gs://...) through a gfile object.
    hwaccel = None
    if device != "cpu":  # decoded on the device, frames copied back to memory (FFmpeg's hwaccel)
        from av.codec.hwaccel import HWAccel

        hwaccel = HWAccel(device, allow_software_fallback=False)
    if is_remote(path):
        import tensorflow as tf  # only for remote files: the isolated decoder process stays light without it

        return av.open(tf.io.gfile.GFile(path, "rb"), mode="r", hwaccel=hwaccel)
    return av.open(path, mode="r", hwaccel=hwaccel)


def check_decode_device(device: str, paths: list[str]) -> None:
    """Stops at the start, with what to do, when videos cannot be decoded on `device` here: the FFmpeg build
    lacks it, or the machine has no such device (no GPU, no driver). Decodes the first frame of the first of
    `paths` that decodes on the CPU (a few are tried) on the device to find out."""
    if device == "cpu":
        return
    from av.codec.hwaccel import hwdevices_available

    available = hwdevices_available()
    if device not in available:
        raise DecodeError(f"--decode_device={device}: this FFmpeg build cannot decode on {device} (it can on: "
                          f"{', '.join(available) or 'nothing'}); use --decode_device=cpu")
    for path in paths[:10]:
        try:
            with _open(path) as container:
                next(container.decode(container.streams.best("video")))
        except Exception:  # noqa: BLE001 - not a video: decoding reports it; try the next one
            continue
        try:
            with _open(path, device) as container:
                next(container.decode(container.streams.best("video")))
        except Exception as e:  # noqa: BLE001 - whatever FFmpeg says, the device cannot be used
            raise DecodeError(f"--decode_device={device}: decoding {path} on {device} failed ({_describe(e)}): is "
                              "there a GPU with its driver on this machine (nvidia-smi)? Otherwise use "
                              "--decode_device=cpu") from None
        return


def _size(path: str) -> Optional[int]:
    if is_remote(path):
        import tensorflow as tf

        return tf.io.gfile.stat(path).length if tf.io.gfile.exists(path) else None
    return os.path.getsize(path) if os.path.exists(path) else None


# Sampled frames that FFmpeg flags corrupt held back at the start of a video: if none decodes cleanly, the file
# is not a video and fails; a longer run of them is let through with a warning.
MAX_HELD_CORRUPT = 16


def _display_orientation(rgb: np.ndarray, rotation: float) -> np.ndarray:
    """The frame as a player shows it: rotated by its display matrix (phones store portrait video as landscape
    frames plus a rotation). PyAV's `frame.rotation` is the matrix's counterclockwise angle; FFmpeg's player
    rotates by the same amount (autorotate), which np.rot90 does in quarter turns."""
    quarter_turns = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def _declared_seconds(container, stream) -> Optional[float]:
    """The duration the file's header declares, when it declares one."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _describe(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return f"{type(e).__name__}: {text}"


def unexpected_error(e: Exception) -> str:
    """failures.jsonl's reason for an error no decoder check anticipated: the video fails, the job goes on."""
    return (f"unexpected error while decoding ({_describe(e)}); the other videos are not affected. Please report "
            "it with the file if you can")


def probe_seconds(path: str) -> Optional[float]:
    """The duration a video's header declares, read without decoding; None when it cannot be read or declares
    none (used only to estimate a job's size: decoding reports the real problems)."""
    try:
        with _open(path) as container:
            stream = container.streams.best("video")
            return _declared_seconds(container, stream) if stream is not None else None
    except Exception:  # noqa: BLE001 - any FFmpeg error: unknown size, decoding will say what is wrong
        return None


def expected_frames(seconds: Optional[float], settings: DecodeSettings) -> int:
    """How many frames `decode_frames` samples from a video of `seconds` (an estimate: headers can be wrong)."""
    if seconds is None:
        return 0
    frames = max(1, math.ceil(seconds * settings.fps - 1e-6))  # the sampling instants k / fps < seconds
    return min(frames, settings.max_frames) if settings.max_frames is not None else frames


class _Timeline:
    """Seconds from the start of a video stream, in presentation order, across timestamp restarts.

    Files joined by copying (`cat a.ts b.ts`, as dashcams and HLS downloads produce) start their timestamps
    again at each joint; so do some cameras' segment boundaries. A frame whose timestamp falls back by more
    than a couple of frame durations starts a new segment, which continues one frame after the previous one's
    last frame: without this, every frame after the joint would be "before" the next sampling instant and be
    skipped. Frames without any timestamp (raw .h264 elementary streams) are placed by their count and the
    nominal frame rate.
    """

    def __init__(self, stream):
        # The rate the bitstream declares (H.264's timing info) first: FFmpeg guesses 25 fps for raw streams.
        self.rate = float(stream.codec_context.framerate or stream.average_rate or stream.guessed_rate or 25)
        self.frame_seconds = 1.0 / self.rate
        self.restarts = 0
        self.untimed = 0  # frames without a timestamp
        self._start: Optional[float] = None
        self._offset = 0.0
        self._previous: Optional[float] = None
        self._count = 0
        self._time_base = stream.time_base
        self._last = 0.0  # the latest frame output, in seconds from the start
        self._latest_packet: Optional[float] = None  # the latest packet time read (raw seconds), decoded or not

    @property
    def start(self) -> Optional[float]:
        """The raw time of the first frame (the origin), once one was seen."""
        return self._start

    def seconds(self, frame) -> float:
        raw = frame.time
        if raw is None:
            raw = self._count * self.frame_seconds
            self.untimed += 1
        self._count += 1
        if self._previous is not None and raw < self._previous - max(2 * self.frame_seconds, 0.1):
            self._offset += self._previous + self.frame_seconds - raw
            self.restarts += 1
        self._previous = raw
        if self._start is None:
            self._start = raw
        self._last = raw + self._offset - self._start
        return self._last

    def note_packet(self, packet) -> None:
        """Every packet the demuxer returns, decoded or not (both modes read them all)."""
        if packet.pts is not None:
            t = seconds(packet.pts, self._time_base)
            self._latest_packet = t if self._latest_packet is None else max(self._latest_packet, t)

    @property
    def end(self) -> float:
        """Where the stream ends, in seconds from the start, by facts both decode modes share: the latest packet
        time read, or the last frame output where the timeline continues past it (a restart's offset; fast mode
        decodes the rest of such a stream in full). Fast mode may skip the last frames, not the packets."""
        if self._start is None:
            return 0.0
        packets = self._latest_packet - self._start if self._latest_packet is not None else 0.0
        return max(self._last, packets)


def _frames(container, stream, plan: Optional[PacketPlan], timeline: _Timeline):
    """The stream's decoded frames in presentation order: every one, or (`plan`) those of the packets it needs."""
    if plan is None:
        for packet in container.demux(stream):  # what container.decode(stream) does, noting each packet
            timeline.note_packet(packet)
            yield from packet.decode()
        return
    context = stream.codec_context
    for packet, skip in plan:
        if packet is not None:
            if context.skip_frame != skip:
                context.skip_frame = skip
            yield from packet.decode()
            continue
        assert skip == DRAIN
        for frame in context.decode(None):  # frames the decoder held back, without a time base
            frame.time_base = stream.time_base
            yield frame
        context.flush_buffers()  # ready for the next packet (the plan drains only where nothing refers back)


def _warn_about_timing(report: DecodeReport, timeline: _Timeline, declared: Optional[float],
                       settings: DecodeSettings, end: float) -> None:
    """What a video's timestamps tell once it is decoded: restarts, frames without time, an early end."""
    if timeline.restarts:
        report.warn(f"the timestamps restart {timeline.restarts} time(s) (recordings joined into one file?); "
                    "frames were taken in presentation order, each segment continuing the previous one's "
                    "timeline", partial=False)
    if timeline.untimed:
        report.warn(f"{timeline.untimed} frame(s) carry no timestamp (a raw elementary stream?): placed at "
                    f"the {timeline.rate:g} fps the stream declares", partial=False)
    if (not report.partial and declared and settings.max_frames is None
            and end < declared - max(2 / settings.fps, 1.0)):
        # Some containers (Matroska, MPEG-TS) end quietly where a file was cut: compare with the header.
        report.warn(f"the video stream ends at {end:.1f} s but its header declares {declared:.1f} s "
                    "(truncated file?); kept the frames before the end", partial=True)


def decode_frames(path: str, settings: DecodeSettings, report: Optional[DecodeReport] = None,
                  holding: Optional[Callable[[], None]] = None) -> Iterator[Frame]:
    """Yields the sampled frames of the video at `path`.

    `holding` is called for each frame fast mode decodes and holds back instead of yielding (a sign of life for
    a caller that watches for a hung decoder: `pipeline.isolated_decode`).

    The video stream is the one FFmpeg itself would pick (`av_find_best_stream`: e.g. the real video, not a
    one-frame cover or thumbnail stream listed first). Damage after at least one good frame ends the video
    early: the frames before it are kept and `report` says what happened (the caller records it in the
    summary). Fast mode is speculative (`_speculate`): on any anomaly the video is decoded again in exact mode.

    A file whose container does not match its name (`format_mismatch`) or with frames FFmpeg flags corrupt is
    kept with a warning; one whose every frame is flagged corrupt fails (random bytes can pass FFmpeg's probe as
    a raw stream and "decode" into a frame of noise).

    Raises:
      DecodeError: the file cannot be opened as a video, has no video stream, or yields no frame (or only frames
        decoded with errors).
    """
    report = report if report is not None else DecodeReport()
    if _size(path) == 0:
        raise DecodeError("empty file (0 bytes)")
    if settings.mode == "exact":
        yield from _decode(path, settings, report, fast=False)
        return
    released: list[bytes] = []  # digests of the frames fast mode gave out before its decode ended
    try:
        yield from _speculate(path, settings, report, released, holding)
    except PlanMismatch as e:
        report.frames, report.warning, report.partial = 0, None, False
        yield from _exact_after(path, settings, report, released, e)
        report.path = f"exact_after_{e.why}"


def _speculate(path: str, settings: DecodeSettings, report: DecodeReport, released: list,
               holding: Optional[Callable[[], None]] = None) -> Iterator[Frame]:
    """Fast mode's frames, held until its decode ends cleanly: an anomaly (`PlanMismatch`) then discards them.
    Past HOLD_BYTES of pixels or HOLD_SECONDS, the frames held are given
    out and the rest as they come, each one's digest kept in `released`."""
    held: Optional[list] = []
    held_bytes, started = 0, time.monotonic()
    for frame in _decode(path, settings, report, fast=True):
        if held is not None:
            held.append(frame)
            held_bytes += frame.rgb.nbytes
            if held_bytes <= HOLD_BYTES and time.monotonic() - started <= HOLD_SECONDS:
                if holding is not None:
                    holding()
                continue
        for given in held or [frame]:
            released.append(_digest(given))
            yield given
        held = None
    for given in held or []:
        yield given


def _exact_after(path: str, settings: DecodeSettings, report: DecodeReport, released: list,
                 anomaly: PlanMismatch) -> Iterator[Frame]:
    """Exact mode's frames after fast mode met `anomaly`: those past the ones fast mode already gave out, once
    exact mode's own first frames proved the same (otherwise the video fails: it cannot be taken back)."""
    differs = False
    for frame in _decode(path, settings, report, fast=False):
        if frame.index >= len(released):
            yield frame
        elif _digest(frame) != released[frame.index]:
            differs = True
            break
    if differs or report.frames < len(released):
        raise DecodeError(f"--decode_mode=fast gave out frames before it met an anomaly ({anomaly}) that differ "
                          "from exact decoding; extract this video with --decode_mode=exact, and please report it "
                          "with the file")


def _digest(frame: Frame) -> bytes:
    return hashlib.blake2b(frame.rgb.tobytes() + struct.pack("<qd", frame.index, frame.timestamp),
                           digest_size=16).digest()


def _decode(path: str, settings: DecodeSettings, report: DecodeReport, fast: bool) -> Iterator[Frame]:
    """`decode_frames` in one mode."""
    try:
        container = _open(path, settings.device)
    except Exception as e:  # PyAV raises a family of FFmpeg errors; all mean "not a readable video"
        raise DecodeError(f"cannot open as a video: {_describe(e)}") from None
    with container:
        if container.format.name in STILL_IMAGE_FORMATS:
            raise DecodeError(f"a still image ({container.format.name}), not a video")
        mismatch = format_mismatch(path, container.format.name)
        if mismatch and container.format.name in RAW_STREAM_FORMATS:
            raise DecodeError(f"{mismatch}: random bytes can pass FFmpeg's probe as such a stream; if it really "
                              "is one, rename it to its stream's extension (e.g. .h264) to extract it")
        stream = container.streams.best("video")
        if stream is None:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise DecodeError(f"no video stream (streams found: {', '.join(kinds)})")
        if mismatch:
            report.warn(f"{mismatch}: a mislabelled or damaged file?", partial=False)
        # Never frame threads: they make a damaged frame's concealment and corrupt flag depend on timing (BUILD_NOTES,
        # "Decoding in parallel"); videos are decoded in parallel by processes (`isolated_decode.DecoderPool`).
        stream.thread_type = "SLICE"
        if settings.threads:
            stream.codec_context.thread_count = settings.threads
        sampling = Sampling(1.0 / settings.fps, settings.max_frames)
        timeline = _Timeline(stream)
        plan = PacketPlan(container, stream, sampling, timeline) if fast else None
        watch = plan.watch if plan is not None else None
        held: list[Frame] = []  # leading sampled frames flagged corrupt, not yet yielded (MAX_HELD_CORRUPT)
        corrupt = 0
        try:
            for frame in _frames(container, stream, plan, timeline):
                restarts, untimed, first = timeline.restarts, timeline.untimed, timeline.start is None
                t = timeline.seconds(frame)
                if watch is not None:  # the plan's predictions hold, or the frame is not yielded
                    watch.check_output(t, timeline.restarts != restarts, timeline.untimed != untimed,
                                       frame.is_corrupt)
                    if first:
                        watch.check_origin(timeline.start)
                if not sampling.keeps(t):
                    continue
                if watch is not None:
                    watch.check_kept(t)
                # One swscale thread, so the pixels cannot depend on how a frame is sliced across threads (shards
                # must be byte-identical). Frames here are small; decoding itself stays multi-threaded.
                rgb = frame.to_ndarray(width=settings.image_size, height=settings.image_size, format="rgb24",
                                       interpolation="AREA", threads=1)
                sampled = Frame(index=report.frames + len(held), timestamp=float(t),
                                rgb=_display_orientation(rgb, frame.rotation))
                corrupt += frame.is_corrupt
                if frame.is_corrupt and report.frames == 0 and len(held) < MAX_HELD_CORRUPT:
                    held.append(sampled)
                else:
                    for kept in held + [sampled]:
                        yield kept
                        report.frames += 1
                    held = []
                if sampling.done:
                    break
        except (av.FFmpegError, ValueError, OSError) as e:
            if watch is not None and watch.speculating:  # exact mode would meet it with other frames decoded
                raise PlanMismatch(f"an error after the plan left packets out: {_describe(e)}", "decode_error") \
                    from None
            if report.frames == 0:
                raise DecodeError(f"no decodable frame: {_describe(e)}"
                                  + (f" ({mismatch})" if mismatch else "")) from None
            report.warn(f"decoding stopped early after {report.frames} frame(s): {_describe(e)}", partial=True)
        if held:
            raise DecodeError(f"every sampled frame ({len(held)}) decoded with errors (FFmpeg flags it corrupt): "
                              "not a readable video" + (f"; {mismatch}" if mismatch else ""))
        if corrupt:
            report.warn(f"{corrupt} of {report.frames} sampled frame(s) decoded with errors (FFmpeg flags them "
                        "corrupt): kept, but they may show artefacts", partial=False)
        if plan is not None:
            report.path, report.packets = plan.path, (plan.packets_read, plan.packets_decoded)
        else:
            report.path = "exact"
        _warn_about_timing(report, timeline, _declared_seconds(container, stream), settings, timeline.end)
    if report.frames == 0:
        raise DecodeError("no decodable frame (the video stream is empty)")

