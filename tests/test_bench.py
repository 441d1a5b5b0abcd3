"""Smoke test of scripts/bench.py in its tiniest mode: it runs and its JSON has the agreed shape (no timing)."""

import json
import subprocess
import sys

import pytest

from tests.entry_points import ROOT


GROUPS = {
    "input": (("sequence_input", "frame_input", "training_step"),
              ("sequence_input_vs_seed_generator", "sequence_input_cached_vs_seed_generator",
               "sequence_input_uint8_vs_seed_generator", "sequence_input_efficiency",
               "frame_input_vs_image_data_generator", "training_step_vs_seed_generator")),
    "extraction": (("extraction", "extraction_workers", "extraction_memory"),
                   ("extraction_vs_model_only", "extraction_vs_batch1", "extraction_two_processes_speedup")),
    "storage": (("storage",), ("storage_uint8_vs_float32", "storage_float16_vs_float32")),
    "scaling": (("extraction_scaling",), ("extraction_longer_run_memory_ratio",)),
    "real_video": (("extraction_real_video",), ("real_video_vs_full_decode_75px", "real_video_vs_serial_limit_299px")),
    "report": (("report_scaling",), ("report_time_growth_vs_videos_growth", "report_memory_growth",
                                     "audit_time_growth_vs_videos_growth", "audit_memory_growth",
                                     "near_duplicate_search_indexed_vs_every_pair")),
    "experiment": (("experiment_parallel",), ("experiment_parallel_vs_sequential_commands",
                                              "experiment_parallel_cpu_saving")),
    "ucf_clips": (("extraction_ucf_clips",), ("ucf_job_vs_full_decode_75px", "ucf_job_vs_model_only_299px",
                                              "ucf_batch_fill_32", "ucf_cpu_limit_vs_full_decode_75px",
                                              "ucf_cpu_limit_vs_model_only_299px")),
}


# The sections that time and measure whole `pipeline.extract` processes cost minutes even at --tiny
# (process start-up dominates) and exercise only the bench's own harness beyond what the extraction tests cover:
# they run with `scripts/test.sh -m bench_processes`, not in every suite run.
PROCESS_GROUPS = ("extraction", "scaling", "real_video", "report", "experiment", "ucf_clips")


@pytest.mark.slow
@pytest.mark.parametrize("group", [pytest.param(g, marks=pytest.mark.bench_processes) if g in PROCESS_GROUPS else g
                                   for g in sorted(GROUPS)])
def test_bench_tiny_runs_and_reports_every_ratio(tmp_path, group):
    """Every section, in four groups (so that a parallel test run spreads them over its workers)."""
    sections, ratios = GROUPS[group]
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "scripts/bench.py", "--tiny", f"--only={','.join(sections)}",
                             f"--json={out}"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["machine"]) >= {"cores", "cpu", "tensorflow", "apache_beam"}
    for key in ratios:
        assert isinstance(report["ratios"][key], float) and report["ratios"][key] > 0, key
    for section in sections:
        assert section in report
    if group == "storage":
        for dtype in ("float32", "float16", "uint8"):
            assert report["storage"]["dtypes"][dtype]["feature_bytes_per_frame"] > 0
        assert isinstance(report["storage"]["eval_change_points_uint8"], float)
        assert report["ratios"]["storage_uint8_vs_float32"] < 0.35  # a quarter of the bytes, plus per-example fields
    if group == "extraction":
        assert report["extraction_workers"]["byte_identical"] is True
    if group == "experiment":  # the same runs both ways: the same weights
        assert report["experiment_parallel"]["identical_weights"] is True
    if group == "ucf_clips":  # six clips of 5-9 s at 1 fps: one pack, one batch of 32 and a padded one of 8
        assert report["extraction_ucf_clips"]["job_75px"]["frames"] == 41
        assert report["ratios"]["ucf_batch_fill_32"] == round(41 / 48, 4)
    if group == "scaling":  # 4 videos, then the same videos twice as long
        assert [r["frames"] for r in report["extraction_scaling"]["runs"]] == [16, 32]
    if group == "report":
        assert report["report_scaling"]["search"]["same_result"] is True
        assert [r["videos"] for r in report["report_scaling"]["runs"]] == [120, 240]
