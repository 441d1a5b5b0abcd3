"""An extraction is a transaction on its output folder (issue 18, cases 4, 6, 7, 12, 13): a failed, concurrent or
mistaken run never leaves a mixed, deleted or silently replaced output, and never reads its own output."""

import filecmp
import json
import os
import resource
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pipeline.job import ExtractConfig, ExtractionError, run_extraction
from pipeline.transaction import STAGING_SUFFIX, OutputBusyError, OutputTransaction
from tests.pipeline.test_corpus import encode, moving

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETTINGS = dict(weights="none", image_size=75, fps=2.0, splits="train=0.5,valid=0.5")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Four tiny videos in two classes."""
    root = tmp_path_factory.mktemp("videos")
    for i, label in enumerate(("cat", "cat", "dog", "dog")):
        encode(root / label / f"v{i}.mp4", moving(12, seed=i))
    return root


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    run_extraction(ExtractConfig(output_dir=str(out), input_dir=str(videos), **SETTINGS))
    return out


def same_tree(a, b):
    """Every file of the two folders byte-identical (summary.json's timings aside), and no other file."""
    listed = [sorted(os.path.relpath(os.path.join(d, n), root) for d, _, names in os.walk(root) for n in names)
              for root in (a, b)]
    assert listed[0] == listed[1]
    return all(filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False) for n in listed[0]
               if not n.endswith("summary.json"))


def test_a_failed_rerun_leaves_the_previous_output_whole(videos, reference, tmp_path):
    """Case 6: a rerun over a good output that failed midway (disk full) left its new splits.csv, failures and
    warnings beside the old shards and summary.json. Now the output is untouched and the message says why."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = (out / "summary.json").read_bytes()

    def small_files():  # the child's writes beyond 5 KB fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (5_000, resource.RLIM_INFINITY))

    result = subprocess.run(
        [sys.executable, "-m", "pipeline.extract", f"--input_dir={videos}", f"--output_dir={out}", "--weights=none",
         "--image_size=75", "--fps=1", f"--splits={SETTINGS['splits']}", "--overwrite"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, preexec_fn=small_files)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "extract: error: writing the extraction failed" in result.stderr and "File too large" in result.stderr
    assert f"{out} was not changed" in result.stderr
    assert same_tree(reference, out) and (out / "summary.json").read_bytes() == before
    # The next run clears the failed run's staging folder and replaces the output as a whole.
    assert (tmp_path / ("out" + STAGING_SUFFIX)).exists()
    run_extraction(ExtractConfig(output_dir=str(out), input_dir=str(videos), **dict(SETTINGS, fps=1.0), overwrite=True))
    assert not (tmp_path / ("out" + STAGING_SUFFIX)).exists()
    assert json.loads((out / "summary.json").read_text())["config"]["fps"] == 1


def test_a_second_extraction_into_a_busy_output_stops_without_touching_it(videos, tmp_path):
    """Case 12: the second run deleted the first one's in-progress files as 'left by an interrupted run'."""
    out = tmp_path / "out"
    with OutputTransaction(str(out)) as staging:
        (tmp_path / "out.staging" / "in-progress").write_text("the first run's file")
        with pytest.raises(ExtractionError, match="another extraction is writing .*out now"):
            run_extraction(ExtractConfig(output_dir=str(out), input_dir=str(videos), **SETTINGS))
        assert os.listdir(staging) == ["in-progress"]


