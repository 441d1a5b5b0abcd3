"""One declaration per setting: a config dataclass field carries its default, help text and choices; the
command-line flags, their validation and the flag tables of docs/flags.md are derived from it.

    @dataclasses.dataclass(frozen=True)
    class Config:
        fps: float = setting(1.0, "Frames sampled per second of video.")
        split_by: str = setting("group", "group: ...; frame: ...", choices=("group", "frame"))

    define_flags(Config)                    # --fps, --split_by (an enum), in `absl.flags.FLAGS`
    config = config_from_flags(Config)      # Config(fps=..., split_by=...) from the parsed flags

A config dataclass checks itself when it is made, so an instance is always valid, however it was built (from
flags, by a library caller, by `dataclasses.replace`):

        def __post_init__(self):
            check_settings(self)            # every declared choice and range: SettingError naming the flag
            require(...)                    # what no single setting declares (e.g. one value below another)

A setting's range is declared with it (`bounds=at_least(1)`, `between(0, 1, high_open=True)`): the flag's help,
the README row ("Allowed: ...") and the check all come from that one declaration. Configuration modules import
nothing heavy (no TensorFlow, Beam or PyAV), so a command's `--help` answers at once; the implementation imports
its constants from them.

A field without `help` is not a flag (library-only settings such as `InputConfig.with_metadata`). A field
whose type is itself a config dataclass (`TrainConfig.input`) contributes its own flags, unprefixed: every flag
name must be unique over the tree, and `define_flags` refuses a repeated one.
"""

import dataclasses
import math
import types
import typing
from typing import Any, Iterator, Optional, Sequence

from absl import flags

from settings.arguments import absl_flags, refused_arguments, unknown_flag_message  # noqa: F401 - for commands

_HELP, _CHOICES, _BOUNDS, _SHOWN = "help", "choices", "bounds", "shown_default"

# absl files a flag under the module that defines it, and --helpshort shows the main module's flags: the flags
# defined here belong to the command that calls `define_flags`.
flags.disclaim_key_flags()


class SettingError(ValueError):
    """A setting is not one of its choices or out of its range; the message names the flag and what it takes."""


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The numbers a setting takes: from `low` to `high` (None: unbounded), each end included unless it is open;
    never NaN or infinite. `note` says what a special value means ("0: one pass")."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        """'at least 1', '1..4096', 'a number in (0, 1000.0]', 'a positive number', with the note in brackets."""
        if self.high is None:
            if self.low_open:
                text = "a positive number" if self.low == 0 else f"more than {self.low}"
            else:
                text = f"at least {self.low}"
        elif self.low_open or self.high_open or isinstance(self.low, float) or isinstance(self.high, float):
            text = f"a number in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        else:
            text = f"{self.low}..{self.high}"
        return f"{text} ({self.note})" if self.note else text


def at_least(low: float, note: str = "") -> Bounds:
    """`low` or more (a count: at_least(1))."""
    return Bounds(low=low, note=note)


def positive(note: str = "") -> Bounds:
    """Any finite number above 0 (a rate, a duration)."""
    return Bounds(low=0, low_open=True, note=note)


def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False, note: str = "") -> Bounds:
    """From `low` to `high`, each end included unless it is open (a fraction in [0, 1): high_open=True)."""
    return Bounds(low=low, high=high, low_open=low_open, high_open=high_open, note=note)


def setting(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002 - absl's word for it
            choices: Sequence[str] = (), bounds: Optional[Bounds] = None,
            shown_default: Optional[str] = None) -> Any:
    """A dataclass field that is also a flag.

    Args:
      default: the default value (required fields: leave it out).
      help: what the setting does, one or a few sentences; shown by `--help` and in docs/flags.md.
      choices: the allowed values of a str field (an enum flag), or of each item of a tuple[str, ...] field.
      bounds: the allowed numbers of an int or float field (None, for an Optional field, is always allowed);
        the help and the docs/flags.md row end with them ("Allowed: 1..100.").
      shown_default: how docs/flags.md shows the default when the value alone would not say it (e.g. None).
    """
    metadata = {_HELP: help, _CHOICES: tuple(choices), _BOUNDS: bounds, _SHOWN: shown_default}
    if isinstance(default, list):
        raise TypeError("a list default is shared between instances: use a tuple")
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class _Flag:
    name: str
    kind: type  # str, int, float, bool or tuple (a comma-separated list of str)
    default: Any
    help: str
    choices: tuple[str, ...]
    bounds: Optional[Bounds]
    shown_default: Optional[str]
    required: bool


def _value_type(annotation) -> type:
    """str, int, float, bool or tuple: what a field's annotation holds (Optional[X] holds X)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported setting type {annotation}")
        annotation = args[0]
    if typing.get_origin(annotation) is tuple:
        return tuple
    if annotation in (str, int, float, bool):
        return annotation
    raise TypeError(f"unsupported setting type {annotation}")


def _walk(config_cls: type) -> Iterator[_Flag]:
    """The flag of every field of `config_cls` and of its nested configs, depth first (fields without help are
    not flags)."""
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        if dataclasses.is_dataclass(hints[field.name]):
            yield from _walk(hints[field.name])
        elif field.metadata.get(_HELP):
            required = field.default is dataclasses.MISSING  # `setting` never makes a default_factory
            yield _Flag(field.name, _value_type(hints[field.name]), None if required else field.default,
                        field.metadata[_HELP], field.metadata[_CHOICES], field.metadata[_BOUNDS],
                        field.metadata[_SHOWN], required)


