"""The command-line flags Beam's PipelineOptions know, so that `pipeline.extract` can hand Beam exactly those and
refuse any other before any work: Beam itself only logs "Discarding unparseable args" and runs without them.
Beam is imported when its flags are first asked for (seconds), not with this module: `pipeline.extract` asks
only when an argument is not one of its own flags, so its `--help` answers at once.
"""

from __future__ import annotations

import functools
from typing import Sequence

from settings import SettingError
from settings.arguments import refused_arguments


@functools.cache
def beam_flags() -> dict[str, bool]:
    """{name: takes a value} of every flag of every registered PipelineOptions class (standard, Google Cloud,
    worker, setup, direct runner, portable, ...: --runner, --project, --num_workers, --direct_num_workers,
    --setup_file ...), found the way `PipelineOptions.get_all_options` builds its parser."""
    from apache_beam.options import pipeline_options
    from apache_beam.options.pipeline_options import PipelineOptions

    # Beam's own parser class: its options classes call its add_value_provider_argument.
    parser = pipeline_options._BeamArgumentParser(allow_abbrev=False)  # noqa: SLF001 - no public equivalent
    classes = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)  # noqa: SLF001
    return {option.lstrip("-"): action.nargs is None
            for action in parser._actions for option in action.option_strings if option.startswith("--")}


def check_beam_args(beam_args: Sequence[str]) -> None:
    """Raises SettingError naming each argument of `beam_args` that no PipelineOptions class knows, with the
    nearest Beam flag."""
    refused = refused_arguments(beam_args, beam_flags())
    if refused:
        raise SettingError("; ".join(refused))