def test_an_extraction_made_with_other_settings_is_replaced_only_with_overwrite(videos, reference, tmp_path):
    """Case 13: a typo in --output_dir overwrote another dataset without notice."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    with pytest.raises(ExtractionError, match=r"made with other settings:\n  --fps: 2.0 there, 1.0 now\n.*--overwrite"):
        run_extraction(ExtractConfig(output_dir=str(out), input_dir=str(videos), **dict(SETTINGS, fps=1.0)))
    assert same_tree(reference, out)
    # A folder that is not an extraction is never replaced, --overwrite or not.
    notes = tmp_path / "notes"
    (notes / "thesis.tex").parent.mkdir()
    (notes / "thesis.tex").write_text("three years of work")
    with pytest.raises(ExtractionError, match="not an extraction output; it is never replaced"):
        run_extraction(ExtractConfig(output_dir=str(notes), input_dir=str(videos), **SETTINGS, overwrite=True))
    assert os.listdir(notes) == ["thesis.tex"]
    # The same settings again replace the output: a rerun (here with another chunk size, which changes no byte).
    run_extraction(ExtractConfig(output_dir=str(out), input_dir=str(videos), **SETTINGS, chunk_frames=4))
    assert same_tree(reference, out)


def test_an_output_inside_the_input_is_never_read_as_input(videos, reference, tmp_path):
    """Case 4: the second run ingested the first run's output as a class `out`, a shard as an mjpeg video."""
    root = tmp_path / "in"
    shutil.copytree(videos, root)
    for _ in range(2):
        summary = run_extraction(ExtractConfig(output_dir=str(root / "out"), input_dir=str(root), **SETTINGS))
    assert summary["class_names"] == ["cat", "dog"] and summary["inputs"] == 4
    assert summary["folders_left_out"] == [{"path": str(root / "out"), "reason": "the extraction's own output "
                                            "folder (--output_dir is inside --input_dir): never read as input"}]
    assert filecmp.cmp(root / "out" / "splits.csv", reference / "splits.csv", shallow=False)
    # The other way round would delete the videos when the output is replaced: refused before any work.
    with pytest.raises(ExtractionError, match="is inside --output_dir"):
        run_extraction(ExtractConfig(output_dir=str(tmp_path), input_dir=str(root), **SETTINGS))


@pytest.mark.parametrize("chunk_frames", [0, 4])
def test_non_finite_features_are_never_written(videos, tmp_path, chunk_frames):
    """Case 7: nothing checked features for NaN or Inf. A broken weights file (through the real local-file
    weights path), whose last batch normalization adds infinity, makes features infinite: the run stops, naming
    the videos, and writes no output. (A NaN kernel would not do: ReLU turns NaN into 0 on this CPU.)"""
    import keras

    from pipeline.features import load_inception_v3

    model = load_inception_v3("none", 75)
    last_norm = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)][-1]
    last_norm.beta.assign(np.full(last_norm.beta.shape, np.inf, np.float32))
    weights = str(tmp_path / "broken.weights.h5")
    model.save_weights(weights)
    out = tmp_path / "out"
    with pytest.raises(ExtractionError, match=r"non-finite features for 4 video\(s\); nothing was written:\n  "
                                              r"cat/v0.mp4: 2 of 2 frame\(s\)"):
        run_extraction(ExtractConfig(output_dir=str(out), input_dir=str(videos),
                                     **dict(SETTINGS, weights=weights), chunk_frames=chunk_frames))
    assert not out.exists()


def test_on_an_object_store_the_output_is_replaced_file_by_file_summary_last():
    """gs:// has no folder rename; TensorFlow's ram:// file system stands in for it here."""
    import tensorflow as tf

    from dataformat.files import read_text, write_atomically

    out = "ram://transaction/out"
    write_atomically(f"{out}/old_shard", "old")
    write_atomically(f"{out}/summary.json", "old")
    transaction = OutputTransaction(out)
    with transaction as staging:
        assert tf.io.gfile.exists(f"{out}.lock")
        with pytest.raises(OutputBusyError, match="another extraction is writing"):
            OutputTransaction(out).__enter__()
        write_atomically(f"{staging}/frames/new_shard", "new")
        write_atomically(f"{staging}/summary.json", "new")
        transaction.publish()
    files = [f.replace(out, "") for level in ("/*", "/*/*") for f in tf.io.gfile.glob(out + level)
             if not tf.io.gfile.isdir(f)]
    assert sorted(files) == ["/frames/new_shard", "/summary.json"]
    assert read_text(f"{out}/summary.json") == "new"
    assert not tf.io.gfile.exists(f"{out}.lock") and not tf.io.gfile.glob(f"{out}.staging/*/*")
