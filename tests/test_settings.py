"""Settings declared once in config dataclasses: flags, parsing, validation and the README's tables derive from
them (`settings`, `scripts/readme_flags.py`)."""

import dataclasses
import importlib.util
import pathlib
from typing import Optional

import pytest
from absl import flags

import settings
from settings import setting
from tests import entry_points

ROOT = pathlib.Path(entry_points.ROOT)


@dataclasses.dataclass(frozen=True)
class Inner:
    units: int = setting(8, "Units.")
    mode: str = setting("a", "Mode.", choices=("a", "b"))
    library_only: str = "kept"


@dataclasses.dataclass(frozen=True)
class Outer:
    path: str = setting(help="Where.")
    rate: float = setting(0.5, "Rate.")
    limit: Optional[int] = setting(None, "Limit.", shown_default="unlimited")
    fast: bool = setting(True, "Fast.")
    parts: tuple[str, ...] = setting(("x",), "Parts.", choices=("x", "y", "z"))
    inner: Inner = Inner()


def _parse(config_cls, argv):
    values = flags.FlagValues()
    settings.define_flags(config_cls, values)
    values(["prog"] + argv)
    return values


def test_flags_parse_into_the_config_with_its_types_and_defaults():
    values = _parse(Outer, ["--path=/d", "--limit=3", "--nofast", "--parts=y,z", "--mode=b"])
    config = settings.config_from_flags(Outer, values)
    assert config == Outer(path="/d", limit=3, fast=False, parts=("y", "z"), inner=Inner(mode="b"))
    assert isinstance(config.parts, tuple) and config.inner.library_only == "kept"
    assert "library_only" not in values  # no help: not a flag
    defaults = settings.config_from_flags(Outer, _parse(Outer, ["--path=/d"]), path="/other")
    assert defaults == Outer(path="/other")


def test_a_required_setting_and_an_undeclared_choice_are_refused_when_parsing():
    with pytest.raises(flags.IllegalFlagValueError, match="--path"):
        _parse(Outer, [])
    with pytest.raises(flags.IllegalFlagValueError, match="mode"):
        _parse(Outer, ["--path=/d", "--mode=c"])


def test_check_choices_names_the_flag_in_nested_configs_and_list_items():
    settings.check_choices(Outer(path="/d"))
    with pytest.raises(ValueError, match=r"--mode='c': expected one of a, b"):
        settings.check_choices(Outer(path="/d", inner=Inner(mode="c")))
    with pytest.raises(ValueError, match=r"--parts='w'"):
        settings.check_choices(Outer(path="/d", parts=("x", "w")))


def test_two_settings_with_one_name_are_refused():
    @dataclasses.dataclass(frozen=True)
    class Clash:
        units: int = setting(1, "Again.")
        inner: Inner = Inner()

    with pytest.raises(ValueError, match="'units'"):
        settings.flags_of(Clash)


def test_the_table_shows_defaults_and_choices():
    table = settings.markdown_table(Outer)
    assert "| `--path` | required | Where. |" in table
    assert "| `--limit` | unlimited | Limit. |" in table
    assert "| `--fast` | on | Fast. |" in table
    assert "| `--mode` | `a` | Mode. One of: `a`, `b`. |" in table
    assert "Parts. Any of: `x`, `y`, `z`." in table


def test_the_commands_flags_give_the_configs_own_defaults_and_the_readme_is_current():
    from pipeline.config import ExtractConfig
    from training.train import TrainConfig

    extract = settings.config_from_flags(ExtractConfig, _parse(ExtractConfig, ["--output_dir=/o"]))
    assert extract == ExtractConfig(output_dir="/o")
    train = settings.config_from_flags(TrainConfig, _parse(TrainConfig, ["--data_dir=/d"]))
    assert train == TrainConfig(data_dir="/d")
    # Every field a user can set from the command line is a flag (the others are for library callers).
    names = {f.name for f in settings.flags_of(TrainConfig)}
    assert {"batch_size", "augment", "lstm_units", "eval_splits", "cyclic_mode"} <= names
    assert not {"with_metadata", "repair_dir", "inputs_dtype", "kind"} & names

    spec = importlib.util.spec_from_file_location("readme_flags", ROOT / "scripts" / "readme_flags.py")
    readme_flags = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme_flags)
    readme = (ROOT / "README.md").read_text()
    assert readme_flags.render(readme) == readme, "README's flag tables are out of date: run scripts/readme_flags.py"
    for name in names | {f.name for f in settings.flags_of(ExtractConfig)}:
        assert f"| `--{name}` |" in readme
