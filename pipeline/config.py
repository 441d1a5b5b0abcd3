"""The settings of one extraction (`ExtractConfig`: one declaration per flag, see `settings`) and of decoding
(`DecodeSettings`), with the constants they are declared with; each checks itself when it is made.

A leaf: it imports nothing heavy (no TensorFlow, Beam or PyAV), so `python -m pipeline.extract --help` answers at
once. The implementation (`pipeline.decode`, `features`, `sources`, `splits`, `job`) imports its constants from
here, never the other way round.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import Optional

from dataformat import card, schema
from dataformat.paths import is_remote
from settings import SettingError, at_least, between, check_settings, positive, setting

# Frames a local runner holds at once (see pipeline.chunks): about 0.5 GiB at 75 px, 1.1 GiB at 299 px.
DEFAULT_CHUNK_FRAMES = 5000
MAX_FPS = 1000.0  # beyond any camera: every frame is sampled long before
MIN_IMAGE_SIZE = 75  # InceptionV3's smallest accepted input
MAX_IMAGE_SIZE = 4096
FPS_BOUNDS = between(0, MAX_FPS, low_open=True)
MAX_FRAMES_BOUNDS = at_least(1, note="leave it out for all frames")
# Seconds without a decoded frame before a hung decoder is stopped (--decode_timeout).
DEFAULT_DECODE_TIMEOUT = 300.0
DECODE_MODES = ("fast", "exact")
DECODE_DEVICES = ("cpu", "cuda")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")  # InceptionV3's compute dtype (`features.resolve_precision`)
DEFAULT_SHARD_BYTES = 128 * 2**20  # TFDS aims for shards of 64 MiB to 1 GiB; this keeps parallel reads cheap.
DEFAULT_SPLITS = "train=0.7,valid=0.15,test=0.15"
_SPLIT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ExtractionError(RuntimeError):
    """The job cannot run or produced nothing usable; the message says what to do."""


def parse_split_fractions(text: str) -> dict[str, float]:
    """Parses `train=0.7,valid=0.15,test=0.15` into an ordered {split: fraction} that sums to 1.

    Raises:
      SettingError: naming what is wrong (bad syntax, bad name, negative or non-summing fractions).
    """
    fractions: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise SettingError(f"--splits: expected NAME=FRACTION, got {part!r} (e.g. {DEFAULT_SPLITS})")
        if not _SPLIT_NAME.match(name):
            raise SettingError(f"--splits: split name {name!r} must be lower-case letters, digits or '_' (TFDS)")
        if name in fractions:
            raise SettingError(f"--splits: split {name!r} given twice")
        try:
            fraction = float(value)
        except ValueError:
            raise SettingError(f"--splits: fraction of {name!r} is not a number: {value!r}") from None
        if not 0 <= fraction <= 1:
            raise SettingError(f"--splits: fraction of {name!r} must be in [0, 1], got {fraction}")
        fractions[name] = fraction
    total = sum(fractions.values())
    if abs(total - 1) > 1e-6:
        raise SettingError(f"--splits: fractions must sum to 1, got {total:g} ({text})")
    return fractions


def canonical_splits(text: str) -> str:
    """--splits in one spelling per meaning (`train=0.50,test=.5` -> `train=0.5,test=0.5`): what an extraction
    records and a rerun compares, so equivalent spellings are the same settings (like --fps=2 and 2.0).

    Raises:
      SettingError: as `parse_split_fractions`.
    """
    return ",".join(f"{name}={fraction!r}" for name, fraction in parse_split_fractions(text).items())


def compile_group_regex(pattern: Optional[str]) -> Optional[re.Pattern]:
    """Compiles `--group_regex`, with an error that says what is wrong with it."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise SettingError(f"--group_regex={pattern!r} is not a valid regular expression: {e}") from None


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    """How frames are sampled and sized (`pipeline.decode`); `ExtractConfig.decode_settings` makes it from the
    flags, which declare the same bounds.

    fps: frames sampled per second of video.
    max_frames: stop after this many sampled frames (None: no limit).
    image_size: frames are resized to image_size x image_size RGB (aspect ratio not kept, like Keras'
      image_dataset_from_directory; InceptionV3 expects 299).
    mode: 'fast' decodes only the packets the sampled frames need (`pipeline.packets`: the same frames);
      'exact' decodes every frame.
    """

    fps: float = setting(1.0, bounds=FPS_BOUNDS)
    max_frames: Optional[int] = setting(None, bounds=MAX_FRAMES_BOUNDS)
    image_size: int = setting(299, bounds=at_least(1))  # the decoder takes any size; InceptionV3 needs 75
    mode: str = setting("fast", choices=DECODE_MODES)
    threads: int = 0  # FFmpeg decoding threads per video (0: FFmpeg's choice); the frames do not depend on it
    device: str = "cpu"  # or an FFmpeg hardware decoder ("cuda": NVDEC); the frames do not depend on it

    def __post_init__(self):
        check_settings(self)


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
    fps: float = setting(1.0, "Frames sampled per second of video, by presentation time (YouTube-8M uses 1).",
                         bounds=FPS_BOUNDS)
    max_frames: Optional[int] = setting(None, "Keep at most this many sampled frames per video.",
                                        bounds=MAX_FRAMES_BOUNDS, shown_default="all")
    image_size: int = setting(299, "Frames are resized to a square of this size.",
                              bounds=between(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE,
                                             note=f"InceptionV3 needs at least {MIN_IMAGE_SIZE}"))
    features: str = setting("inception_v3", "Frame feature extractor.", choices=("inception_v3",))
    weights: str = setting("imagenet", "`imagenet` (downloaded once by Keras), `none` (random, for tests) or the "
                           "path of an InceptionV3 no-top weights file (.h5 / .weights.h5) for offline machines.")
    feature_dtype: str = setting(
        "float16", "Storage dtype of the features. float16 halves sequences/ on disk and the LSTM's accuracy did "
        "not change (scripts/bench.py, storage); uint8 quarters it, quantized over the dataset's range (README, "
        "'Output format'); float32 for features beyond float16's range (65504).",
        choices=tuple(sorted(schema.FEATURE_DTYPES)))
    feature_batch_size: int = setting(32, "Frames per InceptionV3 forward pass.", bounds=between(1, 4096))
    pack_frames: int = setting(
        256, "Videos are featurized in packs: consecutive videos of the plan holding about this many frames (from "
        "the durations their headers declare), whose frames fill InceptionV3's forward passes across video "
        "boundaries (summary.json's batch_fill; BUILD_NOTES.md, 'Packs'). A frame's features depend in their last "
        "bits on its place in its forward pass, so this is part of what an extraction is. 0: one video per pack "
        "(per-video forward passes).", bounds=at_least(0))
    precision: str = setting(
        "auto", "InceptionV3's compute dtype. auto: bfloat16 on CPUs with bfloat16 instructions (AVX512_BF16, AMX) "
        "and GPUs of compute capability 8.0+, float16 on older tensor-core GPUs, float32 otherwise (logged, and "
        "recorded in summary.json); what bfloat16 gains and costs: README, 'Speed on real video'. The bytes are the "
        "same run to run for one precision.", choices=PRECISIONS)
    splits: str = setting(DEFAULT_SPLITS, "Split names and fractions of recording groups.")
    split_salt: str = setting("", "Salt of the group hash: another salt draws another (equally valid) split.")
    split_by: str = setting("group", "group: every video of a group in one split (the right way). frame: LEAKY, "
                            "only to demonstrate a leaky split (docs/diagnosing.md): frames/ is split frame by frame.",
                            choices=("group", "frame"))
    frame_order: str = setting("hashed", "Order of frames/ records: hashed (frames of a video spread over shards "
                               "and positions) or video (each video's frames together, in order, like a naive "
                               "writer; to study batches of one video with training.inspect_order).",
                               choices=("hashed", "video"))
    shard_bytes: int = setting(DEFAULT_SHARD_BYTES, "Target size of one TFRecord shard in bytes.",
                               bounds=at_least(1), shown_default="128 MiB")
    jpeg_quality: int = setting(90, "JPEG quality of the frames in frames/.", bounds=between(1, 100))
    featurize_accelerator: str = setting(
        "", "A Beam accelerator resource hint for the InceptionV3 step only, e.g. "
        "`type:nvidia-tesla-t4;count:1;install-nvidia-driver`: on Dataflow, GPU workers featurize while CPU workers "
        "decode and write. Ignored by local runners.")
    isolate_decode: bool = setting(True, "Decode each worker's videos in a child process, so a crash or hang in "
                                   "FFmpeg's native code fails that one video (failures.jsonl), not the job.")
    decode_timeout: float = setting(DEFAULT_DECODE_TIMEOUT, "Seconds without a decoded frame before a hung decoder "
                                    "is stopped (with --isolate_decode).", bounds=positive())
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
        bounds=between(0, 256), shown_default="one per core")
    chunk_frames: Optional[int] = setting(
        None, "A local runner holds a pipeline's data in memory: the videos are extracted in chunks of about this "
        "many sampled frames (estimated from their declared durations) and merged into the bytes one pass writes, "
        "so memory stays bounded whatever the dataset's size; a job that will not fit says so at the start. 0: one "
        f"pass. About 0.5 GiB at 75 px, 1.1 GiB at 299 px per {DEFAULT_CHUNK_FRAMES} frames.",
        bounds=at_least(0), shown_default=f"{DEFAULT_CHUNK_FRAMES} on the DirectRunner, one pass elsewhere")

    dataset_name: str = setting(
        "", "TFDS name of both datasets (`builder.info.name`; TFDS' config name, frames or sequences, tells them "
        "apart): lower-case letters, digits and '_', starting with a letter. Like the three flags below, it describes "
        "the data and is written into its TFDS metadata (the dataset card, README 'Output format'); changing it "
        "changes neither the data's fingerprint nor needs --overwrite.",
        shown_default="the output folder's name, made a TFDS name (`my-run` -> `my_run`)")
    dataset_description: str = setting(
        "", "Description of the datasets (`builder.info.description`), followed by what each dataset holds.",
        shown_default="generated: the classes, fps, frame size, features, weights and splits")
    dataset_homepage: str = setting("", "Homepage of the datasets (`builder.info.homepage`).",
                                    shown_default="none: TFDS shows its catalog's address, with no page for it")
    dataset_citation: str = setting("", "How to cite the datasets, e.g. BibTeX (`builder.info.citation`).",
                                    shown_default="none")

    overwrite: bool = setting(False, "Replace an existing extraction in --output_dir that was made with other "
                              "settings (one made with the same settings is replaced without it; a folder holding "
                              "anything else is never replaced).")

    def __post_init__(self):
        check_settings(self)
        if not self.output_dir:
            raise SettingError("--output_dir is required")
        _check_not_a_root(self.output_dir)
        if bool(self.input_dir) == bool(self.manifest):
            raise SettingError("give exactly one of --input_dir (class-per-folder videos) or --manifest (CSV)")
        object.__setattr__(self, "splits", canonical_splits(self.splits))  # checked, and recorded canonically
        if self.dataset_name and card.name_problem(self.dataset_name):
            raise SettingError(f"--dataset_name: {card.name_problem(self.dataset_name)}")
        compile_group_regex(self.group_regex)
        if self.input_dir:
            _check_folders(self.input_dir, self.output_dir)

    @functools.cached_property
    def split_fractions(self) -> dict[str, float]:
        """--splits parsed: the ordered {split: fraction} (`parse_split_fractions`)."""
        return parse_split_fractions(self.splits)

    @property
    def tfds_name(self) -> str:
        """--dataset_name, or the default made from the output folder's name (`card.name_of_folder`)."""
        return self.dataset_name or card.name_of_folder(self.output_dir)

    @property
    def decode_settings(self) -> DecodeSettings:
        return DecodeSettings(fps=self.fps, max_frames=self.max_frames, image_size=self.image_size,
                              mode=self.decode_mode, device=self.decode_device)


def _check_not_a_root(output_dir: str) -> None:
    """The output replaces its folder by renames beside it: a file system's root (or a bucket's) has no beside."""
    if is_remote(output_dir):
        root = not output_dir.split("://", 1)[1].strip("/").count("/")
    else:
        root = not os.path.basename(os.path.abspath(output_dir))
    if root:
        raise SettingError(f"--output_dir={output_dir} is the root folder of its file system (or bucket), which cannot "
                           "be an output: the new output is written beside the folder and then replaces it. Name a "
                           "folder, e.g. /data/extracted")


def _check_folders(input_dir: str, output_dir: str) -> None:
    """An output folder that contains the input would be deleted with it when the new output replaces it."""
    real = (lambda p: p.rstrip("/")) if is_remote(input_dir) or is_remote(output_dir) else os.path.realpath
    source, target = real(input_dir), real(output_dir)
    if source == target or source.startswith(target.rstrip("/") + "/"):
        raise SettingError(f"--input_dir={input_dir} is inside --output_dir={output_dir}: replacing the output "
                           "would delete the videos. Choose an --output_dir outside the input folder")
