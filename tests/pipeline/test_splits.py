import collections
import random

import pytest

from pipeline.config import DEFAULT_SPLITS, parse_split_fractions
from pipeline.sources import VideoRecord
from pipeline.splits import assign_splits

FRACTIONS = parse_split_fractions(DEFAULT_SPLITS)


def make_records(groups_per_class, videos_per_group=3, classes=("a", "b", "c")):
    return [
        VideoRecord(f"{c}/g{g:03d}_v{v}.mp4", f"/x/{c}/g{g:03d}_v{v}.mp4", c, f"{c}/g{g:03d}")
        for c in classes for g in range(groups_per_class) for v in range(videos_per_group)
    ]


def test_parse_split_fractions_keeps_order_and_values():
    assert parse_split_fractions("train=0.8,test=0.2") == {"train": 0.8, "test": 0.2}
    assert list(FRACTIONS) == ["train", "valid", "test"]


@pytest.mark.parametrize("text, message", [
    ("train=0.7,valid=0.2", "sum to 1"),
    ("train=0.7;valid=0.3", "not a number"),
    ("train", "NAME=FRACTION"),
    ("Train=1", "lower-case"),
    ("train=x", "not a number"),
    ("train=0.5,train=0.5", "twice"),
    ("train=1.5,test=-0.5", "must be in"),
])
def test_parse_split_fractions_rejects_bad_specs(text, message):
    with pytest.raises(ValueError, match=message):
        parse_split_fractions(text)


def test_assignment_is_deterministic_and_independent_of_input_order():
    records = make_records(20)
    first = assign_splits(records, FRACTIONS, salt="s")
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    assert assign_splits(shuffled, FRACTIONS, salt="s") == first


def test_salt_draws_another_split():
    records = make_records(20)
    assert assign_splits(records, FRACTIONS, "a").split_of_group != assign_splits(records, FRACTIONS, "b").split_of_group


def test_no_group_in_two_splits_even_when_groups_span_classes():
    # Groups shared by several classes (UCF101-style g08 across actions) must still stay on one side.
    records = [VideoRecord(f"{c}/v_g{g:02d}_c{v}.avi", "p", c, f"g{g:02d}")
               for c in "abcd" for g in range(25) for v in range(2)]
    result = assign_splits(records, FRACTIONS, "")
    splits_of_group = collections.defaultdict(set)
    for r in records:
        splits_of_group[r.group].add(result.split_of_video[r.video_id])
    assert all(len(s) == 1 for s in splits_of_group.values())
    assert set(result.split_of_video) == {r.video_id for r in records}


@pytest.mark.parametrize("groups_per_class", [7, 20, 33, 100])
def test_fractions_hold_per_class_and_overall(groups_per_class):
    result = assign_splits(make_records(groups_per_class), FRACTIONS, "")
    per_class = collections.Counter((g.split("/")[0], s) for g, s in result.split_of_group.items())
    overall = collections.Counter(result.split_of_group.values())
    for split, fraction in FRACTIONS.items():
        quota = groups_per_class * fraction
        for c in "abc":
            # Each class gets the floor or the ceiling of its quota: stratified to within one group.
            assert abs(per_class[c, split] - quota) < 1, (c, split, per_class)
        # Rounding does not pile up across classes either.
        assert abs(overall[split] - 3 * quota) < 1.5, (split, overall)
    assert not result.warnings


def test_too_few_groups_warns_and_names_the_class_and_split():
    result = assign_splits(make_records(2), FRACTIONS, "")
    assert any("class 'a' has 2 group(s)" in w and "test" in w for w in result.warnings)


def test_zero_fraction_split_gets_nothing():
    result = assign_splits(make_records(10), parse_split_fractions("train=0.5,valid=0.5,test=0"), "")
    assert "test" not in set(result.split_of_group.values())
