"""One declaration per setting: a config dataclass field carries its default, help text and choices; the
command-line flags, their validation and the flag tables of docs/flags.md are derived from it.

    @dataclasses.dataclass(frozen=True)
    class Config:
        fps: float = setting(1.0, "Frames sampled per second of video.")
        split_by: str = setting("group", "group: ...; frame: ...", choices=("group", "frame"))

    define_flags(Config)                    # --fps, --split_by (an enum), in `absl.flags.FLAGS`
    config = config_from_flags(Config)      # Config(fps=..., split_by=...) from the parsed flags
    check_choices(config)                   # the same choices, for library callers who never parse flags

A field without `help` is not a flag (library-only settings such as `InputConfig.with_metadata`). A field
whose type is itself a config dataclass (`TrainConfig.input`) contributes its own flags, unprefixed: every flag
name must be unique over the tree, and `define_flags` refuses a repeated one.
"""

import dataclasses
import types
import typing
from typing import Any, Iterator, Optional, Sequence

from absl import flags

from settings.arguments import absl_flags, refused_arguments, unknown_flag_message  # noqa: F401 - for commands

_HELP, _CHOICES, _SHOWN = "help", "choices", "shown_default"

# absl files a flag under the module that defines it, and --helpshort shows the main module's flags: the flags
# defined here belong to the command that calls `define_flags`.
flags.disclaim_key_flags()


class SettingError(ValueError):
    """A setting is not one of its choices or out of its range; the message names the flag and what it takes."""


def setting(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002 - absl's word for it
            choices: Sequence[str] = (), shown_default: Optional[str] = None) -> Any:
    """A dataclass field that is also a flag.

    Args:
      default: the default value (required fields: leave it out).
      help: what the setting does, one or a few sentences; shown by `--help` and in docs/flags.md.
      choices: the allowed values of a str field (an enum flag), or of each item of a tuple[str, ...] field.
      shown_default: how docs/flags.md shows the default when the value alone would not say it (e.g. None).
    """
    metadata = {_HELP: help, _CHOICES: tuple(choices), _SHOWN: shown_default}
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
                        field.metadata[_HELP], field.metadata[_CHOICES], field.metadata[_SHOWN], required)


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
            define = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                      bool: flags.DEFINE_bool}[flag.kind]
            define(flag.name, flag.default, flag.help, flag_values=flag_values)
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


def check_choices(config: Any) -> None:
    """Raises SettingError naming the flag when a setting of `config` (or of its nested configs) is not one of its
    declared choices; the same check absl makes when it parses an enum flag, for callers of the library."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            check_choices(value)
            continue
        allowed = field.metadata.get(_CHOICES)
        if not allowed or value is None:
            continue
        for item in value if isinstance(value, tuple) else (value,):
            if item not in allowed:
                raise SettingError(f"--{field.name}={item!r}: expected one of {', '.join(allowed)}")


def require(ok: bool, flag: str, value: Any, expected: str) -> None:
    """Raises ValueError('--flag=value: expected ...') unless `ok`: the range check every config's `validate`
    makes before any work, with the allowed values in the message."""
    if not ok:
        raise SettingError(f"--{flag}={value}: expected {expected}")


def markdown_table(config_cls: type) -> str:
    """The Markdown table of `config_cls`'s flags (docs/flags.md): flag, default, help."""
    rows = ["| flag | default | what it does |", "| --- | --- | --- |"]
    for flag in flags_of(config_cls):
        help_text = flag.help.replace("|", "\\|") + _listed_choices(flag, quote="`")
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
