"""Settings declared once in config dataclasses: flags, parsing, validation and the flag tables of docs/flags.md
derive from them (`settings`, `scripts/flag_tables.py`)."""

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
    units: int = setting(8, "Units.", bounds=settings.at_least(1))
    mode: str = setting("a", "Mode.", choices=("a", "b"))
    library_only: str = "kept"

    def __post_init__(self):
        settings.check_settings(self)


@dataclasses.dataclass(frozen=True)
class Outer:
    path: str = setting(help="Where.")
    rate: float = setting(0.5, "Rate.", bounds=settings.between(0, 1, low_open=True))
    limit: Optional[int] = setting(None, "Limit.", bounds=settings.between(1, 10, note="none: no limit"),
                                   shown_default="unlimited")
    fast: bool = setting(True, "Fast.")
    parts: tuple[str, ...] = setting(("x",), "Parts.", choices=("x", "y", "z"))
    inner: Inner = Inner()

    def __post_init__(self):
        settings.check_settings(self)


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


def test_a_config_checks_its_choices_and_ranges_when_made_naming_the_flag_and_what_it_takes():
    Outer(path="/d", rate=1.0, limit=None)  # both ends as declared: (0, 1]; None is always allowed
    with pytest.raises(settings.SettingError, match=r"^--mode='c': expected one of a, b$"):
        Outer(path="/d", inner=Inner(mode="c"))
    with pytest.raises(settings.SettingError, match=r"^--parts='w'"):
        Outer(path="/d", parts=("x", "w"))
    with pytest.raises(settings.SettingError, match=r"^--units=0: expected at least 1$"):
        Inner(units=0)
    for rate in (0.0, 1.5, float("nan"), float("inf")):
        with pytest.raises(settings.SettingError, match=rf"^--rate={rate}: expected a number in \(0, 1\]$"):
            Outer(path="/d", rate=rate)
    with pytest.raises(settings.SettingError, match=r"^--limit=11: expected 1\.\.10 \(none: no limit\)$"):
        Outer(path="/d", limit=11)


def test_a_declared_range_is_in_the_flags_help():
    values = flags.FlagValues()
    settings.define_flags(Outer, values)
    assert values["limit"].help == "Limit. Allowed: 1..10 (none: no limit)."
    assert values["units"].help == "Units. Allowed: at least 1."
    assert str(settings.positive()) == "a positive number"
    assert str(settings.between(0, 1, high_open=True)) == "a number in [0, 1)"


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
    assert "| `--limit` | unlimited | Limit. Allowed: 1..10 (none: no limit). |" in table
    assert "| `--rate` | `0.5` | Rate. Allowed: a number in (0, 1]. |" in table
    assert "| `--fast` | on | Fast. |" in table
    assert "| `--mode` | `a` | Mode. One of: `a`, `b`. |" in table
    assert "Parts. Any of: `x`, `y`, `z`." in table


def test_the_commands_flags_give_the_configs_own_defaults_and_docs_flags_md_is_current():
    from pipeline.config import ExtractConfig
    from training.config import TrainConfig

    extract = settings.config_from_flags(ExtractConfig, _parse(ExtractConfig, ["--output_dir=/o", "--input_dir=/i"]))
    assert extract == ExtractConfig(output_dir="/o", input_dir="/i")
    train = settings.config_from_flags(TrainConfig, _parse(TrainConfig, ["--data_dir=/d"]))
    assert train == TrainConfig(data_dir="/d")
    # Every field a user can set from the command line is a flag (the others are for library callers).
    names = {f.name for f in settings.flags_of(TrainConfig)}
    assert {"batch_size", "augment", "lstm_units", "eval_splits", "cyclic_mode"} <= names
    assert not {"with_metadata", "repair_dir", "inputs_dtype", "kind"} & names

    spec = importlib.util.spec_from_file_location("flag_tables", ROOT / "scripts" / "flag_tables.py")
    flag_tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flag_tables)
    tables = flag_tables.FLAGS_DOC.read_text()
    assert flag_tables.render(tables) == tables, "docs/flags.md is out of date: run scripts/flag_tables.py"
    for name in names | {f.name for f in settings.flags_of(ExtractConfig)}:
        assert f"| `--{name}` |" in tables
    assert "docs/flags.md" in (ROOT / "README.md").read_text()
