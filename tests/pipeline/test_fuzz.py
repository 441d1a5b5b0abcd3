"""Property-based fuzzing (hypothesis) of manifest parsing, label checks and split assignment."""

import csv
import io
import os
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import parse_split_fractions
from pipeline.manifest import read_manifest
from pipeline.sources import InputError, VideoRecord, label_problem
from pipeline.splits import assign_splits

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

cells = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
rows = st.lists(st.tuples(st.sampled_from(["a.mp4", "b.mp4", "sub/c.mp4", "missing.mp4", "", " a.mp4"]),
                          cells, cells), max_size=8)
headers = st.sampled_from(["path,label", "path,label,group", "label,path", "path", "path,label,extra", ""])


@FUZZ
@given(header=headers, body=rows, raw=st.one_of(st.none(), st.text(max_size=200)))
def test_manifest_parsing_either_returns_clean_records_or_raises_input_error(tmp_path, header, body, raw):
    for name in ("a.mp4", "b.mp4", "sub/c.mp4"):
        os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    if raw is None:
        text = io.StringIO()
        writer = csv.writer(text)
        if header:
            writer.writerow(header.split(","))
        for row in body:
            writer.writerow(row[: len(header.split(","))] if header else row)
        raw = text.getvalue()
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(raw, encoding="utf-8")
    try:
        records = read_manifest(str(manifest))
    except InputError as e:
        assert str(e)  # a message, naming the manifest or its line
        return
    ids = [r.video_id for r in records]
    assert len(ids) == len(set(ids)) and records
    for r in records:
        assert os.path.exists(r.path) and label_problem(r.label) is None and r.group


@given(st.text(max_size=300))
def test_accepted_labels_cannot_break_the_label_file(label):
    if label_problem(label) is None:
        assert label.strip() and "\n" not in label and "\r" not in label and len(label) <= 200


groups = st.lists(st.tuples(st.sampled_from("gGhHkK"), st.integers(0, 5), st.sampled_from(["cat", "dog", "owl"])),
                  min_size=1, max_size=40)


@FUZZ
@given(videos=groups, salt=st.text(alphabet=string.ascii_letters, max_size=4),
       fractions=st.sampled_from(["train=1", "train=0.7,valid=0.15,test=0.15", "a=0.5,b=0.5", "x=0,y=1"]))
def test_every_video_gets_one_split_groups_never_straddle_and_order_does_not_matter(videos, salt, fractions):
    records = [VideoRecord(video_id=f"{label}/v{i}.mp4", path=f"/v{i}", label=label, group=f"{g}{n}")
               for i, (g, n, label) in enumerate(videos)]
    parsed = parse_split_fractions(fractions)
    result = assign_splits(records, parsed, salt)
    assert set(result.split_of_video) == {r.video_id for r in records}
    assert set(result.split_of_video.values()) <= set(parsed)
    for r in records:
        assert result.split_of_video[r.video_id] == result.split_of_group[r.group]
    again = assign_splits(list(reversed(records)), parsed, salt)
    assert again.split_of_video == result.split_of_video
