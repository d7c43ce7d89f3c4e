"""Which checkpoint a run continues from (pipelines.train.resume), without Ray: the newest complete one.

The same function names the step in the driver's messages and picks what the workers restore;
``test_train_interrupt.py`` runs it for real after a Ctrl-C.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.io.storage import resolve
from pipelines.train.job import interrupted, latest_checkpoint_meta
from pipelines.train.resume import checkpoint_files, newest_complete_checkpoint


def _checkpoint(run: Path, step: int, *, cut: int = 0, meta: bool = True, listed: bool = True) -> Path:
    """A checkpoint directory as the worker writes it; ``cut`` bytes missing from checkpoint.pt (an
    upload stopped half way), without ``meta.json``, or with an old ``meta.json`` that lists no files."""
    directory = run / f"checkpoint_{step:09d}"
    (directory / "export").mkdir(parents=True)
    (directory / "checkpoint.pt").write_bytes(b"x" * 100)
    (directory / "export" / "options.json").write_text("{}")
    record = {"step": step, "final": False}
    if listed:
        record["files"] = checkpoint_files(directory)
    if meta:
        (directory / "meta.json").write_text(json.dumps(record))
    if cut:
        (directory / "checkpoint.pt").write_bytes(b"x" * (100 - cut))
    return directory


def test_the_newest_complete_checkpoint_wins(tmp_path):
    run = tmp_path / "ckpt" / "r"
    store = resolve(str(tmp_path / "ckpt"))
    assert newest_complete_checkpoint(store.arrow_fs, str(run)) is None  # no run yet
    assert checkpoint_files(_checkpoint(run, 10)) == {"checkpoint.pt": 100, "export/options.json": 2}
    _checkpoint(run, 20, cut=40)  # cut short
    _checkpoint(run, 30, meta=False)  # meta.json not there (yet)
    (run / "checkpoint_000000040").mkdir()  # empty
    (run / "checkpoint_manager_snapshot.json").write_text("{}")
    path, meta = newest_complete_checkpoint(store.arrow_fs, str(run))
    assert path.endswith("/checkpoint_000000010") and meta["step"] == 10
    assert latest_checkpoint_meta(store, "r")["step"] == 10  # what the driver says, and continues
    assert str(interrupted(store, "r")) == ("rerun the same command to continue from step 10 "
                                            "(the newest complete checkpoint)")
    _checkpoint(run, 50, listed=False)  # written before meta.json listed its files: trusted as before
    assert latest_checkpoint_meta(store, "r")["step"] == 50
    assert str(interrupted(store, "other")) == ("no checkpoint was complete; rerun the same command to start "
                                                "the run again")
    assert isinstance(interrupted(store, "r"), KeyboardInterrupt)  # elmo exits 130
