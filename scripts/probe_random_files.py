"""Random bytes named like videos through `pipeline.decode.decode_frames`: what FFmpeg makes of them.

FFmpeg chooses a demuxer by probing content, not the name, and random bytes now and then pass a probe (as raw
H.263, LRC lyrics, EA cdata audio, ...). This tallies, per size and per leading header, how many random files
fail, how many decode with a warning, and how many would silently become training examples (the last must be
none). Deterministic for a given --seed.

    python scripts/probe_random_files.py --files=4000 --seed=1
"""

import argparse
import collections
import os
import sys
import tempfile
import time

import av
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline.decode import DecodeError, DecodeReport, DecodeSettings, decode_frames  # noqa: E402

SIZES = (100, 1000, 5000, 20000, 65536, 300000)
# Plausible starts of a real file: an MP4 ftyp box, a Matroska EBML id, an H.264 start code and SPS, an H.263
# picture start code, MPEG-TS sync bytes; each followed by random bytes.
HEADERS = {
    "none": b"",
    "mp4_ftyp": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2mp41",
    "mkv_ebml": b"\x1a\x45\xdf\xa3",
    "h264_sps": b"\x00\x00\x00\x01\x67",
    "h263_psc": b"\x00\x00\x80\x02",
    "mpegts": b"\x47\x40\x00\x10",
}


def outcome_of(path: str, settings: DecodeSettings) -> tuple[str, str, int]:
    """(format FFmpeg opened it as, 'failed' / 'warning' / 'SILENT', frames) for one file."""
    try:
        with av.open(path) as container:
            format_name = container.format.name
    except Exception:  # noqa: BLE001 - any FFmpeg error: not openable
        format_name = "-"
    report = DecodeReport()
    try:
        frames = sum(1 for _ in decode_frames(path, settings, report))
    except DecodeError:
        return format_name, "failed", 0
    return format_name, "warning" if report.warning else "SILENT", frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000, help="random files per header")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--extension", default="mp4")
    args = parser.parse_args()
    av.logging.set_level(av.logging.PANIC)
    rng = np.random.default_rng(args.seed)
    settings = DecodeSettings(fps=1, image_size=32)
    tally: collections.Counter = collections.Counter()
    start = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, f"broken.{args.extension}")
        for header_name, header in HEADERS.items():
            for _ in range(args.files):
                size = int(rng.choice(SIZES))
                with open(path, "wb") as f:
                    f.write(header + rng.bytes(max(0, size - len(header))))
                format_name, outcome, frames = outcome_of(path, settings)
                tally[(header_name, format_name, outcome, frames > 0)] += 1
    print(f"{args.files} files x {len(HEADERS)} headers in {time.time() - start:.0f} s")
    print(f"{'header':<10} {'opened as':<28} {'outcome':<8} {'frames':<6} count")
    for (header_name, format_name, outcome, any_frames), count in sorted(tally.items()):
        print(f"{header_name:<10} {format_name:<28} {outcome:<8} {str(any_frames):<6} {count}")
    silent = sum(n for key, n in tally.items() if key[2] == "SILENT")
    print(f"silently kept as a video: {silent}")
    return 1 if silent else 0


if __name__ == "__main__":
    sys.exit(main())
