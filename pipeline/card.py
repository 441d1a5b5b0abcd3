"""The dataset card of one extraction (`dataformat.card`): its name, description, homepage and citation from the
flags (or generated), and its provenance, from the settings that made the data and the weights file loaded.

The provenance is a function of the settings, the weights' bytes and the tool's version: no date, no host, no
path of the output, so a rerun writes the same metadata, byte for byte.
"""

from __future__ import annotations

from typing import Sequence

import pipeline
from dataformat import card, schema
from pipeline.config import ExtractConfig

TOOL = "video-pipeline"  # setup.py's name


def extraction_card(config: ExtractConfig, class_names: Sequence[str], precision: str,
                    weights: dict) -> card.DatasetCard:
    """The card of an extraction with `config` (its real output folder, not the staging one) whose InceptionV3
    computes in `precision` with `weights` (`features.weights_provenance`)."""
    description = config.dataset_description or generated_description(config, class_names, weights)
    return card.DatasetCard(name=config.tfds_name, description=description, homepage=config.dataset_homepage,
                            citation=config.dataset_citation, provenance=provenance(config, precision, weights))


def provenance(config: ExtractConfig, precision: str, weights: dict) -> dict:
    """metadata.json's `provenance` (README, 'Output format'): how the data was made."""
    return {
        "tool": {"name": TOOL, "version": pipeline.__version__, "command": "python -m pipeline.extract"},
        "format_version": schema.FORMAT_VERSION,
        # Numbers as their declared types: a library caller's fps=2 and the command's --fps=2 write the same bytes.
        "frames": {"fps": float(config.fps),
                   "max_frames": None if config.max_frames is None else int(config.max_frames),
                   "image_size": int(config.image_size), "decode_mode": config.decode_mode,
                   "jpeg_quality": int(config.jpeg_quality), "frame_order": config.frame_order},
        "features": {"extractor": config.features, "weights": weights, "precision": precision,
                     "requested_precision": config.precision, "batch_size": int(config.feature_batch_size),
                     "pack_frames": int(config.pack_frames), "dtype": config.feature_dtype, "dim": schema.FEATURE_DIM},
        "splits": {"fractions": config.split_fractions, "split_by": config.split_by, "salt": config.split_salt,
                   "group_regex": config.group_regex},
    }


def generated_description(config: ExtractConfig, class_names: Sequence[str], weights: dict) -> str:
    """The description of --dataset_description's default: what the data is, in a paragraph."""
    limit = f", at most {config.max_frames} per video" if config.max_frames else ""
    source = {"imagenet": "ImageNet weights (Keras)",
              "none": f"RANDOM weights (seed {weights.get('seed')}): the features carry no meaning, for tests only"
              }.get(weights["source"], f"the weights file {weights.get('file')}")
    splits = ", ".join(f"{name} {fraction:.0%}" for name, fraction in config.split_fractions.items())
    by = ("of recording groups: every video of a group is in one split"
          if config.split_by == "group" else "of FRAMES (--split_by=frame): LEAKY, frames of one video in several splits")
    return (f"Videos of {len(class_names)} classes, extracted by {TOOL} {pipeline.__version__}: frames sampled at "
            f"{config.fps:g} per second{limit}, resized to {config.image_size}x{config.image_size} RGB; "
            f"InceptionV3 features (2048 per frame, average-pooled, stored as {config.feature_dtype}) computed with "
            f"{source}. Splits {splits}, {by}. How it was made: info.metadata['{card.PROVENANCE}'].")
