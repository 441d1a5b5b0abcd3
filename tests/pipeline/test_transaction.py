"""An extraction is a transaction on its output folder: a failed, concurrent or mistaken run never leaves a
mixed, deleted or silently replaced output, never reads its own output, and owns only the files it wrote."""

import contextlib
import filecmp
import json
import os
import resource
import shutil
import signal
import subprocess

import numpy as np
import pytest

from pipeline.job import ExtractConfig, ExtractionError, run_extraction
from pipeline.ownership import MANIFEST_JSON
from pipeline.transaction import STAGING_MARKER, STAGING_SUFFIX, OutputBusyError, OutputError, OutputTransaction
from settings import SettingError
from tests.entry_points import run_module
from tests.videos import encode, moving

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


@pytest.mark.slow
def test_a_failed_rerun_leaves_the_previous_output_whole(videos, reference, tmp_path):
    """A rerun over a good output that failed midway (disk full) left its new splits.csv, failures and
    warnings beside the old shards and summary.json. Now the output is untouched and the message says why."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = (out / "summary.json").read_bytes()

    def small_files():  # the child's writes beyond 5 KB fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (5_000, resource.RLIM_INFINITY))

    result = run_module("pipeline.extract", f"--input_dir={videos}", f"--output_dir={out}", "--weights=none",
                        "--image_size=75", "--fps=1", f"--splits={SETTINGS['splits']}", "--overwrite",
                        preexec_fn=small_files)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "extract: error: writing the extraction failed" in result.stderr and "File too large" in result.stderr
    assert f"{out} was not changed" in result.stderr
    assert same_tree(reference, out) and (out / "summary.json").read_bytes() == before
    # The next run clears the failed run's staging folder and replaces the output as a whole.
    assert (tmp_path / ("out" + STAGING_SUFFIX)).exists()
    run_extraction(ExtractConfig(output_dir=str(out), input_dir=str(videos), **dict(SETTINGS, fps=1.0), overwrite=True))
    assert not (tmp_path / ("out" + STAGING_SUFFIX)).exists()
    assert json.loads((out / "summary.json").read_text())["config"]["fps"] == 1


@pytest.mark.slow
def test_a_second_extraction_into_a_busy_output_stops_without_touching_it(videos, tmp_path):
    """Once, the second run deleted the first one's in-progress files as 'left by an interrupted run'."""
    out = tmp_path / "out"
    with OutputTransaction(str(out)) as staging:
        (tmp_path / "out.staging" / "in-progress").write_text("the first run's file")
        with pytest.raises(ExtractionError, match="another extraction is writing .*out now"):
            run_extraction(ExtractConfig(output_dir=str(out), input_dir=str(videos), **SETTINGS))
        assert sorted(os.listdir(staging)) == [STAGING_MARKER, "in-progress"]


@pytest.mark.slow
def test_an_extraction_made_with_other_settings_is_replaced_only_with_overwrite(videos, reference, tmp_path):
    """Once, a typo in --output_dir overwrote another dataset without notice."""
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
    # Files the user put inside the output are not the extraction's (its manifest.json lists its own): kept.
    user_files = {"runs/lstm/metrics.json": '{"test_accuracy": 0.9}', "report/index.html": "<html>"}
    for rel, text in user_files.items():
        (out / rel).parent.mkdir(parents=True)
        (out / rel).write_text(text)
    run_extraction(ExtractConfig(output_dir=str(out), input_dir=str(videos), **SETTINGS, chunk_frames=4))
    assert {rel: (out / rel).read_text() for rel in user_files} == user_files
    shutil.rmtree(out / "runs")
    shutil.rmtree(out / "report")
    assert same_tree(reference, out)


