"""The data fingerprint sees every byte of every shard, from checksums recorded while writing; a shard that is not
the one written, and damaged metadata, are named."""

import hashlib
import json
import logging
import shutil

import numpy as np
import pytest

from dataformat import integrity, schema, shards
from pipeline.synthetic import SyntheticVideo, write_extraction
from training.data import open_data


def write(data_dir, change_last=False, num_shards=2):
    """A small output; with change_last, the video whose record comes last in its shard gets other features of
    the same size (a re-extraction that changed a later record: same lengths, same first records)."""
    rng = np.random.default_rng(0)
    videos = [SyntheticVideo(f"v{i}.mp4", i % 2, "train", features=rng.normal(size=(3, 2048)),
                             frames=np.full((1, 32, 32, 3), i, np.uint8)) for i in range(8)]
    if change_last:
        last = max(videos, key=lambda v: shards.sort_key(v.video_id))
        videos = [SyntheticVideo(v.video_id, v.label, v.split, features=v.features + 1.0, frames=v.frames)
                  if v is last else v for v in videos]
    write_extraction(str(data_dir), videos, ("a", "b"), feature_dtype="float32", num_shards=num_shards)
    return str(data_dir)


def fingerprint(data_dir):
    return integrity.fingerprint(data_dir, schema.SEQUENCES, schema.read_splits(data_dir, schema.SEQUENCES))


def test_a_changed_later_record_changes_the_fingerprint(tmp_path):
    before, after = write(tmp_path / "a"), write(tmp_path / "b", change_last=True)
    files = sorted((tmp_path / "a" / "sequences").glob("*.tfrecord-*"))
    assert [p.stat().st_size for p in files] == [
        p.stat().st_size for p in sorted((tmp_path / "b" / "sequences").glob("*.tfrecord-*"))]
    assert fingerprint(before) != fingerprint(after)
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    assert fingerprint(str(tmp_path / "moved")) == fingerprint(before)  # content, not path


def test_every_shard_s_checksum_is_recorded_while_writing(tmp_path):
    data_dir = write(tmp_path, num_shards=3)
    info = schema.read_splits(data_dir, schema.SEQUENCES)["train"]
    assert len(info.shard_sha256) == 3
    assert list(info.shard_sha256) == [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in info.filepaths]
    frames = schema.read_splits(data_dir, schema.FRAMES)["train"]  # both datasets record them
    assert [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in frames.filepaths] == list(frames.shard_sha256)


def test_an_output_without_recorded_checksums_is_hashed_on_read_and_says_so(tmp_path, caplog):
    fingerprints = []
    for name, change_last in (("a", False), ("b", True)):
        data_dir = write(tmp_path / name, change_last)
        metadata = tmp_path / name / "sequences" / "metadata.json"
        recorded = json.loads(metadata.read_text())
        del recorded[schema.SHARD_SHA256]  # as an older pipeline.extract wrote it
        metadata.write_text(json.dumps(recorded))
        with caplog.at_level(logging.WARNING):
            fingerprints.append(fingerprint(data_dir))
    assert fingerprints[0] != fingerprints[1]
    assert "records no shard checksums" in caplog.text and "re-extract to skip this pass" in caplog.text


def test_a_shard_replaced_after_extraction_is_found_where_every_byte_is_read(tmp_path):
    """A shard of another extraction copied over one of this output: every record passes its CRC, so only the
    recorded SHA-256 shows it. --skip_corrupt reads every byte anyway and refuses it."""
    data_dir, other = write(tmp_path / "a"), write(tmp_path / "b", change_last=True)
    for source in sorted((tmp_path / "b" / "sequences").glob("*.tfrecord-*")):
        shutil.copy(source, tmp_path / "a" / "sequences" / source.name)
    assert open_data(data_dir, schema.SEQUENCES, ["train"]).splits["train"].num_examples == 8  # no byte read
    with pytest.raises(integrity.CorruptDataError, match=r"is not the file the extraction wrote.*SHA-256"):
        open_data(data_dir, schema.SEQUENCES, ["train"], skip_corrupt=True)
    assert open_data(other, schema.SEQUENCES, ["train"], skip_corrupt=True).skipped == {"train": 0}


@pytest.mark.parametrize("kind", [schema.SEQUENCES, schema.FRAMES])
def test_a_one_bit_typo_in_dataset_info_is_a_data_error_naming_the_file(tmp_path, kind):
    data_dir = write(tmp_path)
    info = tmp_path / "sequences" / "dataset_info.json"
    original = info.read_bytes()
    for typo in (original.replace(b"{SPLIT}", b"{SPL@T}"),  # valid JSON, a broken file name template
                 original.replace(b'"tfrecord"', b'"tfsecord"'),  # valid JSON, an unknown file format
                 b"z" + original[1:]):  # not JSON
        info.write_bytes(typo)
        with pytest.raises(schema.DataError, match=r"sequences.*(dataset_info\.json|TFDS metadata).*re-run "
                                                   r"pipeline\.extract"):
            open_data(data_dir, kind, ["train"])
