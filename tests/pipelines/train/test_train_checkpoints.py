"""A cut-short, corrupted or deleted checkpoint of a real ``elmo train`` run.

The run goes on from the newest checkpoint that is whole, saying in one line which ones it passed
over and why; a checkpoint folder deleted by hand, which Ray Train's ``checkpoint_manager_snapshot.json``
still names, is dropped from that record (one line) instead of Ray's 59-line
``CheckpointManagerInitializationError`` advising to delete the whole run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from train_runs import Elmo, write_run

from elmo_model.errors import ElmoError
from pipelines.io.storage import resolve
from pipelines.train.job import latest_checkpoint_meta
from pipelines.train.ray_train import RUN_RECORD, repair_run_record
from pipelines.train.resume import checkpoint_digests, checkpoint_files, newest_complete_checkpoint

STEPS = 30


def _checkpoint(run: Path, step: int) -> Path:
    """A checkpoint folder as the worker writes it (meta.json last: sizes and digests of the others)."""
    directory = run / f"checkpoint_{step:09d}"
    directory.mkdir(parents=True)
    (directory / "checkpoint.pt").write_bytes(bytes(range(100)))
    meta = {"step": step, "final": False, "files": checkpoint_files(directory),
            "sha256": checkpoint_digests(directory)}
    (directory / "meta.json").write_text(json.dumps(meta))
    return directory


def test_a_checkpoint_whose_content_changed_is_passed_over_with_the_reason(tmp_path):
    run = tmp_path / "ckpt" / "r"
    _checkpoint(run, 10)
    cut = _checkpoint(run, 20)
    (cut / "checkpoint.pt").write_bytes(bytes(range(60)))
    flipped = _checkpoint(run, 30)
    (flipped / "checkpoint.pt").write_bytes(bytes(reversed(range(100))))  # same size, other bytes
    store = resolve(str(tmp_path / "ckpt"))
    skipped: list[tuple[str, str]] = []
    path, meta = newest_complete_checkpoint(store.arrow_fs, str(run), skipped, verify=True)
    assert meta["step"] == 10
    assert [(Path(p).name, why) for p, why in skipped] == [
        ("checkpoint_000000030", "checkpoint.pt does not have the SHA-256 its meta.json records (corrupted)"),
        ("checkpoint_000000020", "checkpoint.pt is 60 bytes, meta.json lists 100: cut short")]
    assert newest_complete_checkpoint(store.arrow_fs, str(run))[1]["step"] == 30  # sizes only: not read
    assert latest_checkpoint_meta(store, "r")["step"] == 10  # the driver reads them


def _record(*names: str) -> dict:
    result = lambda name: {"version": 0, "checkpoint_dir_name": name, "metrics": {"step": int(name[-9:])}}  # noqa: E731
    return {"ray_version": "2.60.0", "checkpoint_results": [result(n) for n in names],
            "checkpoint_report_indices": [2 * i + 1 for i in range(len(names))],
            "latest_checkpoint_result": result(names[-1]), "pending_training_results": [],
            "pending_validation_specs": [], "current_report_index": 2 * len(names),
            "validated_checkpoint_dir_names": list(names), "timed_out_validation_checkpoint_dir_names": [],
            "failed_validation_checkpoint_dir_names": []}


def test_ray_trains_record_keeps_only_the_checkpoints_that_are_there(tmp_path):
    run = tmp_path / "r"
    for step in (10, 20, 40):
        _checkpoint(run, step)
    names = [f"checkpoint_{s:09d}" for s in (10, 20, 30, 40)]
    (run / RUN_RECORD).write_text(json.dumps(_record(*names)))
    fs = resolve(str(run)).arrow_fs
    assert repair_run_record(fs, str(run), {"checkpoint_000000040"}) == ["checkpoint_000000030"]  # gone
    record = json.loads((run / RUN_RECORD).read_text())
    assert [r["checkpoint_dir_name"] for r in record["checkpoint_results"]] == names[:2]
    assert record["checkpoint_report_indices"] == [1, 3]
    assert record["latest_checkpoint_result"]["checkpoint_dir_name"] == names[1]
    assert record["validated_checkpoint_dir_names"] == names[:2]
    assert repair_run_record(fs, str(run)) == []  # nothing more to do
    (run / RUN_RECORD).write_text("{not json")
    assert repair_run_record(fs, str(run)) == []
    assert not (run / RUN_RECORD).exists()  # an unreadable record goes; the workers restore from storage
    assert repair_run_record(fs, str(tmp_path / "new")) == []


def test_a_checkpoint_that_cannot_be_loaded_names_the_folder_to_remove(tmp_path):
    from pipelines.train.worker import restore

    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    spec = {"run_name": "r", "checkpoints": {"url": "s3://b/ckpt/r"}}
    with pytest.raises(ElmoError) as caught:
        restore(None, spec, (tmp_path, {"step": 20}, "checkpoint_000000020"))
    assert str(caught.value) == ("s3://b/ckpt/r/checkpoint_000000020/checkpoint.pt: not a readable checkpoint; "
                                 "remove s3://b/ckpt/r/checkpoint_000000020 and rerun to continue from the "
                                 "checkpoint before it")


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_goes_on_from_its_newest_whole_checkpoint(tmp_path):
    config = write_run(tmp_path, output=tmp_path / "model", storage=tmp_path / "ckpt", steps=STEPS)
    run = tmp_path / "ckpt" / "r"
    first = Elmo(config)
    assert first.wait() == 0, first.output[-5000:]
    assert sorted(p.name for p in run.glob("checkpoint_0*")) == [f"checkpoint_{s:09d}" for s in (10, 20, 30)]

    # The newest two spoiled: checkpoint.pt of 30 flipped (same size), of 20 cut short.
    newest = run / "checkpoint_000000030" / "checkpoint.pt"
    newest.write_bytes(bytes(b ^ 0xFF for b in newest.read_bytes()))
    cut = run / "checkpoint_000000020" / "checkpoint.pt"
    size = cut.stat().st_size
    cut.write_bytes(cut.read_bytes()[: size // 2])
    second = Elmo(config)
    assert second.wait() == 0, second.output[-5000:]
    mentions = [line for line in second.lines if "checkpoint_000000030 (" in line or "checkpoint_000000020 (" in line]
    assert len(mentions) == 1, second.output[-5000:]
    assert mentions[0].endswith(
        f"run 'r' has a checkpoint at step 10 in file://{tmp_path}/ckpt: continuing it (skipped checkpoint_000000030 "
        "(checkpoint.pt does not have the SHA-256 its meta.json records (corrupted)); checkpoint_000000020 "
        f"(checkpoint.pt is {size // 2} bytes, meta.json lists {size}: cut short))"), mentions
    assert "resumed at steps: 10" in second.output
    assert sorted(second.steps()) == list(range(11, STEPS + 1))
    assert "Traceback" not in second.output, second.output[-5000:]

    # A checkpoint folder deleted by hand, still named in Ray Train's record of the run.
    assert "checkpoint_000000030" in (run / RUN_RECORD).read_text()
    shutil.rmtree(run / "checkpoint_000000030")
    third = Elmo(config)
    assert third.wait() == 0, third.output[-5000:]
    assert "CheckpointManagerInitializationError" not in third.output and "Traceback" not in third.output, \
        third.output[-5000:]
    repaired = [line for line in third.lines if RUN_RECORD in line]
    assert len(repaired) == 1 and "named checkpoint_000000030, which is no longer there: removed it" in repaired[0], \
        third.output[-5000:]
    assert "has a checkpoint at step 20 " in third.output
    assert "resumed at steps: 10, 20" in third.output  # the second run resumed at 10
    assert sorted(third.steps()) == list(range(21, STEPS + 1))
    rows = json.loads((tmp_path / "model" / "metrics.json").read_text())["rows"]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