@pytest.mark.slow
def test_a_rerun_that_only_renames_or_describes_the_data_needs_no_overwrite_and_keeps_its_fingerprint(
        videos, reference, tmp_path):
    """The dataset card's text describes the data (README, 'Output format'): changing it is no other extraction."""
    import tensorflow_datasets as tfds

    from dataformat import integrity, schema

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = {kind: integrity.fingerprint(str(out), kind, schema.read_splits(str(out), kind)) for kind in ("frames",
                                                                                                           "sequences")}
    run_extraction(ExtractConfig(output_dir=str(out), input_dir=str(videos), **SETTINGS, dataset_name="pets",
                                 dataset_description="Cats and dogs.", dataset_citation="@misc{pets}"))
    info = tfds.builder_from_directory(str(out / "sequences")).info
    assert (info.name, info.citation) == ("pets", "@misc{pets}") and info.description.startswith("Cats and dogs.")
    assert tfds.builder_from_directory(str(reference / "sequences")).info.name == "out"  # the folder's name
    assert {kind: integrity.fingerprint(str(out), kind, schema.read_splits(str(out), kind))
            for kind in ("frames", "sequences")} == before


@pytest.mark.slow
def test_an_output_inside_the_input_is_never_read_as_input(videos, reference, tmp_path):
    """Once, the second run ingested the first run's output as a class `out`, a shard as an mjpeg video."""
    root = tmp_path / "in"
    shutil.copytree(videos, root)
    for _ in range(2):
        summary = run_extraction(ExtractConfig(output_dir=str(root / "out"), input_dir=str(root), **SETTINGS))
    assert summary["class_names"] == ["cat", "dog"] and summary["inputs"] == 4
    assert summary["folders_left_out"] == [{"path": str(root / "out"), "reason": "the extraction's own output "
                                            "folder (--output_dir is inside --input_dir): never read as input"}]
    assert filecmp.cmp(root / "out" / "splits.csv", reference / "splits.csv", shallow=False)
    # The other way round would delete the videos when the output is replaced: refused before any work.
    with pytest.raises(SettingError, match="is inside --output_dir"):
        ExtractConfig(output_dir=str(tmp_path), input_dir=str(root), **SETTINGS)