def flags_of(config_cls: type) -> list[_Flag]:
    """The flags `config_cls` declares (nested configs included), in declaration order."""
    found = list(_walk(config_cls))
    seen = set()
    for flag in found:
        if flag.name in seen:
            raise ValueError(f"{config_cls.__name__}: two settings are called {flag.name!r}; flag names must be "
                             "unique over the nested configs")
        seen.add(flag.name)
    return found


def _listed_choices(flag: _Flag, quote: str = "") -> str:
    """' One of: a, b.' (or 'Any of' for a list flag), the sentence the help text ends with; '' without choices."""
    if not flag.choices:
        return ""
    listed = ", ".join(f"{quote}{c}{quote}" for c in flag.choices)
    return f" Any of: {listed}." if flag.kind is tuple else f" One of: {listed}."


def _allowed(flag: _Flag) -> str:
    """' Allowed: 1..100.', the sentence a ranged flag's help ends with; '' without bounds."""
    return f" Allowed: {flag.bounds}." if flag.bounds is not None else ""


def define_flags(config_cls: type, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one absl flag per setting of `config_cls` (see the module docstring); a field without a default
    is a required flag."""
    for flag in flags_of(config_cls):
        if flag.kind is tuple:
            # An enum flag lists its choices itself; a list flag does not.
            flags.DEFINE_list(flag.name, list(flag.default or ()), flag.help + _listed_choices(flag),
                              flag_values=flag_values)
        elif flag.choices:
            flags.DEFINE_enum(flag.name, flag.default, list(flag.choices), flag.help, flag_values=flag_values)
        else:
            # The range is checked when the config is made (`check_settings`), not by absl: one check, whose
            # message names the flag and the range, for flags and library callers alike.
            define = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                      bool: flags.DEFINE_bool}[flag.kind]
            define(flag.name, flag.default, flag.help + _allowed(flag), flag_values=flag_values)
        if flag.required:
            flags.mark_flag_as_required(flag.name, flag_values=flag_values)


def config_from_flags(config_cls: type, flag_values: flags.FlagValues = flags.FLAGS, **overrides) -> Any:
    """An instance of `config_cls` whose settings are the parsed flags' values; fields that are not flags keep
    their defaults. `overrides` replace top-level fields (e.g. a normalised path)."""
    return _build(config_cls, flag_values, overrides)


def _build(config_cls: type, flag_values: flags.FlagValues, overrides: dict) -> Any:
    hints = typing.get_type_hints(config_cls)
    values = {}
    for field in dataclasses.fields(config_cls):
        if field.name in overrides:
            values[field.name] = overrides[field.name]
        elif dataclasses.is_dataclass(hints[field.name]):
            values[field.name] = _build(hints[field.name], flag_values, {})
        elif field.metadata.get(_HELP):
            value = flag_values[field.name].value
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return config_cls(**values)


def flag_values(config: Any) -> dict:
    """{flag name: value} of every setting of `config` that is a flag, nested configs included (tuples as
    lists, as JSON holds them): what a command line fixed, e.g. to record or compare two runs' settings."""
    values = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            values.update(flag_values(value))
        elif field.metadata.get(_HELP):
            values[field.name] = list(value) if isinstance(value, tuple) else value
    return values


def config_from_dict(config_cls: type, values: dict) -> Any:
    """An instance of `config_cls` from `dataclasses.asdict` output (e.g. a metrics.json's "config"): nested
    configs rebuilt, lists made tuples again; keys the class does not have are ignored (a record written by
    another version), missing ones take their defaults."""
    hints = typing.get_type_hints(config_cls)
    kwargs = {}
    for field in dataclasses.fields(config_cls):
        if field.name not in values:
            continue
        value = values[field.name]
        if dataclasses.is_dataclass(hints[field.name]) and isinstance(value, dict):
            value = config_from_dict(hints[field.name], value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    return config_cls(**kwargs)


def check_settings(config: Any) -> None:
    """Raises SettingError naming the flag and what it takes when a setting of `config` is not one of its declared
    choices or outside its declared bounds: the one check of every declaration, which each config dataclass makes
    in `__post_init__` (a nested config checked itself when it was made). None (an Optional setting left out)
    always passes."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None or dataclasses.is_dataclass(value):
            continue
        allowed = field.metadata.get(_CHOICES)
        for item in (value if isinstance(value, tuple) else (value,)) if allowed else ():
            if item not in allowed:
                raise SettingError(f"--{field.name}={item!r}: expected one of {', '.join(allowed)}")
        bounds = field.metadata.get(_BOUNDS)
        if bounds is not None and value not in bounds:
            raise SettingError(f"--{field.name}={value}: expected {bounds}")


def require(ok: bool, flag: str, value: Any, expected: str) -> None:
    """Raises SettingError('--flag=value: expected ...') unless `ok`: a check no single declaration makes (one
    setting against another, a value parsed from text), in a config's `__post_init__`."""
    if not ok:
        raise SettingError(f"--{flag}={value}: expected {expected}")


def markdown_table(config_cls: type) -> str:
    """The Markdown table of `config_cls`'s flags (docs/flags.md): flag, default, help."""
    rows = ["| flag | default | what it does |", "| --- | --- | --- |"]
    for flag in flags_of(config_cls):
        help_text = flag.help.replace("|", "\\|") + _listed_choices(flag, quote="`") + _allowed(flag)
        rows.append(f"| `--{flag.name}` | {_shown(flag)} | {help_text} |")
    return "\n".join(rows) + "\n"


def _shown(flag: _Flag) -> str:
    if flag.shown_default is not None:
        return flag.shown_default
    if flag.required:
        return "required"
    if flag.kind is bool:
        return "on" if flag.default else "off"
    if flag.default in (None, ()):
        return "none"
    if flag.default == "":
        return "empty"
    if flag.kind is tuple:
        return f"`{','.join(flag.default)}`"
    return f"`{flag.default}`"
