"""Refusing a misspelled flag before any work, when a command hands the flags it does not know to someone else.

absl refuses an unknown flag by itself ("Unknown command line flag 'epoch'. Did you mean: epochs?"), but only
when it parses every argument. `pipeline.extract` and `training.experiment` parse theirs with `known_only` and
hand the rest on (to Beam's PipelineOptions, to every `training.main` run), and Beam only logs that it discards
what it cannot parse: `--group_regx=...` would run a job with every video its own group. These commands check
every argument against the union of the flags they and their receiver know, before absl parses, so the typo is
named even when a required flag is missing too (the typo is usually why it is missing).

    takes_value = {**absl_flags(FLAGS), **receiver_flags}   # {name: whether `--name VALUE` consumes VALUE}
    refused = refused_arguments(argv[1:], takes_value)      # one message per unknown flag or stray argument
"""

from __future__ import annotations

import difflib
from typing import Iterable, Mapping, Sequence

from absl import flags


def absl_flags(flag_values: flags.FlagValues) -> dict[str, bool]:
    """{name: takes a value} of every flag in `flag_values` (absl's own --flagfile, --helpshort, -v, ... too);
    a boolean flag is also known as no<name>."""
    known = {}
    for name in flag_values:
        flag = flag_values[name]
        known[name] = not flag.boolean
        if flag.boolean:
            known[f"no{name}"] = False
    return known


def refused_arguments(args: Sequence[str], takes_value: Mapping[str, bool]) -> list[str]:
    """One error message per argument of `args` that is neither a flag `takes_value` knows (`--name`,
    `--name=value`, `-name`) nor the value of one (`--name VALUE`, when the flag takes a value), in order.
    Arguments after `--` are not looked at."""
    refused, value_next, maybe_value = [], False, False
    for arg in args:
        if value_next or (maybe_value and not arg.startswith("-")):
            value_next = maybe_value = False
            continue
        maybe_value = False
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            refused.append(f"unexpected argument {arg!r}: this command takes flags only (--name=value)")
            continue
        name, has_value, _ = arg.lstrip("-").partition("=")
        if name in takes_value:
            value_next = takes_value[name] and not has_value
        else:
            refused.append(unknown_flag_message(name, takes_value))
            maybe_value = not has_value  # `--unknwn VALUE`: one error, not a second for VALUE
    return refused


def unknown_flag_message(name: str, known: Iterable[str]) -> str:
    """'unknown flag --group_regx; did you mean --group_regex?': the nearest known names, when any is close."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.7)
    hint = f"; did you mean {' or '.join(f'--{c}' for c in close)}?" if close else ""
    return f"unknown flag --{name}{hint}"
