"""Configuration modules are leaves: importing them, and asking a command for `--helpshort`, loads neither
TensorFlow, Beam nor PyAV (`settings`: the implementation imports its constants from the configs, and each
command imports its heavy library inside `main`)."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "tensorflow_datasets", "keras", "apache_beam", "av")
CONFIG_MODULES = ("settings", "settings.arguments", "pipeline.config", "pipeline.beam_options", "training.config",
                  "training.input_config", "dataformat.schema")
# Each command and flags its --helpshort must list (its own, and those of the configs it is made from).
COMMANDS = {
    "pipeline.extract": ("--output_dir", "--fps", "--decode_mode", "--jpeg_quality"),
    "training.main": ("--workdir", "--data_dir", "--batch_size", "--lstm_units", "--epochs"),
    "training.experiment": ("--workdir", "--vary", "--seeds"),
    "training.inspect_order": ("--split", "--data_dir", "--shuffle_buffer"),
    "training.difficulty": ("--runs", "--top"),
    "tools.audit": ("--data_dir",),
    "tools.report": ("--data_dir", "--runs", "--thumbnails"),
    "tools.samples": ("--output_dir", "--num_classes"),
}


def _run(args, env=None):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env)


def test_importing_the_configuration_modules_loads_nothing_heavy():
    code = (f"import sys\nfor m in {CONFIG_MODULES!r}: __import__(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    result = _run(["-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def without_heavy_libraries(tmp_path_factory):
    """An environment in which `import tensorflow` (or Beam, PyAV, TFDS, Keras) raises ImportError."""
    blocked = tmp_path_factory.mktemp("blocked")
    for name in HEAVY:
        (blocked / name).mkdir()
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} must not be imported by --help')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(ROOT)])}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_helpshort_answers_without_tensorflow_beam_or_pyav(command, without_heavy_libraries):
    result = _run(["-m", command, "--helpshort"], env=without_heavy_libraries)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 1, result.stderr[-3000:]  # absl's help exits 1, as does a failed import: see above
    assert "Try --helpfull to get a list of all flags." in result.stdout
    for flag in COMMANDS[command]:
        assert f"  {flag}:" in result.stdout, f"{command} --helpshort does not list {flag}"


@pytest.mark.parametrize("command, args, message", [
    ("pipeline.extract", ["--input_dir=/nowhere", "--output_dir=/nowhere/out", "--jpeg_quality=0"],
     "extract: error: --jpeg_quality=0: expected 1..100"),
    ("training.main", ["--data_dir=/nowhere", "--workdir=/nowhere/run", "--epochs=0"],
     "train: error: --epochs=0: expected at least 1"),
])
def test_a_setting_out_of_range_is_refused_before_the_heavy_imports(command, args, message, without_heavy_libraries):
    result = _run(["-m", command, *args], env=without_heavy_libraries)
    assert result.returncode == 1 and message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_beam_flags_are_still_known_when_an_argument_is_not_the_commands_own():
    """Beam's flags are looked up only when an argument is not one of extract's own: then they still are, so a
    Beam flag passes and a misspelled one is named with Beam's nearest flag."""
    result = _run(["-m", "pipeline.extract", "--input_dir=/nowhere", "--output_dir=/nowhere/out",
                   "--direct_num_workers=2", "--direct_running_mod=multi_processing"])
    assert result.returncode != 0
    assert "unknown flag --direct_running_mod; did you mean --direct_running_mode?" in result.stderr
    assert "--direct_num_workers" not in result.stderr.replace("--direct_running_mod", "")
