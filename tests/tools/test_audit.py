"""The audit finds a planted leak (a frame-level split) and passes the group split."""

import numpy as np
import pytest

from tests.entry_points import extract_here, run_module
from tools.audit import audit, dhash, nearest, within
from tools.samples import SESSION_GROUP_REGEX


def test_dhash_and_hamming_distances():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (3, 8, 9))
    b = a.copy()
    b[0, 0, 0] = 255  # one brighter pixel flips at most one bit
    b[2] = 255 - a[2]  # the negative flips every bit that is not a tie
    ha, hb = dhash(a), dhash(b)
    assert ha.dtype == np.uint64 and len(set(ha.tolist())) == 3
    distance, index = nearest(hb, ha)
    assert distance[0] <= 1 and index[0] == 0
    assert distance[1] == 0 and index[1] == 1
    assert int(np.bitwise_count(ha[2] ^ hb[2])) == 64


def test_the_indexed_search_finds_exactly_what_comparing_every_pair_finds():
    """`within` (multi-index hashing, what the audit uses) against `nearest` (every pair compared): the same
    close queries, distances and first pool index, with repeated hashes, an all-zero hash, and steps of
    candidate pairs small enough to split one query's candidates."""
    rng = np.random.default_rng(1)
    for trial in range(12):
        pool = rng.integers(0, 2**63, 2000, dtype=np.uint64) << np.uint64(1) | rng.integers(0, 2, 2000, np.uint64)
        pool[100:200], pool[300:310] = pool[0], 0  # repeated frames
        queries = rng.integers(0, 2**63, 600, dtype=np.uint64)
        for k, source in enumerate(rng.integers(0, len(pool), 400)):  # planted: 0 to 6 bits flipped
            flipped = pool[source]
            for bit in rng.choice(64, int(rng.integers(0, 7)), replace=False):
                flipped ^= np.uint64(1) << np.uint64(bit)
            queries[k] = flipped
        queries[500] = 0
        max_distance = int(rng.integers(0, 9))
        expected, expected_at = nearest(queries, pool, chunk=512)
        found, found_at = within(queries, pool, max_distance, pairs_per_step=int(rng.integers(1, 3000)))
        close = expected <= max_distance
        assert close.sum() > 50 and np.array_equal(found <= max_distance, close), trial
        assert np.array_equal(found[close], expected[close]) and np.array_equal(found_at[close], expected_at[close])
        assert (found[~close] == 65).all()


def test_group_split_is_clean(extracted_samples):
    report = audit(extracted_samples)
    assert not report["leak"]
    assert report["videos_in_several_splits"] == [] and report["groups_in_several_splits"] == []
    assert report["splits"]["train"]["frames"]["classes"] == {"circle": 80, "square": 80, "triangle": 80}
    assert report["near_duplicates"]["valid"]["of_which_same_video"] == 0


@pytest.mark.slow
def test_planted_frame_split_leak_is_found(sample_videos, tmp_path):
    out = tmp_path / "leaky"
    extract_here(sample_videos, out, group_regex=SESSION_GROUP_REGEX, split_by="frame")
    report = audit(str(out))
    assert report["leak"]
    # Frames of one video, and of one recording session, are on both sides.
    assert len(report["videos_in_several_splits"]) >= 10
    assert any(g["group"].startswith("circle/s") for g in report["groups_in_several_splits"])
    # Neighbouring frames look alike: valid/test frames have near twins in train, and (one clip per session
    # here) every twin is a frame of the same video. The group split above has none.
    leaked = sum(nd["with_near_duplicate_in_train"] for nd in report["near_duplicates"].values())
    same_video = sum(nd["of_which_same_video"] for nd in report["near_duplicates"].values())
    assert leaked >= 3 and same_video == leaked, report["near_duplicates"]
    result = run_module("tools.audit", f"--data_dir={out}", timeout=300)
    assert result.returncode == 1 and "LEAK" in result.stdout


def test_a_folder_that_is_not_an_extraction_is_a_clear_error(tmp_path):
    """A missing folder is named in a clear error, not a TFDS traceback."""
    with pytest.raises(ValueError, match=f"{tmp_path}/nope/frames is not an extraction output"):
        audit(str(tmp_path / "nope"))


def _report(videos=0, groups=0, **shares):
    return {"videos_in_several_splits": [{"video_id": f"v{i}", "splits": ["train", "valid"]} for i in range(videos)],
            "groups_in_several_splits": [{"group": f"g{i}", "splits": ["train", "valid"]} for i in range(groups)],
            "near_duplicates": {split: {"share": share} for split, share in shares.items()}}


def test_one_verdict_weighs_overlap_and_near_duplicates():
    """No group in two splits was called clean in green even with 40% near-duplicate frames."""
    from tools.audit import verdict

    assert verdict(_report(valid=0.4, test=0.01))[0] == "leak"
    assert "40% of valid frames" in verdict(_report(valid=0.4))[1]
    assert verdict(_report(groups=1, valid=0.0))[0] == "leak"
    assert verdict(_report(valid=0.1))[0] == "suspect"
    assert verdict(_report(valid=0.05, test=0.0))[0] == "clean"