@pytest.mark.slow
@pytest.mark.parametrize("chunk_frames", [0, 4])
def test_non_finite_features_are_never_written(videos, tmp_path, chunk_frames):
    """Once, nothing checked features for NaN or Inf. A broken weights file (through the real local-file
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



# --- what the output transaction owns (fast: the transaction itself, with small stand-in outputs) ---------------

# A stand-in extraction output: every name the extraction writes (README, "Output format").
OUTPUT = {"summary.json": '{"config": {"fps": 1.0}}\n', "splits.csv": "video_id,group,label,split,frames,status\n",
          "failures.jsonl": "", "warnings.jsonl": "", "frames/dataset_info.json": "{}",
          "frames/frames-train.tfrecord-00000-of-00002": "old frames 0", "frames/frames-train.tfrecord-00001-of-00002":
          "old frames 1", "sequences/metadata.json": "{}", "sequences/sequences-train.tfrecord-00000-of-00001": "seq"}
NEW_OUTPUT = {**{k: v for k, v in OUTPUT.items() if "frames-train" not in k},
              "frames/frames-train.tfrecord-00000-of-00001": "new frames", "summary.json": '{"config": {"fps": 2}}'}
USER_FILES = {"runs/lstm/metrics.json": '{"test_accuracy": 0.9}', "report/index.html": "<html>a report</html>"}


def write_tree(root, tree):
    for rel, text in tree.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)


def read_tree(root):
    return {os.path.relpath(os.path.join(d, n), root): open(os.path.join(d, n)).read()
            for d, _, names in os.walk(root) for n in names}


def extract_files(out, tree):
    """A stand-in extraction into `out`: a transaction that writes `tree` into its staging folder and publishes."""
    transaction = OutputTransaction(str(out))
    with transaction as staging:
        (write_remote_tree if "://" in staging else write_tree)(staging, tree)
        transaction.publish()
    return transaction


def without_manifest(tree):
    return {rel: text for rel, text in tree.items() if rel != MANIFEST_JSON}


def test_a_rerun_replaces_only_the_extractions_own_files_and_keeps_the_users(tmp_path):
    """A rerun deleted runs/…/metrics.json and report/index.html that the user had put inside the output. The
    output's manifest.json lists what the extraction wrote: those files are replaced (a stale shard of the old
    output goes), the user's are carried into the new output, untouched."""
    out = tmp_path / "out"
    extract_files(out, OUTPUT)
    write_tree(out, USER_FILES)
    extract_files(out, NEW_OUTPUT)
    assert without_manifest(read_tree(out)) == {**NEW_OUTPUT, **USER_FILES}
    recorded = json.loads((out / MANIFEST_JSON).read_text())["files"]
    assert set(recorded) == set(NEW_OUTPUT)  # never the user's files
    assert recorded["frames/frames-train.tfrecord-00000-of-00001"] == len("new frames")
    assert recorded["summary.json"] is None  # its size changes with its timings: owned by its name
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.parametrize("tree, shown", [
    ({**OUTPUT, **{f"images/{i:02d}.png": "png" for i in range(12)}, "notes.txt": "notes", "code.py": "x = 1"},
     ["code.py", "images/00.png", "images/08.png", "... and 4 more"]),  # extraction names beside other files
    ({"summary.json": '{"config": {}}', "report.docx": "a report"}, ["report.docx"]),
    ({"summary.json": '{"total": 3}'}, ["summary.json"]),  # another tool's summary.json
    ({".hidden": "x", "frames/notes.md": "x"}, [".hidden", "frames/notes.md"]),
])
def test_a_folder_holding_anything_but_an_extractions_files_is_refused_before_any_work(tmp_path, tree, shown):
    """Any folder holding splits.csv, frames/, ... counted as an incomplete extraction and was replaced with all
    its other files; --overwrite replaced a report.docx beside a summary.json. Without a manifest, only a folder
    of nothing but the extraction's file names is one (an output of the previous version); anything else is
    refused before any work, listing what is there (the first 10 paths)."""
    out = tmp_path / "out"
    write_tree(out, tree)
    with pytest.raises(OutputError, match="holds files that are not an extraction output; it is never replaced") as e:
        extract_files(out, NEW_OUTPUT)
    assert all(f"{out}/{p}" in str(e.value) or p in str(e.value) for p in shown), str(e.value)
    assert read_tree(out) == tree and sorted(os.listdir(tmp_path)) == ["out"]  # no lock, no staging folder left


def test_an_output_of_the_previous_version_without_a_manifest_is_replaced_by_its_file_names(tmp_path):
    out = tmp_path / "out"
    write_tree(out, OUTPUT)
    extract_files(out, NEW_OUTPUT)
    assert without_manifest(read_tree(out)) == NEW_OUTPUT


def test_a_file_of_the_extraction_edited_by_the_user_is_never_replaced(tmp_path):
    out = tmp_path / "out"
    extract_files(out, OUTPUT)
    (out / "splits.csv").write_text("my own notes about the splits\n")
    with pytest.raises(OutputError, match=r"changed since it wrote them; they are never replaced:\n  .*splits.csv"):
        extract_files(out, NEW_OUTPUT)
    assert (out / "splits.csv").read_text() == "my own notes about the splits\n"


