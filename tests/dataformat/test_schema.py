"""The format's own checks: which versions a reader accepts."""

import json

import pytest

from dataformat import schema
from tests.training.test_train_e2e import write_sequences


@pytest.mark.parametrize("version, accepted", [("1.0.0", True), (schema.FORMAT_VERSION, True), ("1.9.0", False),
                                               ("9.0.0", False), ("0.3.0", False)])
def test_only_formats_this_reader_knows_are_read(tmp_path, version, accepted):
    """Only format versions this reader knows are read: a dataset_info.json of version 9.0.0 was once read as
    if it were 1.1.0."""
    write_sequences(str(tmp_path), {"train": [(0, 2), (1, 2)]})
    path = tmp_path / "sequences" / "dataset_info.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), version=version)))
    if accepted:
        assert schema.read_splits(str(tmp_path), schema.SEQUENCES)["train"].num_examples == 2
    else:
        with pytest.raises(ValueError, match=f"is in format {version}; this version of video-pipeline reads"):
            schema.read_splits(str(tmp_path), schema.SEQUENCES)
