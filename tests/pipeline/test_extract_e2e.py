"""End to end: `python -m pipeline.extract` on generated H.264 videos, read back with TFDS alone. The command
runs where it is under test (the reference run, runner and worker options, a kill, exit statuses); other runs
call the library's `run_extraction` in this process, which extracts the same bytes without paying the start-up."""

import filecmp
import functools
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dataformat.files import read_csv
from tests import entry_points
from tests.entry_points import ROOT, TINY_EXTRACTION, run_module
from tools.samples import SESSION_GROUP_REGEX

pytestmark = pytest.mark.slow

# Outputs in different folders are compared byte for byte: one dataset name for all (its default is the folder's).
NAME = "tiny_samples"
# Packs of three videos (about 12 expected frames, `pipeline.packs`) cut into forward passes of 3 frames: the
# corrupt circle/s01_c09.mp4 sits between circle/s01_c01.mp4 and circle/s02_c01.mp4 in the first pack, and
# forward passes span video boundaries ([v0 0-2] [v0 3, v2 0-1] [v2 2-3]), so every comparison of outputs below
# (workers, chunks, runners, a killed run) covers packs.
PACKS = dict(pack_frames=12, feature_batch_size=3)
COMMON = ([f"--{name}={value}" for name, value in dict(TINY_EXTRACTION, **PACKS).items()]
          + [f"--group_regex={SESSION_GROUP_REGEX}", f"--dataset_name={NAME}"])


def extract(*args, **options):
    return run_module("pipeline.extract", *args, **options)


# `run_extraction` in this process with COMMON's settings; its summary.
extract_here = functools.partial(entry_points.extract_here, group_regex=SESSION_GROUP_REGEX, dataset_name=NAME,
                                 **PACKS)


@pytest.fixture(scope="module")
def inputs(sample_videos, tmp_path_factory):
    """The sample videos plus a corrupt file and an empty file, each in a class folder."""
    root = tmp_path_factory.mktemp("inputs")
    shutil.copytree(sample_videos, root, dirs_exist_ok=True)
    # Inside existing sessions, so the split of sessions is the same as without them.
    (root / "circle" / "s01_c09.mp4").write_bytes(np.random.default_rng(0).bytes(20000))  # corrupt
    (root / "square" / "s02_c09.mp4").write_bytes(b"")  # zero bytes
    return root


@pytest.fixture(scope="module")
def run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = extract(f"--input_dir={inputs}", f"--output_dir={out}", *COMMON)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_bad_files_are_quarantined_and_the_job_succeeds(run):
    out, result = run
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert sorted(f["video_id"] for f in failures) == ["circle/s01_c09.mp4", "square/s02_c09.mp4"]
    assert all(f["path"] and f["error"] for f in failures)
    assert "2 input(s) could not be extracted" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == 20 and summary["extracted"] == 18 and summary["failed"] == 2
    assert summary["inputs"] == summary["extracted"] + summary["failed"]
    # How each extracted video was decoded (--decode_mode=fast: skipping packets, or in full and why).
    from pipeline.summary import decode_paths

    paths = decode_paths(summary["counters"])
    assert sum(paths.values()) == 18 and all(p == "skipping" or p.startswith("full_") for p in paths), paths
    assert "decoded: " in result.stderr + result.stdout


def test_tfds_alone_reads_every_sequence_as_T_by_2048(run):
    out, _ = run
    rows = {r["video_id"]: r for r in read_csv(str(out / "splits.csv")) if r["status"] == "ok"}
    builder = tfds.builder_from_directory(str(out / "sequences"))
    seen = {}
    for split in builder.info.splits:
        for ex in builder.as_dataset(split=split):
            video_id = ex["video_id"].numpy().decode()
            features = ex["features"].numpy()
            assert features.shape == (int(rows[video_id]["frames"]), 2048)
            assert features.shape[0] == ex["num_frames"].numpy() == 4  # 2 s at 2 fps
            assert np.all(np.isfinite(features)) and np.abs(features).max() > 0
            seen[video_id] = split
    assert seen == {v: r["split"] for v, r in rows.items()}


def test_frames_dataset_has_every_sampled_frame(run):
    out, _ = run
    builder = tfds.builder_from_directory(str(out / "frames"))
    summary = json.loads((out / "summary.json").read_text())
    for split, counts in summary["splits"].items():
        assert builder.info.splits[split].num_examples == counts["frames"]
    ex = next(iter(builder.as_dataset(split="train")))
    assert ex["image"].shape == (75, 75, 3)
    assert builder.info.features["label"].names == ["circle", "square", "triangle"]