def test_a_users_staging_folder_lock_file_and_replaced_folder_are_never_touched(tmp_path):
    """A user's own OUT.staging/ was deleted and OUT.lock truncated (then deleted). Only a staging folder marked
    as this tool's is removed, and only a lock file that is absent or this tool's is taken."""
    out = tmp_path / "out"
    write_tree(tmp_path / "out.staging", {"thesis.tex": "three years"})
    with pytest.raises(OutputError, match="out.staging exists and is not an extraction's staging folder"):
        extract_files(out, OUTPUT)
    assert read_tree(tmp_path / "out.staging") == {"thesis.tex": "three years"}
    shutil.rmtree(tmp_path / "out.staging")
    (tmp_path / "out.lock").write_text("my lock notes")
    with pytest.raises(OutputError, match="out.lock exists and is not an extraction's lock"):
        extract_files(out, OUTPUT)
    assert (tmp_path / "out.lock").read_text() == "my lock notes"
    os.remove(tmp_path / "out.lock")
    extract_files(out, OUTPUT)
    write_tree(tmp_path / "out.replaced", {"keep.txt": "mine"})
    with pytest.raises(OutputError, match="out.replaced exists: .* it is never deleted"):
        extract_files(out, NEW_OUTPUT)
    assert read_tree(tmp_path / "out.replaced") == {"keep.txt": "mine"}
    assert without_manifest(read_tree(out)) == OUTPUT
    shutil.rmtree(tmp_path / "out.replaced")
    for name in ("out.staging", "out.replaced"):  # files of these names, found before any work
        (tmp_path / name).write_text("mine")
        with pytest.raises(OutputError, match=f"{name} exists.* never deleted"):
            extract_files(out, NEW_OUTPUT)
        assert (tmp_path / name).read_text() == "mine"
        os.remove(tmp_path / name)


def test_a_staging_folder_left_by_a_killed_run_is_removed_by_the_next(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), OutputTransaction(str(out)) as staging:
        write_tree(staging, {"frames/frames-train.tfrecord-00000-of-00001.tmp-1": "half"})
        raise KeyboardInterrupt  # the kill: the lock is released, the staging folder stays
    assert (tmp_path / "out.staging").exists()
    extract_files(out, OUTPUT)
    assert without_manifest(read_tree(out)) == OUTPUT and sorted(os.listdir(tmp_path)) == ["out"]


# --- a kill -9 at any instant: a forked copy of the test SIGKILLs itself just before its K-th change on disk ----

USER_FOLDERS = ("checkpoints/run1", "frames/mine")  # empty folders of the user's, inside a complete output


def changes_on_disk():
    """(module, name) of every call that changes the disk during a transaction."""
    import tensorflow as tf

    from pipeline import folder_moves
    return ([(os, name) for name in ("rename", "replace", "remove", "rmdir", "mkdir", "link")]
            + [(tf.io.gfile, name) for name in ("rename", "remove", "rmtree", "makedirs")]
            + [(folder_moves, "_renameat2")])


def killed_at(change, action):
    """Runs `action` in a forked child that kill -9s itself just before its `change`-th change on disk; False when
    the action finished first. (Forked, not started: a child with TensorFlow loaded takes milliseconds.)"""
    pid = os.fork()
    if pid == 0:
        try:
            count = [0]

            def wrap(real):
                def changing(*args, **kwargs):
                    count[0] += 1
                    if count[0] == change:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return real(*args, **kwargs)
                return changing

            for module, name in changes_on_disk():
                setattr(module, name, wrap(getattr(module, name)))
            action()
        except BaseException:
            os._exit(3)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the transaction failed without a kill"
    return False


def extraction_files(root):
    """The files of `root` that bear the name of a file of OUTPUT or NEW_OUTPUT, with their text."""
    return {rel: text for rel, text in read_tree(root).items() if rel in OUTPUT or rel in NEW_OUTPUT}


