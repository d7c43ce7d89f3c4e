"""The precision names load without torch (command-line parsers import them) and agree with the
precision module."""

import subprocess
import sys

from elmo_model import precision_modes
from elmo_model.model import precision


def test_names_load_without_torch():
    code = "import sys, elmo_model.precision_modes as m; print(m.PRECISION_CHOICES); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[1] == "False"


def test_choices_are_the_precisions_and_auto():
    assert precision_modes.PRECISION_CHOICES == (*precision_modes.PRECISIONS, "auto")
    assert set(precision.PRECISION_BOUNDS) == set(precision_modes.PRECISIONS)
    assert precision_modes.TRAINING_PRECISIONS == ("fp32", "bf16", "auto")
