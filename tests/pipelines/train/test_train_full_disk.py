"""``elmo train`` on a full disk: ``--output`` (and the checkpoints under it) on a
small tmpfs.

The run stops with one line naming the path and "no space left on device"; the checkpoint that did
not fit is not there at all (it was written under a staging name, then renamed) and the model's
files are staged, then moved (none of them is visible when one does not fit); once there is space,
the same command goes on from the newest checkpoint. Mounting needs root: skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from train_runs import Elmo, write_run

from pipelines.io.storage import resolve
from pipelines.train.resume import newest_complete_checkpoint

pytestmark = [pytest.mark.ray, pytest.mark.slow]
MODEL_FILES = {"metrics.csv", "metrics.json", "training_curve.png", "vocab.txt", "weights.hdf5", "options.json"}


def remount(directory: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(directory)], check=True)


def used(directory: Path) -> int:
    stat = os.statvfs(directory)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def test_a_full_disk_stops_with_one_line_and_leaves_only_whole_checkpoints(tmp_path, tmpfs):
    mnt = tmpfs("4m")  # checkpoints 10 and 20 fit (1.4 MB each), the final one (2 MB) does not
    config = write_run(tmp_path, output=mnt, storage="", steps=30)  # checkpoints under OUTPUT/checkpoints
    run = mnt / "checkpoints" / "r"

    full = Elmo(config)
    assert full.wait() == 2, full.output[-5000:]
    assert full.said() == [f"elmo train: error: file://{run}/checkpoint_000000030: cannot write the checkpoint: "
                           "no space left on device"], full.output[-5000:]
    assert "Traceback" not in full.output, full.output[-5000:]
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(("checkpoint_0", "_staging"))) == \
        ["checkpoint_000000010", "checkpoint_000000020"]  # the one that did not fit: not there at all
    assert newest_complete_checkpoint(resolve(str(run)).arrow_fs, str(run))[1]["step"] == 20
    assert not MODEL_FILES & {p.name for p in mnt.iterdir()}

    # Room for the final checkpoint, not for the model's files as well (weights.hdf5 alone is 0.5 MB).
    remount(mnt, used(mnt) + 2_250_000)
    publish = Elmo(config)
    assert publish.wait() == 2, publish.output[-5000:]
    said = publish.said()
    assert len(said) == 1 and re.fullmatch(rf"elmo train: error: file://{re.escape(str(mnt))}/(\S+): cannot write: "
                                           r"no space left on device", said[0]), publish.output[-5000:]
    assert "resumed at steps: " not in publish.output and "Traceback" not in publish.output, publish.output[-5000:]
    visible = {p.name for p in mnt.iterdir()}
    assert not MODEL_FILES & visible and not [n for n in visible if n.endswith(".staging")], visible
    assert (run / "checkpoint_000000030" / "meta.json").is_file()

    remount(mnt, 64 << 20)
    again = Elmo(config)  # the same command, with space
    assert again.wait() == 0, again.output[-5000:]
    assert MODEL_FILES <= {p.name for p in mnt.iterdir()}
    rows = json.loads((mnt / "metrics.json").read_text())["rows"]
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert json.loads((mnt / "metrics.json").read_text())["resumed_at_steps"][0] == 20