@pytest.mark.parametrize("swap", ["exchange", "two renames"])
def test_a_kill_at_any_instant_leaves_the_old_or_the_new_output_and_the_next_run_repairs_it(tmp_path, swap):
    """A kill -9 while the staging mark was written left a staging folder every later run refused; one between
    the two renames left no output at all; user folders were lost. Now, at every change on disk of a rerun over
    a complete output holding the user's files and empty folders: the output is the old or the new one (absent
    at exactly one instant only where the kernel has no atomic exchange: 'two renames'), no file of the user's is
    lost, and the next run repairs what was left, leaving nothing beside the output."""
    from pipeline import transaction as transaction_module

    out, work = tmp_path / "w" / "out", tmp_path / "w"
    missing, change = 0, 0

    def rerun():
        if swap == "two renames":
            transaction_module.exchange = lambda source, target: False  # in the child only
        extract_files(out, NEW_OUTPUT)

    while True:
        change += 1
        shutil.rmtree(work, ignore_errors=True)
        extract_files(out, OUTPUT)
        write_tree(out, USER_FILES)
        for folder in USER_FOLDERS:
            (out / folder).mkdir(parents=True)
        if not killed_at(change, rerun):
            break
        if out.is_dir():
            assert extraction_files(out) in (OUTPUT, NEW_OUTPUT), f"kill before change {change}"
        else:
            missing += 1
        anywhere = {**read_tree(work / "out.replaced"), **read_tree(work / "out.staging"), **read_tree(out)}
        assert USER_FILES.items() <= anywhere.items(), f"kill before change {change}"
        extract_files(out, NEW_OUTPUT)  # the next run repairs, then publishes
        assert without_manifest(read_tree(out)) == {**NEW_OUTPUT, **USER_FILES}, f"kill before change {change}"
        assert all((out / folder).is_dir() for folder in USER_FOLDERS), f"kill before change {change}"
        assert sorted(os.listdir(work)) == ["out"], f"kill before change {change}"
    assert change > 20 and missing == (1 if swap == "two renames" else 0)


def test_the_users_folders_are_kept_empty_ones_too_and_folders_of_the_tools_names_are_never_removed(tmp_path):
    """A rerun deleted the user's empty folders inside a complete output (checkpoints/run1, frames/mine: a sweep
    removed every empty folder); a user's OUT.staging holding only empty folders, and a user's OUT.replaced/, were
    deleted because 'empty' looked only at files. Only folders the old manifest accounts for are removed."""
    out = tmp_path / "out"
    extract_files(out, OUTPUT)
    (tmp_path / "elsewhere.txt").write_text("precious")
    for folder in USER_FOLDERS:
        (out / folder).mkdir(parents=True)
    (out / "link_out").symlink_to(tmp_path / "elsewhere.txt")
    extract_files(out, NEW_OUTPUT)
    assert all((out / folder).is_dir() and not os.listdir(out / folder) for folder in USER_FOLDERS)
    assert os.readlink(out / "link_out") == str(tmp_path / "elsewhere.txt")
    assert sorted(os.listdir(tmp_path)) == ["elsewhere.txt", "out"]
    for name, folder in [("out.staging", "plans/2024"), ("out.replaced", "archive"), ("out.staging", "")]:
        (tmp_path / name / folder).mkdir(parents=True)
        with pytest.raises(OutputError, match=f"{name} exists.* it is never deleted"):
            extract_files(out, OUTPUT)
        assert (tmp_path / name / folder).is_dir()
        shutil.rmtree(tmp_path / name)
    os.remove(out / "link_out")
    assert without_manifest(read_tree(out)) == NEW_OUTPUT and (out / "checkpoints" / "run1").is_dir()


def test_a_killed_runs_lock_inside_the_input_folder_is_never_read_as_input(tmp_path):
    """With the output inside the input folder, a killed run's OUT.lock became an input of the next run (a row of
    failures.jsonl). The transaction's files beside the output are left out of the walk, like the output."""
    from pipeline.job import list_inputs

    root = tmp_path / "in"
    write_tree(root, {"cat/a.mp4": "a", "dog/b.mp4": "b"})
    for out in (root / "out", root / "cat" / "out"):  # beside the class folders, and inside one
        lock = f"{out}.lock"
        write_tree(tmp_path, {lock: json.dumps({"tool": "pipeline.extract", "host": "h", "pid": 1, "started": "x"})})
        found = list_inputs(ExtractConfig(output_dir=str(out), input_dir=str(root), **SETTINGS))
        assert [r.video_id for r in found.records] == ["cat/a.mp4", "dog/b.mp4"] and found.problems == []
        assert [i["path"] for i in found.ignored] == [lock]
        os.remove(lock)


