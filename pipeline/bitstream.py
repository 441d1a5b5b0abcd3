"""What `pipeline.packets` reads from a packet's bytes before it is decoded: NAL unit types (H.264, HEVC),
picture types (MPEG-1/2/4 Part 2, and B slices of H.264/HEVC), whether a key packet really is intra."""

from __future__ import annotations

from typing import Optional

MPEG_CODECS = frozenset({"mpeg1video", "mpeg2video", "mpeg4"})


def nal_starts(data: bytes, length_size: Optional[int]) -> list[int]:
    """Where each NAL unit's header starts in one packet: length-prefixed (MP4, `length_size` bytes) or Annex B
    start codes (TS, AVI)."""
    starts = []
    if length_size:
        i = 0
        while i + length_size < len(data):
            size = int.from_bytes(data[i:i + length_size], "big")
            i += length_size
            if size <= 0 or i >= len(data):
                break
            starts.append(i)
            i += size
        return starts
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    return starts


def nal_types(data: bytes, length_size: Optional[int], hevc: bool) -> list[int]:
    """NAL unit types in one packet."""
    return [(data[i] >> 1) & 0x3F if hevc else data[i] & 0x1F for i in nal_starts(data, length_size)]


def exp_golomb(data: bytes, bit: int) -> tuple[int, int]:
    """The unsigned exp-Golomb number at bit offset `bit` of `data`, and the offset after it."""
    zeros = 0
    while bit < len(data) * 8 and not (data[bit // 8] >> (7 - bit % 8)) & 1:
        zeros, bit = zeros + 1, bit + 1
    value = 0
    for _ in range(zeros + 1):
        value = value << 1 | ((data[bit // 8] >> (7 - bit % 8)) & 1 if bit < len(data) * 8 else 0)
        bit += 1
    return value - 1, bit


def is_b_picture(codec: str, data: bytes, length_size: Optional[int]) -> bool:
    """Whether a packet holds a B picture (read from its first slice header or picture header)."""
    if codec in MPEG_CODECS:
        return mpeg_picture_type(codec, data) == "B"
    for i in nal_starts(data, length_size):
        if codec == "h264" and data[i] & 0x1F in (1, 5):  # first_mb_in_slice, slice_type (B: 1 or 6)
            _, bit = exp_golomb(data[i + 1:i + 8], 0)
            return exp_golomb(data[i + 1:i + 8], bit)[0] % 5 == 1
        if codec == "hevc" and (data[i] >> 1) & 0x3F < 32 and len(data) > i + 2 and data[i + 2] & 0x80:
            # first slice segment: [no_output_of_prior_pics], pps id, slice_type (B: 0), with no extra header bits
            bit = 1 + (16 <= (data[i] >> 1) & 0x3F <= 23)
            _, bit = exp_golomb(data[i + 2:i + 10], bit)
            return exp_golomb(data[i + 2:i + 10], bit)[0] == 0
    return False


def mpeg_picture_type(codec: str, data: bytes) -> Optional[str]:
    """"I", "P", "B" (or "S", MPEG-4 sprite) for the first picture of an MPEG-1/2/4 Part 2 packet; None if none."""
    if codec == "mpeg4":  # VOP start code 00 00 01 B6, then vop_coding_type (2 bits)
        i = data.find(b"\x00\x00\x01\xb6")
        return "IPBS"[data[i + 4] >> 6] if 0 <= i < len(data) - 4 else None
    i = data.find(b"\x00\x00\x01\x00")  # picture start code, temporal_reference (10 bits), picture_coding_type
    kind = (data[i + 5] >> 3) & 7 if 0 <= i < len(data) - 5 else 0
    return {1: "I", 2: "P", 3: "B"}.get(kind)


def is_intra(codec: str, data: bytes) -> bool:
    """Whether a key-flagged packet really holds an intra picture (the key flag is only the muxer's word)."""
    if codec in MPEG_CODECS:
        return mpeg_picture_type(codec, data) == "I"
    if codec == "vp8":  # frame tag: bit 0 clear on key frames
        return len(data) > 0 and data[0] & 1 == 0
    return True  # vp9, av1 (the demuxer's key flag comes from the frame header), mjpeg (every picture is intra)
