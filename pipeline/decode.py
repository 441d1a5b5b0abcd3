"""Decoding videos into sampled RGB frames with PyAV (FFmpeg in-process: no shell, no ffmpeg binary).

Frames are sampled by presentation time: the first decoded frame, then the first frame at or after each further
multiple of 1/fps seconds (as the YouTube-8M extractor samples at 1 fps). A video whose own frame rate is below
`fps` gives each frame once; nothing is duplicated. Only sampled frames are converted to RGB and resized (in
FFmpeg's swscale), and frames are yielded one at a time, so memory does not grow with the video's length.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator, Optional

import av
import numpy as np

from dataformat.paths import is_remote
from pipeline.packets import DRAIN, PacketPlan, PlanMismatch, Sampling


# Seconds without a decoded frame before a hung decoder is stopped (--decode_timeout).
DEFAULT_DECODE_TIMEOUT = 300.0
DECODE_MODES = ("fast", "exact")
DECODE_DEVICES = ("cpu", "cuda")


class DecodeError(Exception):
    """A video could not be opened or yielded no frame; the message says why, for failures.jsonl."""


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    """How frames are sampled and sized.

    fps: frames sampled per second of video.
    max_frames: stop after this many sampled frames (None: no limit).
    image_size: frames are resized to image_size x image_size RGB (aspect ratio not kept, like Keras'
      image_dataset_from_directory; InceptionV3 expects 299).
    mode: 'fast' decodes only the packets the sampled frames need (`pipeline.packets`: the same frames);
      'exact' decodes every frame.
    """

    fps: float = 1.0
    max_frames: Optional[int] = None
    image_size: int = 299
    mode: str = "fast"
    threads: int = 0  # FFmpeg decoding threads per video (0: FFmpeg's choice); the frames do not depend on it
    device: str = "cpu"  # or an FFmpeg hardware decoder ("cuda": NVDEC); the frames do not depend on it

    def __post_init__(self):
        if not self.fps > 0:
            raise ValueError(f"--fps must be > 0, got {self.fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"--max_frames must be >= 1, got {self.max_frames}")
        if self.image_size < 1:
            raise ValueError(f"--image_size must be >= 1, got {self.image_size}")
        if self.mode not in DECODE_MODES:
            raise ValueError(f"--decode_mode={self.mode!r}: expected one of {', '.join(DECODE_MODES)}")


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


# Demuxers FFmpeg uses for single still images (a .jpg renamed .mp4 opens as a one-frame "video").
STILL_IMAGE_FORMATS = ("image2", "jpeg_pipe", "png_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "gif_pipe",
                       "ppm_pipe", "pgm_pipe", "j2k_pipe", "qoi_pipe", "dpx_pipe", "exr_pipe", "psd_pipe", "svg_pipe")


# The demuxers a file named with a container's extension may open as (FFmpeg's own extension lists are incomplete:
# MPEG-TS declares none). FFmpeg probes content, not names, and random bytes sometimes pass its probes, as a raw
# stream most often (scripts/probe_random_files.py: 3 of 9,000 random files decoded into a frame of noise). A
# name that promises a container FFmpeg did not find is a warning; no container at all is a failure. Extensions
# not listed here are not checked.
CONTAINER_EXTENSIONS = {
    **dict.fromkeys(("mp4", "m4v", "mov", "3gp", "3g2", "mj2", "f4v"), ("mov,mp4,m4a,3gp,3g2,mj2", "m4v")),
    **dict.fromkeys(("mkv", "webm", "mk3d"), ("matroska,webm",)),
    **dict.fromkeys(("ts", "m2ts", "mts", "m2t"), ("mpegts",)),
    **dict.fromkeys(("mpg", "mpeg", "vob"), ("mpeg", "mpegvideo")),
    **dict.fromkeys(("wmv", "asf"), ("asf",)),
    **dict.fromkeys(("ogv", "ogg"), ("ogg",)),
    "avi": ("avi",), "flv": ("flv", "live_flv"),
    **dict.fromkeys(("h264", "264"), ("h264",)), **dict.fromkeys(("h265", "hevc", "265"), ("hevc",)),
}
# Demuxers of bare video bitstreams (no container): what random bytes pass as. Named as a container, such a
# file fails; named as its stream (.h264, .h263, ...) it is read.
RAW_STREAM_FORMATS = ("h261", "h263", "h264", "hevc", "vvc", "m4v", "mpegvideo", "cavsvideo", "dirac", "vc1",
                      "rawvideo", "obu", "avs2", "avs3")
# Sampled frames that FFmpeg flags corrupt held back at the start of a video: if none decodes cleanly, the file
# is not a video and fails; a longer run of them is let through with a warning.
MAX_HELD_CORRUPT = 16


def format_mismatch(path: str, format_name: str) -> Optional[str]:
    """Why the container FFmpeg found does not match the file's extension, or None."""
    name = path.rsplit("/", 1)[-1]
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    expected = CONTAINER_EXTENSIONS.get(extension)
    if expected is None or format_name in expected:
        return None
    what = "a bare video stream with no container" if format_name in RAW_STREAM_FORMATS else "another container"
    return (f"named .{extension}, but FFmpeg reads it as {format_name!r} ({what}), not "
            f"{' or '.join(map(repr, expected))}")


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
        return raw + self._offset - self._start


