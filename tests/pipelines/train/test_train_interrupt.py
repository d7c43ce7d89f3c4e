"""Ctrl-C of a real `elmo train` process, then the same command again.

The run is interrupted after its first checkpoint (step 10 of 30): it must stop with one line that
names the step a rerun continues from, exit 130, and the rerun must continue from exactly that step,
whatever Ray Train's own ``checkpoint_manager_snapshot.json`` says — the test deletes it, as an abort
can leave it unwritten (seen in the issue) — keeping the steps before it and not training them again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from train_runs import Elmo, write_run

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS = 30


@pytest.fixture
def run_config(tmp_path) -> Path:
    return write_run(tmp_path, output=tmp_path / "model", storage=tmp_path / "ckpt", name="ctrl-c", steps=STEPS,
                     cpus=0.5, workers=2)


def test_ctrl_c_stops_with_one_line_and_the_same_command_continues_from_that_checkpoint(run_config, tmp_path):
    first = Elmo(run_config)
    first.wait_for(rf"step 15/{STEPS} ")  # checkpoint_000000010 is complete: it was uploaded before step 11 began
    first.ctrl_c()
    code = first.wait()
    said = first.said()
    assert code == 130, first.output[-5000:]
    assert len(said) == 1, first.output[-5000:]
    match = re.fullmatch(r"elmo train: interrupted; rerun the same command to continue from step (\d+) "
                         r"\(the newest complete checkpoint\)", said[0])
    assert match, said
    resume_at = int(match.group(1))
    assert resume_at in (10, 20) and resume_at <= max(first.steps())  # 20 if the workers got there first
    assert "Traceback" not in first.output, first.output[-5000:]
    run_dir = tmp_path / "ckpt" / "ctrl-c"
    assert (run_dir / f"checkpoint_{resume_at:09d}" / "checkpoint.pt").is_file()
    (run_dir / "checkpoint_manager_snapshot.json").unlink(missing_ok=True)  # Ray's record of it: gone
    trained_before = first.steps()

    again = Elmo(run_config)  # the same command
    assert again.wait() == 0, again.output[-5000:]
    assert f"has a checkpoint at step {resume_at} " in again.output
    assert f"resumed at steps: {resume_at}" in again.output
    assert sorted(again.steps()) == list(range(resume_at + 1, STEPS + 1))  # nothing before it trained again
    assert f"steps: {STEPS}" in again.output
    rows = json.loads((tmp_path / "model" / "metrics.json").read_text())["rows"]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for row in rows[:resume_at]:  # the interrupted run's steps, kept from its checkpoint
        assert round(row["loss"], 4) == pytest.approx(trained_before[row["step"]], abs=1e-4)
    for row in rows[resume_at:]:
        assert round(row["loss"], 4) == pytest.approx(again.steps()[row["step"]], abs=1e-4)
