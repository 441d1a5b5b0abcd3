"""What a video file's container is, against what its name promises.

FFmpeg chooses a demuxer by probing a file's content, not its name. That is what lets a mislabelled file play,
and also what lets random bytes pass as a video now and then: most often as a bare stream with no container (raw
H.263 or H.261 "decodes" into a frame of noise). `pipeline.decode` fails a file named as a container that holds a
bare stream, and warns about one that holds another container than its name says.
"""

from __future__ import annotations

from typing import Optional

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