def _frames(container, stream, plan: Optional[PacketPlan]):
    """The stream's decoded frames in presentation order: every one, or (`plan`) those of the packets it needs."""
    if plan is None:
        yield from container.decode(stream)
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


def decode_frames(path: str, settings: DecodeSettings, report: Optional[DecodeReport] = None) -> Iterator[Frame]:
    """Yields the sampled frames of the video at `path`.

    The video stream is the one FFmpeg itself would pick (`av_find_best_stream`: e.g. the real video, not a
    one-frame cover or thumbnail stream listed first). Damage after at least one good frame ends the video
    early: the frames before it are kept and `report` says what happened (the caller records it in the
    summary). In fast mode, a decoder that disagrees with the packet plan before the first frame is yielded
    makes the video decode again in exact mode; after it, the video fails rather than differ from exact mode.

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
    try:
        yield from _decode(path, settings, report, fast=settings.mode == "fast")
    except PlanMismatch as e:
        if report.frames:
            raise DecodeError(f"--decode_mode=fast could not vouch for this video's frames ({e}); extract it with "
                              "--decode_mode=exact, and please report it with the file") from None
        report.warning, report.partial = None, False
        yield from _decode(path, settings, report, fast=False)
        report.path = "full_plan_mismatch"


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
        stream.thread_type = "AUTO"  # frame-parallel decoding in FFmpeg's own threads
        if settings.threads:
            stream.codec_context.thread_count = settings.threads
        sampling = Sampling(1.0 / settings.fps, settings.max_frames)
        timeline = _Timeline(stream)
        plan = PacketPlan(container, stream, sampling, timeline) if fast else None
        watch = plan.watch if plan is not None else None
        last = 0.0
        held: list[Frame] = []  # leading sampled frames flagged corrupt, not yet yielded (MAX_HELD_CORRUPT)
        corrupt = 0
        try:
            for frame in _frames(container, stream, plan):
                restarts, first = timeline.restarts, timeline.start is None
                t = last = timeline.seconds(frame)
                if watch is not None:  # the plan's predictions hold, or the frame is not yielded
                    if timeline.restarts != restarts:
                        watch.check_restart()
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
        _warn_about_timing(report, timeline, _declared_seconds(container, stream), settings,
                           max(last, plan.end if plan is not None else 0.0))  # fast mode reads past its last frame
    if report.frames == 0:
        raise DecodeError("no decodable frame (the video stream is empty)")

