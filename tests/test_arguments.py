"""Unknown flags are refused before any work, naming the flag and the nearest known one (settings.arguments),
for every command, including those that hand the flags they do not know to Beam or to training runs."""

import os
import subprocess
import sys

import pytest
from absl import flags

import settings
from settings.arguments import refused_arguments
from tests.entry_points import ROOT


def _extract_flags():
    """What pipeline.extract knows: its own flags (absl's too) and every flag of Beam's PipelineOptions."""
    from pipeline.beam_options import beam_flags
    from pipeline.config import ExtractConfig

    values = flags.FlagValues()
    settings.define_flags(ExtractConfig, flag_values=values)
    flags.DEFINE_bool("helpshort", False, "absl's", flag_values=values)
    return {**settings.absl_flags(values), **beam_flags()}


def test_beam_flags_pass_and_misspelled_ones_are_named_with_the_nearest_flag():
    """A misspelled flag is refused naming the nearest one: handed to Beam, --group_regx=... was discarded with a
    logged warning, every video became its own group (a leaky split) and the job exited 0."""
    known = _extract_flags()
    beam = ["--runner=DirectRunner", "--direct_num_workers", "2", "--project=p", "--num_workers=3",
            "--setup_file=./setup.py", "--streaming", "--nooverwrite", "--split_salt", "-x", "--", "--anything"]
    assert refused_arguments(beam, known) == []
    refused = refused_arguments(["--group_regx=a", "--max-frames=1", "--num_worker=3", "--ouput_dir", "/o",
                                 "stray", "--overwrit", "--fps=2"], known)
    assert refused[0] == "unknown flag --group_regx; did you mean --group_regex?"
    assert refused[1] == "unknown flag --max-frames; did you mean --max_frames?"
    assert refused[2].startswith("unknown flag --num_worker; did you mean --num_workers")  # Beam's
    assert refused[3].startswith("unknown flag --ouput_dir; did you mean --output_dir")  # /o is its value
    assert refused[4].startswith("unexpected argument 'stray'")
    assert refused[5].startswith("unknown flag --overwrit; did you mean --overwrite")  # --fps=2 is not its value
    assert len(refused) == 6


def test_the_library_refuses_beam_args_beam_does_not_know(tmp_path):
    """run_extraction(config, beam_args) refuses a misspelled Beam flag instead of running without it."""
    from pipeline.job import ExtractConfig, ExtractionError, run_extraction

    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "a" / "x.mp4").write_bytes(b"not a video")
    config = ExtractConfig(output_dir=str(tmp_path / "out"), input_dir=str(tmp_path / "in"), weights="none")
    with pytest.raises(ExtractionError, match="unknown flag --direct_num_worker; did you mean --direct_num_workers"):
        run_extraction(config, beam_args=["--direct_num_worker=2"])
    assert not (tmp_path / "out").exists()


def test_an_experiment_refuses_a_seed_of_its_runs_and_seeds_out_of_range():
    """training.experiment refuses --seed (each run's own seed silently overrode it) and seeds out of range."""
    from training.experiment import check_runs, check_seeds

    with pytest.raises(ValueError, match="--seed: the experiment sets each run's seed itself"):
        check_runs(["--data_dir=d", "--seed=3"], [])
    with pytest.raises(ValueError, match="--seed: the experiment"):
        check_runs(["--data_dir=d"], [("seed", ["1", "2"])])
    check_seeds(0, 2)
    with pytest.raises(settings.SettingError, match="--first_seed=-1: expected 0..4294967294"):
        check_seeds(-1, 2)
    with pytest.raises(settings.SettingError, match="--first_seed=4294967295: expected"):
        check_seeds(2**32 - 1, 2)


# One misspelled flag per command, as a user would type it; the nearest flag is the command's own or (extract)
# Beam's. extract and experiment hand unknown flags on, the others parse all of theirs with absl.
COMMANDS = [
    ("pipeline.extract", ["--input_dir=/nowhere", "--output_dir=OUT", "--group_regx=x"], "--group_regex"),
    ("pipeline.extract", ["--input_dir=/nowhere", "--ouput_dir=OUT"], "--output_dir"),
    ("training.main", ["--data_dir=/nowhere", "--workdir=OUT", "--epoch=2"], "epochs"),
    ("training.experiment", ["--workdir=OUT", "--data_dir=/nowhere", "--first_sed=2"], "--first_seed"),
    ("training.inspect_order", ["--data_dir=/nowhere", "--epoch=2"], "epochs"),
    ("tools.audit", ["--data_dir=/nowhere", "--output_dirr=OUT"], "output_dir"),
    ("tools.report", ["--data_dir=/nowhere", "--output_dir=OUT", "--thumbnail=3"], "thumbnails"),
    ("tools.samples", ["--output_dir=OUT", "--clip=3"], "clips"),
]


@pytest.mark.slow
def test_every_command_refuses_an_unknown_flag_before_any_work(tmp_path):
    """Every command refuses a misspelled flag before any work, instead of running (or failing on something
    else) without it."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    started = []
    for i, (module, args, suggestion) in enumerate(COMMANDS):
        out = tmp_path / f"out{i}"
        command = [sys.executable, "-m", module, *(a.replace("OUT", str(out)) for a in args)]
        started.append((module, args, suggestion, out, subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for module, args, suggestion, out, process in started:
        _, stderr = process.communicate(timeout=300)
        typo = args[-1].split("=")[0].lstrip("-")
        assert process.returncode != 0, (module, args)
        assert typo in stderr and suggestion in stderr, (module, stderr[-500:])
        assert not out.exists(), module
