import hashlib

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
