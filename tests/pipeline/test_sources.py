"""Listing inputs: class folders, groups, manifests and the errors that name the file and line."""

import dataclasses
import json
import os

import pytest

from pipeline.manifest import read_manifest
from pipeline.sources import InputError, list_videos_in_dir
from settings import SettingError


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_class_folders_give_labels_ids_and_groups(tmp_path):
    touch(tmp_path / "dog" / "v_g01_c01.mp4")
    touch(tmp_path / "dog" / "nested" / "v_g02_c01.mp4")
    touch(tmp_path / "cat" / "v_g01_c02.mp4")
    touch(tmp_path / "cat" / ".DS_Store")
    touch(tmp_path / "stray.mp4")
    listing = list_videos_in_dir(str(tmp_path), group_regex=r"_g(\d+)_")
    assert [(r.video_id, r.label, r.group) for r in listing.records] == [
        ("cat/v_g01_c02.mp4", "cat", "01"),
        ("dog/nested/v_g02_c01.mp4", "dog", "02"),
        ("dog/v_g01_c01.mp4", "dog", "01"),
    ]
    assert [p["video_id"] for p in listing.problems] == ["stray.mp4"]
    assert "class folder" in listing.problems[0]["error"]
    assert listing.hidden == [str(tmp_path / "cat" / ".DS_Store")]


def test_default_group_is_the_video_itself(tmp_path):
    touch(tmp_path / "a" / "x.mp4")
    (record,) = list_videos_in_dir(str(tmp_path)).records
    assert record.group == "a/x.mp4"


def test_group_regex_that_misses_a_video_is_an_error_naming_it(tmp_path):
    touch(tmp_path / "a" / "s01_c01.mp4")
    touch(tmp_path / "a" / "oddname.mp4")
    with pytest.raises(InputError, match="a/oddname.mp4"):
        list_videos_in_dir(str(tmp_path), group_regex=r"(s\d+)_")