def test_splits_are_by_session_and_stratified(run):
    out, _ = run
    rows = [r for r in read_csv(str(out / "splits.csv")) if r["status"] == "ok"]
    split_of_group = {}
    for r in rows:
        assert split_of_group.setdefault(r["group"], r["split"]) == r["split"], r["group"]
    for label in ("circle", "square", "triangle"):
        # 6 sessions of one clip per class: 70/15/15 rounds to 4/1/1 sessions.
        assert sorted(r["split"] for r in rows if r["label"] == label) == ["test"] + ["train"] * 4 + ["valid"]


def test_two_workers_give_byte_identical_output(run, inputs, tmp_path):
    """(Plain reruns are compared too: by the chunked, portable and killed-and-rerun tests.)"""
    out, _ = run
    workers = extract(f"--input_dir={inputs}", f"--output_dir={tmp_path / 'workers'}", *COMMON,
                      "--direct_num_workers=2", "--direct_running_mode=multi_processing")
    assert workers.returncode == 0, workers.stderr[-2000:]
    assert_same_output(out, tmp_path / "workers")


def test_chunked_run_writes_the_one_pass_bytes(run, inputs, tmp_path, caplog):
    """--chunk_frames bounds a local run's memory (five chunks of the 20 inputs here, with their failures), and
    changes nothing in the output."""
    caplog.set_level("INFO")
    summary = extract_here(inputs, tmp_path, chunk_frames=16)
    assert "in 7 packs (--pack_frames=12), 7 chunks of at most about 16 frames" in caplog.text  # whole packs
    assert_same_output(run[0], tmp_path)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]  # the chunks' spills are gone
    assert summary["counters"] == json.loads((run[0] / "summary.json").read_text())["counters"]