def test_summary_json_is_the_runs_report_rewritten_by_every_run(tmp_path):
    """summary.json is recorded in the manifest without a size (its timings change it run to run, and the
    manifest stays byte-identical between reruns): it is the extraction's by its name, and a rerun rewrites it
    even where the user annotated it, while an edited splits.csv (byte-stable, so checked) is refused."""
    out = tmp_path / "out"
    extract_files(out, OUTPUT)
    (out / "summary.json").write_text('{"config": {"fps": 1.0}, "note": "my annotations"}')
    extract_files(out, NEW_OUTPUT)
    assert (out / "summary.json").read_text() == NEW_OUTPUT["summary.json"]
    assert json.loads((out / MANIFEST_JSON).read_text())["files"]["summary.json"] is None


@contextlib.contextmanager
def mounted(folder):
    """A tmpfs mounted at `folder` (made if missing), unmounted afterwards wherever a rename moved it; skips the
    test where mounting is forbidden."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    source = f"test-transaction-{os.getpid()}-{folder.parent.parent.name}"
    result = subprocess.run(["mount", "-t", "tmpfs", source, str(folder)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")
    try:
        yield folder
    finally:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f if line.split(" - ")[1].split()[1] == source]
        for point in points:
            subprocess.run(["umount", point], check=True)


@pytest.mark.parametrize("when", ["before the run", "during the run"])
def test_a_file_system_mounted_inside_the_output_is_refused_before_anything_changes(tmp_path, when):
    """A file system mounted inside a complete output (a Docker volume at OUT/data): the folders were swapped,
    moving the user's files out of it failed (EXDEV), the run said 'OUT was not changed' although it was, and
    every later run failed the same way. Now refused before any change, at the start or (mounted during the run)
    before the swap, saying what to do; once it is unmounted, the run goes through."""
    out = tmp_path / "out"
    extract_files(out, OUTPUT)
    before = read_tree(out)
    transaction = OutputTransaction(str(out))
    with pytest.raises(OutputError, match=f"a file system is mounted inside --output_dir=.*\n  {out}/data\n.*"
                                          "nothing was changed. Unmount it"):
        if when == "before the run":
            with mounted(out / "data"):
                (out / "data" / "model.ckpt").write_text("user data")
                extract_files(out, NEW_OUTPUT)
        else:
            with transaction as staging:
                write_tree(staging, NEW_OUTPUT)
                with mounted(out / "data"):
                    transaction.publish()
    assert {**read_tree(out)} == before and sorted(os.listdir(tmp_path)) == ["out"] + (
        ["out.staging"] if when == "during the run" else [])
    extract_files(out, NEW_OUTPUT)
    assert without_manifest(read_tree(out)) == NEW_OUTPUT and sorted(os.listdir(tmp_path)) == ["out"]


def test_an_output_dir_that_is_a_link_is_written_into_its_target(tmp_path):
    """The link was renamed to OUT.replaced, the output landed on the local disk instead of the link's target,
    and every later run failed with 'Not a directory'."""
    target = tmp_path / "volume" / "data"
    extract_files(target, OUTPUT)
    link = tmp_path / "out"
    link.symlink_to(target)
    for tree in (NEW_OUTPUT, OUTPUT):
        transaction = extract_files(link, tree)
        assert transaction.output_dir == str(target) and transaction.staging == f"{target}.staging"
        assert link.is_symlink() and without_manifest(read_tree(target)) == tree
    assert sorted(os.listdir(tmp_path)) == ["out", "volume"] and os.listdir(tmp_path / "volume") == ["data"]


def test_odd_output_paths_leave_no_debris(tmp_path):
    """`--output_dir=x/.` staged into `x/..staging`; an existing file as --output_dir left a staging folder."""
    transaction = extract_files(f"{tmp_path}/x/.", OUTPUT)
    assert transaction.staging == f"{tmp_path}/x.staging"
    assert sorted(os.listdir(tmp_path)) == ["x"] and without_manifest(read_tree(tmp_path / "x")) == OUTPUT
    (tmp_path / "file").write_text("a file")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        extract_files(tmp_path / "file", OUTPUT)
    assert sorted(os.listdir(tmp_path)) == ["file", "x"] and (tmp_path / "file").read_text() == "a file"


@pytest.mark.parametrize("kind", ["tmpfs", "bind"])
def test_a_mount_point_is_refused_before_any_work(tmp_path, kind):
    """A mount point (a Docker volume is a bind mount) cannot be renamed: the whole extraction ran, then the swap
    failed with EBUSY, and the next run deleted the complete staging folder. Now refused at the start, naming a
    folder inside it to use. A real mount (this needs root): skipped where the container forbids mounting."""
    out = tmp_path / "out"
    out.mkdir()
    source = tmp_path / "source"
    source.mkdir()
    command = (["mount", "-t", "tmpfs", "none", str(out)] if kind == "tmpfs"
               else ["mount", "--bind", str(source), str(out)])
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    mounted = subprocess.run(command, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount here: {mounted.stderr.strip()}")
    try:
        write_tree(out, OUTPUT)
        with pytest.raises(OutputError, match=f"is a mount point .* e.g. --output_dir={out}/extraction"):
            extract_files(out, NEW_OUTPUT)
        assert read_tree(out) == OUTPUT and sorted(os.listdir(tmp_path)) == ["out", "source"]
        extract_files(out / "extraction", NEW_OUTPUT)  # what the message says to do works
        assert without_manifest(read_tree(out / "extraction")) == NEW_OUTPUT
    finally:
        subprocess.run(["umount", str(out)], check=True)


# --- object stores: gs:// has no folder rename; TensorFlow's ram:// file system stands in for it ----------------

def remote_tree(root):
    import tensorflow as tf

    from pipeline.ownership import list_files
    return {rel: tf.io.gfile.GFile(f"{root}/{rel}").read() for rel in list_files(root)}


def write_remote_tree(root, tree):
    from dataformat.files import write_atomically
    for rel, text in tree.items():
        write_atomically(f"{root}/{rel}", text)


def test_on_an_object_store_the_output_is_replaced_file_by_file_summary_last():
    import tensorflow as tf

    out = "ram://transaction/out"
    write_remote_tree(out, OUTPUT)  # an output of the previous version: no manifest
    transaction = OutputTransaction(out)
    with transaction as staging:
        assert tf.io.gfile.exists(f"{out}.lock")
        with pytest.raises(OutputBusyError, match="another extraction is writing"):
            OutputTransaction(out).__enter__()
        write_remote_tree(staging, NEW_OUTPUT)
        renames = []
        real_rename = tf.io.gfile.rename
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tf.io.gfile, "rename", lambda src, dst, overwrite=False: (
                renames.append(dst), real_rename(src, dst, overwrite)))
            transaction.publish()
    assert [r.rsplit("/", 1)[1] for r in renames[-2:]] == [MANIFEST_JSON, "summary.json"]
    assert without_manifest(remote_tree(out)) == NEW_OUTPUT
    assert not tf.io.gfile.exists(f"{out}.lock") and not remote_tree(f"{out}.staging")


def test_on_an_object_store_a_killed_publish_is_completed_by_the_next_run_and_user_files_are_kept():
    import tensorflow as tf

    out = "ram://transaction/killed"
    extract_files(out, OUTPUT)
    write_remote_tree(out, USER_FILES)
    moved = []
    real_rename = tf.io.gfile.rename

    def rename(src, dst, overwrite=False):
        if "/killed/" in dst:
            if len(moved) == 3:
                raise KeyboardInterrupt  # the kill, halfway through moving the new files in
            moved.append(dst)
        real_rename(src, dst, overwrite)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tf.io.gfile, "rename", rename)
        with pytest.raises(KeyboardInterrupt):
            extract_files(out, NEW_OUTPUT)
    # (A real kill would also leave its lock file behind, which the busy message says to delete.)
    assert "summary.json" not in remote_tree(out)  # an incomplete output is never marked complete
    with OutputTransaction(out):
        pass
    assert without_manifest(remote_tree(out)) == {**NEW_OUTPUT, **USER_FILES}
