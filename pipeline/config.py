"""The settings of one extraction (`ExtractConfig`: one declaration per flag, see `settings`) and their checks,
made before any work.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Optional

from dataformat import schema
from dataformat.paths import is_remote
from dataformat.shards import DEFAULT_SHARD_BYTES
from pipeline.decode import DECODE_DEVICES, DECODE_MODES, DEFAULT_DECODE_TIMEOUT, DecodeSettings
from pipeline.features import MIN_IMAGE_SIZE, PRECISIONS
from pipeline.sources import compile_group_regex
from pipeline.splits import DEFAULT_SPLITS, parse_split_fractions
from settings import check_choices, require, setting

# Frames a local runner holds at once (see pipeline.chunks): about 0.5 GiB at 75 px, 1.1 GiB at 299 px.
DEFAULT_CHUNK_FRAMES = 5000
MAX_FPS = 1000.0  # beyond any camera: every frame is sampled long before
MAX_IMAGE_SIZE = 4096


class ExtractionError(RuntimeError):
    """The job cannot run or produced nothing usable; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """Settings of one extraction; each is a flag of `pipeline.extract` (see `settings`)."""

    output_dir: str = setting(help="Where frames/, sequences/, splits.csv, failures.jsonl and summary.json go "
                              "(local or gs://).")
    input_dir: Optional[str] = setting(None, "Folder with one subfolder per class (like Keras' "
                                       "image_dataset_from_directory); every file below a class folder is an input.")
    manifest: Optional[str] = setting(None, "Instead of --input_dir: a CSV with header `path,label[,group]`; "
                                      "relative paths are relative to the manifest's folder.")
    group_regex: Optional[str] = setting(
        None, "Regex searched in each video's path relative to the input root; its first capture group (or whole "
        "match) is the recording group, e.g. `_g(\\d+)_` for UCF101, `^([^/]+/s\\d+)_` for the samples. Every "
        "video of a group lands in one split.", shown_default="each video is its own group")
    fps: float = setting(1.0, "Frames sampled per second of video, by presentation time (YouTube-8M uses 1).")
    max_frames: Optional[int] = setting(None, "Keep at most this many sampled frames per video.", shown_default="all")
    image_size: int = setting(299, f"Frames are resized to a square of this size (InceptionV3 needs at least "
                              f"{MIN_IMAGE_SIZE}).")
    features: str = setting("inception_v3", "Frame feature extractor.", choices=("inception_v3",))
    weights: str = setting("imagenet", "`imagenet` (downloaded once by Keras), `none` (random, for tests) or the "
                           "path of an InceptionV3 no-top weights file (.h5 / .weights.h5) for offline machines.")
    feature_dtype: str = setting(
        "float16", "Storage dtype of the features. float16 halves sequences/ on disk and the LSTM's accuracy did "
        "not change (scripts/bench.py, storage); uint8 quarters it, quantized over the dataset's range (README, "
        "'Output format'); float32 for features beyond float16's range (65504).",
        choices=tuple(sorted(schema.FEATURE_DTYPES)))
    feature_batch_size: int = setting(32, "Frames per InceptionV3 forward pass.")
    precision: str = setting(
        "auto", "InceptionV3's compute dtype. auto: bfloat16 on CPUs with bfloat16 instructions (AVX512_BF16, AMX) "
        "and GPUs of compute capability 8.0+, float16 on older tensor-core GPUs, float32 otherwise (logged, and "
        "recorded in summary.json). bfloat16 ran InceptionV3 1.45x faster on this project's CPU, features at cosine "
        "0.99999 to float32's (BUILD_NOTES.md, 'Extraction precision'). The bytes are the same run to run for "
        "one precision.", choices=PRECISIONS)
    splits: str = setting(DEFAULT_SPLITS, "Split names and fractions of recording groups.")
    split_salt: str = setting("", "Salt of the group hash: another salt draws another (equally valid) split.")
    split_by: str = setting("group", "group: every video of a group in one split (the right way). frame: LEAKY, "
                            "for demonstrating story 002 only: frames/ is split frame by frame.",
                            choices=("group", "frame"))
    frame_order: str = setting("hashed", "Order of frames/ records: hashed (frames of a video spread over shards "
                               "and positions) or video (each video's frames together, in order, like a naive "
                               "writer; to study story 002 with training.inspect_order).", choices=("hashed", "video"))
    shard_bytes: int = setting(DEFAULT_SHARD_BYTES, "Target size of one TFRecord shard in bytes.",
                               shown_default="128 MiB")
    jpeg_quality: int = setting(90, "JPEG quality of the frames in frames/ (1-100).")
    featurize_accelerator: str = setting(
        "", "A Beam accelerator resource hint for the InceptionV3 step only, e.g. "
        "`type:nvidia-tesla-t4;count:1;install-nvidia-driver`: on Dataflow, GPU workers featurize while CPU workers "
        "decode and write. Ignored by local runners.")
    isolate_decode: bool = setting(True, "Decode each worker's videos in a child process, so a crash or hang in "
                                   "FFmpeg's native code fails that one video (failures.jsonl), not the job.")
    decode_timeout: float = setting(DEFAULT_DECODE_TIMEOUT, "Seconds without a decoded frame before a hung decoder "
                                    "is stopped (with --isolate_decode).")
    decode_mode: str = setting(
        "fast", "fast: decode only the packets the sampled frames need (skips groups of pictures between samples, "
        "across restart points proven safe, and frames no other frame refers to); the same frames, byte for byte, as "
        "exact, which decodes every frame (BUILD_NOTES.md, 'Decoding less'). Where that cannot be proven (open GOPs "
        "whose sampled frames refer back, timestamps that restart or are missing, other codecs) the video is decoded "
        "in full; summary.json's decode_path_* counters say how each was. A damaged packet in a skipped part goes "
        "unnoticed where exact stops at it, so the mode is part of what an extraction is.", choices=DECODE_MODES)
    decode_device: str = setting(
        "cpu", "cuda: decode with the GPU's video decoder (NVDEC, through FFmpeg's hardware acceleration), which "
        "frees the CPU for everything else; the job stops at the start, saying why, when this machine or FFmpeg "
        "build cannot.", choices=DECODE_DEVICES)
    decode_processes: int = setting(
        0, "Videos decoded at once per worker, each in its own process (with --isolate_decode) and thread; 0: one "
        "per core, at most 16. On distributed runners, where each core runs a worker, 1.",
        shown_default="one per core")
    chunk_frames: Optional[int] = setting(
        None, "A local runner holds a pipeline's data in memory: the videos are extracted in chunks of about this "
        "many sampled frames (estimated from their declared durations) and merged into the bytes one pass writes, "
        "so memory stays bounded whatever the dataset's size; a job that will not fit says so at the start. 0: one "
        f"pass. About 0.5 GiB at 75 px, 1.1 GiB at 299 px per {DEFAULT_CHUNK_FRAMES} frames.",
        shown_default=f"{DEFAULT_CHUNK_FRAMES} on the DirectRunner, one pass elsewhere")

    overwrite: bool = setting(False, "Replace an existing extraction in --output_dir that was made with other "
                              "settings (one made with the same settings is replaced without it; a folder holding "
                              "anything else is never replaced).")

    @functools.cached_property
    def split_fractions(self) -> dict[str, float]:
        """--splits parsed: the ordered {split: fraction} (`splits.parse_split_fractions`)."""
        return parse_split_fractions(self.splits)

    @property
    def decode_settings(self) -> DecodeSettings:
        return DecodeSettings(fps=self.fps, max_frames=self.max_frames, image_size=self.image_size,
                              mode=self.decode_mode, device=self.decode_device)

    def validate(self) -> None:
        """Raises ExtractionError naming the flag, and the values it takes, of the first setting that cannot work."""
        if not self.output_dir:
            raise ExtractionError("--output_dir is required")
        if bool(self.input_dir) == bool(self.manifest):
            raise ExtractionError("give exactly one of --input_dir (class-per-folder videos) or --manifest (CSV)")
        try:
            check_choices(self)
            require(math.isfinite(self.fps) and 0 < self.fps <= MAX_FPS, "fps", self.fps, f"a number in (0, {MAX_FPS}]")
            require(self.max_frames is None or self.max_frames >= 1, "max_frames", self.max_frames,
                    "at least 1 (leave it out for all frames)")
            require(MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE, "image_size", self.image_size,
                    f"{MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} (InceptionV3 needs at least {MIN_IMAGE_SIZE})")
            require(1 <= self.feature_batch_size <= 4096, "feature_batch_size", self.feature_batch_size, "1..4096")
            require(1 <= self.jpeg_quality <= 100, "jpeg_quality", self.jpeg_quality, "1..100")
            require(self.shard_bytes >= 1, "shard_bytes", self.shard_bytes, "a positive number of bytes")
            require(math.isfinite(self.decode_timeout) and self.decode_timeout > 0, "decode_timeout",
                    self.decode_timeout, "a positive number of seconds")
            require(self.chunk_frames is None or self.chunk_frames >= 0, "chunk_frames", self.chunk_frames,
                    ">= 0 (0: one pass)")
            require(0 <= self.decode_processes <= 256, "decode_processes", self.decode_processes,
                    "0..256 (0: one per core)")
            self.split_fractions  # noqa: B018 - parsed (and checked) once per config
            compile_group_regex(self.group_regex)
        except ValueError as e:
            raise ExtractionError(str(e)) from None
        if self.input_dir:
            _check_folders(self.input_dir, self.output_dir)


def _check_folders(input_dir: str, output_dir: str) -> None:
    """An output folder that contains the input would be deleted with it when the new output replaces it."""
    real = (lambda p: p.rstrip("/")) if is_remote(input_dir) or is_remote(output_dir) else os.path.realpath
    source, target = real(input_dir), real(output_dir)
    if source == target or source.startswith(target.rstrip("/") + "/"):
        raise ExtractionError(f"--input_dir={input_dir} is inside --output_dir={output_dir}: replacing the output "
                              "would delete the videos. Choose an --output_dir outside the input folder")
