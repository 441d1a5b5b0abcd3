"""Running the project's entry points from tests: as a user types them (a `python -m` process at the repository
root) or, where the process start-up is not what a test is about, the library they call, in this process."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository, where entry points run

# The cheapest real extraction: random InceptionV3 weights at its minimum input size, 2 frames a second.
TINY_EXTRACTION = dict(weights="none", image_size=75, fps=2)


def run_module(module, *args, timeout=600, **options):
    """`python -m module args...` at the repository root; its CompletedProcess, stdout and stderr as text.
    `options` go to `subprocess.run` (env, preexec_fn, ...)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **options)


def extract_here(input_dir, output_dir, **settings):
    """`run_extraction` in this process (the library `python -m pipeline.extract` calls) with TINY_EXTRACTION's
    settings, `settings` overriding them; its summary."""
    from pipeline.job import ExtractConfig, run_extraction

    config = dict(TINY_EXTRACTION, **settings)
    return run_extraction(ExtractConfig(output_dir=str(output_dir), input_dir=str(input_dir), **config))
