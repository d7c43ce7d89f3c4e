"""`elmo --help` and `elmo COMMAND --help` load no heavy library: torch, Ray and pyarrow are imported
by the commands that run, not by the parser (a fast start, measured in a fresh interpreter)."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "ray", "pyarrow", "h5py", "numpy")
COMMANDS = ["dump", "vocab", "train", "embed", "neighbors", "eval", "submit", "s3", "demo"]


@pytest.mark.parametrize("argv", [[], *[[c] for c in COMMANDS]])
def test_help_imports_no_heavy_library(argv):
    code = ("import sys\nfrom pipelines.cli import build_parser\n"
            f"try:\n    build_parser().parse_args({argv + ['--help']!r})\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-500:]