def test_packs_fill_forward_passes_across_videos_and_summary_reports_the_fill(run, inputs):
    """Seven packs of three videos (the last of two), one forward pass after another across video boundaries: the
    model's batches, its padding and summary.json's batch_fill are those of the packs, not of the videos."""
    from pipeline.packs import pack_rows

    out, _ = run
    summary = json.loads((out / "summary.json").read_text())
    frames = {r["video_id"]: int(r["frames"]) for r in read_csv(str(out / "splits.csv"))}
    ids = sorted(frames)  # the plan's order: the listing's, sorted by path
    assert ids[:3] == ["circle/s01_c01.mp4", "circle/s01_c09.mp4", "circle/s02_c01.mp4"] and frames[ids[1]] == 0
    packs = [sum(frames[v] for v in ids[i:i + 3]) for i in range(0, len(ids), 3)]
    rows = sum(pack_rows(n, 3) for n in packs)
    counters = summary["counters"]
    assert counters["frames_featurized"] == sum(packs) == 72
    assert counters["model_batches"] == sum(-(-n // 3) for n in packs)  # 22; per-video batches would make 36
    assert counters["model_rows_padded"] == rows - 72
    assert summary["batch_fill"] == round(72 / rows, 4) and summary["batch_fill"] > 0.9


def assert_same_output(out, other):
    """Every file but summary.json (which holds timings) byte-identical, and no other file."""
    for sub in ("frames", "sequences", "."):
        names = sorted(n for n in os.listdir(out / sub) if os.path.isfile(out / sub / n) and n != "summary.json")
        assert sorted(n for n in os.listdir(other / sub) if os.path.isfile(other / sub / n) and n != "summary.json") == names
        match, mismatch, errors = filecmp.cmpfiles(out / sub, other / sub, names, shallow=False)
        assert not mismatch and not errors, (other, sub, mismatch, errors)


def _files(root):
    return [os.path.join(d, n) for d, _, names in os.walk(root) for n in names]


@pytest.mark.parametrize("moment", ["writing", "metadata"])
def test_killed_extraction_rerun_gives_byte_identical_output(run, inputs, tmp_path, moment):
    """SIGKILL at two moments (while a temporary file is being written; after shards exist but before
    summary.json), then the same extraction again: the output equals an uninterrupted run's."""
    import signal
    import time

    from dataformat import integrity
    from dataformat.files import TMP_MARKER

    from pipeline.transaction import STAGING_SUFFIX

    reference, _ = run
    out = tmp_path / "out"
    staging = tmp_path / ("out" + STAGING_SUFFIX)
    args = [sys.executable, "-m", "pipeline.extract", f"--input_dir={inputs}", f"--output_dir={out}", *COMMON]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = {"writing": lambda: any(TMP_MARKER in f for f in _files(staging)),
             "metadata": lambda: any(".tfrecord-" in f and TMP_MARKER not in f for f in _files(staging))}[moment]
    deadline = time.time() + 300
    while process.poll() is None and not ready() and time.time() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL  # killed, not finished
    assert not out.exists()  # nothing appears under the output's name before the run is complete
    # Even in the staging folder, no half-written shard under its final name: every one reads to its end.
    for f in _files(staging):
        if ".tfrecord-" in f and TMP_MARKER not in f:
            assert integrity.scan(f, check_data=True).lost_at is None, f
    extract_here(inputs, out)  # the same settings as COMMON, through the library the command calls
    assert not staging.exists() and not [f for f in _files(out) if TMP_MARKER in f]  # the killed run's files are gone
    assert_same_output(reference, out)


def test_float16_halves_and_uint8_quarters_the_sequences_and_keep_the_values(run, inputs, tmp_path):
    half, _ = run  # the default --feature_dtype, float16
    extract_here(inputs, tmp_path, feature_dtype="float32")

    def total(d):
        return sum(os.path.getsize(d / n) for n in os.listdir(d) if ".tfrecord-" in n)

    assert 0.45 < total(half / "sequences") / total(tmp_path / "sequences") < 0.55
    f32 = {ex["video_id"].numpy(): ex["features"].numpy()  # every split: uint8's range spans all of them
           for ex in tfds.builder_from_directory(str(tmp_path / "sequences")).as_dataset(split="train+valid+test")}
    for ex in tfds.builder_from_directory(str(half / "sequences")).as_dataset(split="train"):
        assert ex["features"].dtype == np.float16
        reference = f32[ex["video_id"].numpy()]
        f16 = ex["features"].numpy().astype(np.float32)
        assert np.linalg.norm(f16 - reference) / np.linalg.norm(reference) < 1e-3

    # uint8: a quarter of float32's feature bytes, dequantized with TFDS alone (scale, offset in info.metadata).
    quarter = tmp_path / "uint8"
    # Chunked: the quantization must still span every chunk's values (the merge encodes with the global range).
    extract_here(inputs, quarter, feature_dtype="uint8", chunk_frames=24)
    assert 0.2 < total(quarter / "sequences") / total(tmp_path / "sequences") < 0.3
    builder = tfds.builder_from_directory(str(quarter / "sequences"))
    q = builder.info.metadata["quantization"]
    everything = np.concatenate(list(f32.values()))
    assert q["offset"] + q["scale"] == pytest.approx(everything.min(), rel=1e-5)  # q = 1 is the smallest value
    assert q["offset"] + 255 * q["scale"] == pytest.approx(everything.max(), rel=1e-5)
    for ex in builder.as_dataset(split="train"):
        stored = ex["features"].numpy()
        assert stored.dtype == np.uint8 and stored.min() >= 1  # 0 is kept for padding
        values = q["offset"] + q["scale"] * stored.astype(np.float32)
        assert np.abs(values - f32[ex["video_id"].numpy()]).max() <= q["scale"] / 2 * 1.001


def test_nothing_extractable_is_an_error_and_its_failures_are_listed(tmp_path):
    from pipeline.job import ExtractionError

    bad = tmp_path / "in" / "circle"
    bad.mkdir(parents=True)
    (bad / "a.mp4").write_bytes(b"")
    with pytest.raises(ExtractionError, match="none of the 1 input files could be extracted.*out.staging"):
        extract_here(tmp_path / "in", tmp_path / "out", group_regex=None)
    assert not (tmp_path / "out").exists()  # an extraction of nothing replaces no output
    assert (tmp_path / "out.staging" / "failures.jsonl").read_text().count("\n") == 1


@pytest.mark.parametrize("settings, message", [
    (dict(input_dir="/no/such/dir"), "does not exist"),
    (dict(input_dir=None), "exactly one of --input_dir"),
    (dict(input_dir=".", splits="train=0.9"), "sum to 1"),
    # Refused before any work with the range named, not accepted (every video then blamed as hanging), an
    # OverflowError traceback, or refused only after decoding every video.
    (dict(input_dir=".", decode_timeout=0), r"--decode_timeout=0: expected a positive number"),
    (dict(input_dir=".", fps=float("inf")), r"--fps=inf: expected a number in \(0, 1000.0\]"),
    (dict(input_dir=".", feature_batch_size=0), r"--feature_batch_size=0: expected 1..4096"),
    (dict(input_dir=".", group_regex="("), "not a valid regular expression"),
])
def test_bad_settings_fail_fast_with_a_message(tmp_path, settings, message):
    from pipeline.job import ExtractConfig, ExtractionError, run_extraction
    from pipeline.sources import InputError
    from settings import SettingError

    with pytest.raises((ExtractionError, InputError, SettingError), match=message):
        run_extraction(ExtractConfig(output_dir=str(tmp_path), weights="none", **settings))
    assert not os.listdir(tmp_path)  # refused before any work


def test_the_command_exits_non_zero_naming_the_problem(tmp_path):
    missing_flag = extract("--input_dir=.", "--weights=none")
    assert missing_flag.returncode != 0 and "--output_dir" in missing_flag.stderr
    missing_input = extract("--input_dir=/no/such/dir", f"--output_dir={tmp_path}", "--weights=none")
    assert missing_input.returncode == 1 and "extract: error:" in missing_input.stderr
    assert "does not exist" in missing_input.stderr


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port, process, what, timeout=120):
    import socket
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, f"{what} exited with {process.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not listen on port {port} within {timeout} s")


