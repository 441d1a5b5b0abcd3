"""Shared fixtures: small real videos made by the project's own sample generator."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Small enough for InceptionV3 at its minimum input size to run in seconds on 2 CPU cores.
TINY = dict(num_classes=3, sessions=6, clips=1, seconds=2.0, video_fps=8, width=64, height=48)


@pytest.fixture(scope="session")
def sample_videos(tmp_path_factory):
    """18 H.264 videos: 3 classes x 6 sessions x 1 clip of 2 s at 8 fps (16 frames each)."""
    from pipeline.samples import write_samples

    root = tmp_path_factory.mktemp("videos")
    write_samples(str(root), seed=0, **TINY)
    return root