def test_missing_or_empty_input_dir(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list_videos_in_dir(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="no files in class folders"):
        list_videos_in_dir(str(tmp_path))


def test_invalid_regex_is_reported(tmp_path):
    touch(tmp_path / "a" / "x.mp4")
    with pytest.raises(SettingError, match="--group_regex='\\(' is not a valid regular expression"):
        list_videos_in_dir(str(tmp_path), group_regex="(")


def test_manifest_resolves_relative_paths_and_group_column(tmp_path):
    touch(tmp_path / "clips" / "one.mp4")
    touch(tmp_path / "clips" / "two.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,group\nclips/one.mp4,walk,alice\nclips/two.mp4,run,\n")
    records = read_manifest(str(manifest))
    assert [(r.video_id, r.label, r.group) for r in records] == [
        ("clips/one.mp4", "walk", "alice"),
        ("clips/two.mp4", "run", "clips/two.mp4"),
    ]
    assert records[0].path == str(tmp_path / "clips" / "one.mp4")


def test_manifest_errors_name_every_bad_line(tmp_path):
    touch(tmp_path / "ok.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nok.mp4,a\nmissing.mp4,a\nok.mp4,b\n,a\nok2.mp4,\nok.mp4,a,extra\n")
    with pytest.raises(InputError) as e:
        read_manifest(str(manifest))
    text = str(e.value)
    assert f"{manifest}:3: file not found" in text
    assert f"{manifest}:4: duplicate path ok.mp4 (first on line 2)" in text
    assert f"{manifest}:5: empty path" in text
    assert f"{manifest}:6: empty label" in text
    assert f"{manifest}:7:" in text and "more cell" in text


def test_manifest_header_problems(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,label,colour\nx.mp4,a,red\n")
    with pytest.raises(InputError, match=r"m.csv:1: .*missing column\(s\) \['path'\].*unknown column\(s\) \['file', 'colour'\]"):
        read_manifest(str(manifest))


def test_labels_that_would_break_the_output_are_refused_with_their_line(tmp_path):
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        touch(tmp_path / name)
    manifest = tmp_path / "m.csv"
    manifest.write_text('path,label\na.mp4,"two\nlines"\nb.mp4,' + "x" * 201 + "\nc.mp4,fine\n")
    with pytest.raises(InputError) as e:
        read_manifest(str(manifest))
    assert f"{manifest}:2: label 'two\\nlines' contains a control character" in str(e.value)
    assert f"{manifest}:4: label of 201 characters" in str(e.value)


@pytest.mark.slow
def test_path_like_labels_stay_names_and_write_nothing_outside_the_output(sample_videos, tmp_path):
    import json

    from pipeline.job import ExtractConfig, run_extraction

    videos = sorted(p for p in sample_videos.rglob("*.mp4"))[:4]
    rows = ["path,label"] + [f"{v},{label}" for v, label in zip(videos, ["../escape", "a/b", "../escape", "a/b"])]
    (tmp_path / "in").mkdir()
    manifest = tmp_path / "in" / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    out = tmp_path / "work" / "out"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    run_extraction(ExtractConfig(output_dir=str(out), manifest=str(manifest), weights="none", image_size=75, fps=2,
                                 splits="train=1"))
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before and not str(p).startswith("work")] == []
    assert json.loads((out / "summary.json").read_text())["class_names"] == ["../escape", "a/b"]
    assert (out / "sequences" / "label.labels.txt").read_text().splitlines() == ["../escape", "a/b"]


def test_links_never_list_a_video_twice_or_under_another_label(tmp_path):
    """Every real file is listed once, at its own path: a link loop (`in/b/loop -> ..`) must not make the walk
    list 206 inputs from 3 videos, copies labelled by the class folder the link sat in, or let a top-level file
    in through it."""
    root = tmp_path / "in"
    touch(root / "a" / "x.webm")
    touch(root / "b" / "y.webm")
    touch(root / "top.mp4")
    (root / "b" / "loop").symlink_to("..")
    (root / "b" / "to_a").symlink_to("../a")
    (root / "b" / "x_again.webm").symlink_to("../a/x.webm")
    (root / "b" / "top_again.mp4").symlink_to("../top.mp4")
    listing = list_videos_in_dir(str(root))
    assert [(r.video_id, r.label) for r in listing.records] == [("a/x.webm", "a"), ("b/y.webm", "b")]
    problems = {p["video_id"]: p["error"] for p in listing.problems}
    assert set(problems) == {"top.mp4", "b/loop", "b/to_a", "b/x_again.webm", "b/top_again.mp4"}
    assert "already listed as the input folder itself" in problems["b/loop"]
    assert "already listed as a" in problems["b/to_a"]
    assert "the same file as a/x.webm (through a symbolic link)" in problems["b/x_again.webm"]
    assert "the same file as top.mp4" in problems["b/top_again.mp4"]


def test_a_link_to_a_folder_outside_is_followed_once(tmp_path):
    """A class folder may be a link to where the videos live; each real file is still listed once."""
    elsewhere = tmp_path / "store" / "cats"
    touch(elsewhere / "c1.mp4")
    root = tmp_path / "in"
    touch(root / "dog" / "d1.mp4")
    (root / "cat").symlink_to(elsewhere)
    (root / "kitten").symlink_to(elsewhere)
    (root / "dog" / "hard.mp4").hardlink_to(root / "dog" / "d1.mp4")
    (root / "dog" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    listing = list_videos_in_dir(str(root))
    assert [(r.video_id, r.label) for r in listing.records] == [("cat/c1.mp4", "cat"), ("dog/d1.mp4", "dog")]
    problems = {p["video_id"]: p["error"] for p in listing.problems}
    assert "already listed as cat" in problems["kitten"]
    assert "the same file as dog/d1.mp4 (through a hard link)" in problems["dog/hard.mp4"]
    assert "broken symbolic link" in problems["dog/gone.mp4"]


def test_special_files_are_problems_never_opened(tmp_path):
    """FIFOs, sockets and devices are listed as problems and never opened (a FIFO hangs the duration probe)."""
    import os

    touch(tmp_path / "a" / "ok.mp4")
    os.mkfifo(tmp_path / "a" / "pipe.mp4")
    listing = list_videos_in_dir(str(tmp_path))
    assert [r.video_id for r in listing.records] == ["a/ok.mp4"]
    (problem,) = listing.problems
    assert problem["video_id"] == "a/pipe.mp4" and "a FIFO (named pipe), not a regular file" in problem["error"]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na/ok.mp4,x\na/pipe.mp4,x\n")
    with pytest.raises(InputError, match=r"m.csv:3: .*pipe.mp4 is a FIFO"):
        read_manifest(str(manifest))


def test_the_output_folder_and_other_extraction_outputs_are_never_input(tmp_path):
    """An output folder inside the input is never walked: a second run must not read the first run's output as a
    class `out`."""
    touch(tmp_path / "a" / "x.mp4")
    touch(tmp_path / "out" / "frames" / "frames-train.tfrecord-00000-of-00001")
    touch(tmp_path / "old_run" / "summary.json")
    touch(tmp_path / "old_run" / "frames" / "frames-train.tfrecord-00000-of-00001")
    listing = list_videos_in_dir(str(tmp_path), exclude=[str(tmp_path / "out")])
    assert [r.video_id for r in listing.records] == ["a/x.mp4"] and listing.problems == []
    reasons = {i["path"]: i["reason"] for i in listing.ignored}
    assert "own output folder" in reasons[str(tmp_path / "out")]
    assert "an extraction output" in reasons[str(tmp_path / "old_run")]


def test_group_regex_that_matches_empty_or_skips_its_group_says_so(tmp_path):
    touch(tmp_path / "a" / "s01_c01.mp4")
    with pytest.raises(InputError, match="matched an empty string"):
        list_videos_in_dir(str(tmp_path), group_regex="x*")
    with pytest.raises(InputError, match="first capture group took no part in the match"):
        list_videos_in_dir(str(tmp_path), group_regex=r"(\d+)?")


def test_a_manifest_with_a_byte_order_mark_is_read(tmp_path):
    touch(tmp_path / "one.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("path,label\none.mp4,walk\n".encode("utf-8-sig"))
    assert [(r.video_id, r.label) for r in read_manifest(str(manifest))] == [("one.mp4", "walk")]


def test_labels_differing_only_in_case_or_normalization_are_warned_about():
    from pipeline.sources import similar_labels

    nfc, nfd = "caf\u00e9", "cafe\u0301"
    warnings = similar_labels(["Cat", "cat", nfc, nfd, "dog"])
    assert len(warnings) == 2
    assert "'Cat', 'cat' differ only in letter case" in warnings[0]
    assert "Unicode normalization" in warnings[1]
    assert similar_labels(["cat", "dog"]) == []


def test_a_manifest_saved_as_utf16_is_read(tmp_path):
    """Excel's "Unicode Text" (UTF-16 with a byte order mark) is read, not a UnicodeDecodeError traceback."""
    touch(tmp_path / "café.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("path,label\r\ncafé.mp4,crème\r\n".encode("utf-16"))  # with its byte order mark
    assert [(r.video_id, r.label) for r in read_manifest(str(manifest))] == [("café.mp4", "crème")]


def test_a_manifest_in_a_windows_code_page_is_refused_naming_its_line(tmp_path):
    """A CP-1252 manifest (Excel's plain "CSV") is refused naming its line, not a UnicodeDecodeError traceback."""
    touch(tmp_path / "a.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("path,label\na.mp4,walk\na.mp4,crème\n".encode("cp1252"))
    with pytest.raises(InputError, match=rf"{manifest}:3: byte 0xe8 at column 9 is not UTF-8: .*Save it as "
                                         "'CSV UTF-8'"):
        read_manifest(str(manifest))


def test_a_file_name_that_is_not_utf8_is_one_failure_row_that_says_to_rename_it(tmp_path):
    """One Latin-1 file name (b'caf\\xe9.mp4') is one failure row, not a UnicodeEncodeError that stops the job;
    the other videos are listed, and every name the listing reports can be written as UTF-8 (summary.json)."""
    touch(tmp_path / "walk" / "ok.mp4")
    os.makedirs(os.fsencode(tmp_path / "walk") + b"/d\xe9j\xe0")
    for name in (b"/caf\xe9.mp4", b"/d\xe9j\xe0/x.mp4", b"/.hidden\xe9"):
        os.close(os.open(os.fsencode(tmp_path / "walk") + name, os.O_CREAT | os.O_WRONLY))
    listing = list_videos_in_dir(str(tmp_path))
    assert [r.video_id for r in listing.records] == ["walk/ok.mp4"]
    assert sorted(p["video_id"] for p in listing.problems) == ["walk/caf\\xe9.mp4", "walk/d\\xe9j\\xe0/x.mp4"]
    assert all("not valid UTF-8" in p["error"] and "rename it" in p["error"] for p in listing.problems)
    assert listing.hidden == [f"{tmp_path}/walk/.hidden\\xe9"]
    json.dumps(dataclasses.asdict(listing), ensure_ascii=False).encode("utf-8")  # no lone surrogate left