@pytest.fixture
def portable_services(tmp_path):
    """Beam's job service and an external worker pool, as a Flink/Spark deployment has them, on 127.0.0.1.

    The pool starts each SDK worker as `python -c ...` from PATH, so PATH leads to this interpreter (the one with
    the project installed); otherwise workers would start without Beam and the job dies with DEADLINE_EXCEEDED.
    """
    import signal

    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    job_port, pool_port = _free_port(), _free_port()
    started = []
    try:
        for what, args, port in (
                ("job service", ["apache_beam.runners.portability.local_job_service_main", f"--port={job_port}"],
                 job_port),
                ("worker pool", ["apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"],
                 pool_port)):
            log = open(tmp_path / f"{what.replace(' ', '_')}.log", "wb")
            process = subprocess.Popen([sys.executable, "-m", *args], cwd=tmp_path, env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            started.append(process)
            _wait_for_port(port, process, what)
        yield job_port, pool_port, env
    finally:
        for process in started:  # each in its own session, with the workers it started
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def test_portable_runner_on_separate_workers_writes_the_direct_runners_bytes(run, inputs, tmp_path,
                                                                             portable_services):
    """The path Flink, Spark and Dataflow take: the job goes to a job service, SDK worker processes started by
    an external worker pool run it. Shards, splits and failures are byte-identical to the DirectRunner's."""
    reference, _ = run
    job_port, pool_port, env = portable_services
    out = tmp_path / "portable"
    result = extract(f"--input_dir={inputs}", f"--output_dir={out}", *COMMON, "--runner=PortableRunner",
                     f"--job_endpoint=localhost:{job_port}", "--environment_type=EXTERNAL",
                     f"--environment_config=localhost:{pool_port}", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting worker with command" in (tmp_path / "worker_pool.log").read_text()  # really its workers
    assert_same_output(reference, out)
    direct, portable = (json.loads((d / "summary.json").read_text()) for d in (reference, out))
    for summary in (direct, portable):
        for varying in ("wall_seconds", "frames_per_second", "config", "timing"):  # timing: not the bytes
            summary.pop(varying)
    assert portable == direct
    assert direct["counters"]["frames_featurized"] == direct["frames"] > 0


def test_a_decode_device_this_machine_lacks_stops_the_job_at_the_start(sample_videos, tmp_path):
    """--decode_device=cuda on a machine without an NVIDIA GPU (these have none; FFmpeg's build has CUDA): one
    message naming the flag and what to do, before any work."""
    from pipeline.job import ExtractionError

    with pytest.raises(ExtractionError, match=r"--decode_device=cuda: .*--decode_device=cpu"):
        extract_here(sample_videos, tmp_path / "out", decode_device="cuda")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.staging").exists()
