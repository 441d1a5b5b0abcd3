import hashlib
import re

import pytest

from tools.samples import CLASSES, write_samples
from pipeline.sources import list_videos_in_dir
from tools.samples import SESSION_GROUP_REGEX

SMALL = dict(num_classes=2, sessions=2, clips=2, seconds=1.0, video_fps=6, width=32, height=24)


def digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.mp4"))}


def test_same_seed_same_bytes_other_seed_other_videos(tmp_path):
    write_samples(str(tmp_path / "a"), seed=3, **SMALL)
    write_samples(str(tmp_path / "b"), seed=3, **SMALL)
    write_samples(str(tmp_path / "c"), seed=4, **SMALL)
    a, b, c = (digests(tmp_path / n) for n in "abc")
    assert a == b
    assert sorted(a) == sorted(c) and all(a[k] != c[k] for k in a)


def test_layout_is_class_folders_with_sessions_in_the_name(tmp_path):
    paths = write_samples(str(tmp_path), **SMALL)
    assert len(paths) == 8
    listing = list_videos_in_dir(str(tmp_path), SESSION_GROUP_REGEX)
    assert {r.label for r in listing.records} == set(CLASSES[:2])
    assert {r.group for r in listing.records} == {f"{c}/s0{s}" for c in CLASSES[:2] for s in (1, 2)}


@pytest.mark.parametrize("setting, value, message", [
    ("seconds", 0.0, "--seconds=0.0: expected a length of at least one frame"),
    ("video_fps", 0, "--video_fps=0: expected 1..240"),
    ("width", 7, "--width=7: expected an even number of pixels in 16..4096"),
    ("height", 2, "--height=2: expected an even number"),
    ("num_classes", 9, "--num_classes=9: expected 1..4"),
    ("clips", 0, "--clips=0: expected at least 1"),
    ("sessions", 0, "--sessions=0: expected at least 1"),
])
def test_settings_out_of_range_are_refused_naming_the_flag_before_any_video(tmp_path, setting, value, message):
    """--seconds=0, --video_fps=0, --width=7 and --num_classes=9 ended in tracebacks; --clips=0 wrote nothing
    and said it succeeded."""
    from settings import SettingError

    with pytest.raises(SettingError, match=re.escape(message)):
        write_samples(str(tmp_path / "out"), **{setting: value})
    assert not (tmp_path / "out").exists()
