"""Shared fixtures: small real videos made by the project's own sample generator."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Fixtures that run a real extraction (a Beam pipeline, InceptionV3): every test using one is slow, marked here so
# that no test can bring one into the fast loop (`-m "not slow"`) by asking for it.
SLOW_FIXTURES = {"extracted_samples"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    """Marks tests that use a SLOW_FIXTURES fixture slow. Then orders them longest first: the benchmark smoke
    runs, then the other slow tests, then the rest (each group in file order). pytest-xdist hands tests out in this
    order, so the long ones start early and the short ones fill the gaps at the end instead of one worker
    finishing a long test alone."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

    def weight(item):
        return 0 if item.nodeid.startswith("tests/test_bench.py") else 1 if item.get_closest_marker("slow") else 2

    items.sort(key=weight)


# Small enough for InceptionV3 at its minimum input size to run in seconds on 2 CPU cores.
TINY = dict(num_classes=3, sessions=6, clips=1, seconds=2.0, video_fps=8, width=64, height=48)


@pytest.fixture(scope="session")
def sample_videos(tmp_path_factory):
    """18 H.264 videos: 3 classes x 6 sessions x 1 clip of 2 s at 8 fps (16 frames each)."""
    from tools.samples import write_samples

    root = tmp_path_factory.mktemp("videos")
    write_samples(str(root), seed=0, **TINY)
    return root


@pytest.fixture(scope="session")
def extracted_samples(tmp_path_factory):
    """A real extraction output of 90 sample videos (3 classes x 6 sessions x 5 clips, 2 s, 4 frames each at
    2 fps; random InceptionV3 at 75 px): 60/15/15 videos, 240/60/60 frames."""
    from tests.entry_points import extract_here
    from tools.samples import SESSION_GROUP_REGEX, write_samples

    videos = tmp_path_factory.mktemp("train_videos")
    write_samples(str(videos), seed=0, **dict(TINY, clips=5))
    out = tmp_path_factory.mktemp("extracted")
    extract_here(videos, out, group_regex=SESSION_GROUP_REGEX)
    return str(out)
