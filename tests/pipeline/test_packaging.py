"""--setup_file=./setup.py ships the project to remote Beam workers as an sdist: it must build and be complete."""

import os
import subprocess
import sys
import tarfile

from tests.entry_points import ROOT


def test_sdist_builds_and_contains_the_packages_and_the_schema(tmp_path):
    # This is what Beam runs for --setup_file on the launcher.
    result = subprocess.run([sys.executable, "setup.py", "sdist", "--dist-dir", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (archive,) = [p for p in os.listdir(tmp_path) if p.endswith(".tar.gz")]
    with tarfile.open(tmp_path / archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for module in ("dataformat/schema.py", "pipeline/transforms.py", "pipeline/decode.py", "pipeline/features.py",
                   "dataformat/shards.py", "training/input_pipeline.py", "setup.py"):
        assert module in names, module
    assert not any(n.startswith((".venv/", "demo_out/")) for n in names)  # nothing local is shipped
