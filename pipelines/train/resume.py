"""What the training driver and its workers agree on: a checkpoint directory's files, which checkpoint
a run continues from, and when a checkpoint may continue a run. Imported by both :mod:`.job` and
:mod:`.worker`.

A run continues from its **newest complete checkpoint** in storage (:func:`newest_complete_checkpoint`),
found the same way by the driver (the "has a checkpoint at step N" line, the message after Ctrl-C) and
by every worker (what it restores), whatever Ray Train's own record of the run
(``checkpoint_manager_snapshot.json``) says: Ray writes that record after it has taken a checkpoint's
report, so a run stopped at the wrong moment (Ctrl-C, a killed driver) can leave a checkpoint it does
not know — or no record at all, and then Ray alone would start the run again from step 0.

Complete means: ``meta.json`` parses and every file it lists (``files``: relative path → size, written
last, by :func:`checkpoint_files`) is there with that size. A checkpoint being uploaded when the run
stopped, with files missing or cut short, is skipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from elmo_model.errors import ElmoError

# Inside a checkpoint directory: the torch checkpoint, its meta data, and (final one) the export.
CHECKPOINT_FILE, META_FILE, EXPORT_DIR = "checkpoint.pt", "meta.json", "export"
_CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)")


def check_resume_key(saved: dict, wanted: dict, run: str) -> None:
    """A checkpoint continues only a run with the same model, vocabulary and data settings.

    ``run`` names the run in the message (e.g. ``run 'x' in s3://bucket/ckpt``).
    """
    changed = [f"{k}: {saved.get(k)!r} → {wanted.get(k)!r}" for k in sorted(set(saved) | set(wanted))
               if saved.get(k) != wanted.get(k)]
    if changed:
        raise ElmoError(f"{run} already has a checkpoint made with other settings ({'; '.join(changed)}); "
                        "use a new name to start over, or restore those settings to continue it")


def checkpoint_files(directory: Path) -> dict[str, int]:
    """Every file under a checkpoint directory but ``meta.json``: relative POSIX path → size in bytes."""
    return {p.relative_to(directory).as_posix(): p.stat().st_size for p in sorted(directory.rglob("*"))
            if p.is_file() and p.relative_to(directory).as_posix() != META_FILE}


def newest_complete_checkpoint(fs: Any, path: str) -> tuple[str, dict[str, Any]] | None:
    """The path and ``meta.json`` of the run's newest (by step) complete checkpoint under ``path``
    (``<storage>/<name>``) on the pyarrow filesystem ``fs``; ``None`` when it has none."""
    import pyarrow.fs

    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(path.rstrip("/"), allow_not_found=True))
    except OSError:
        return None
    steps = sorted((int(m.group(1)), entry.path) for entry in entries
                   if entry.type == pyarrow.fs.FileType.Directory and (m := _CHECKPOINT_DIR.fullmatch(entry.base_name)))
    for _, directory in reversed(steps):
        meta = _complete_meta(fs, directory)
        if meta is not None:
            return directory, meta
    return None


def _complete_meta(fs: Any, path: str) -> dict[str, Any] | None:
    """The checkpoint's meta data if all of its files are there (``None``: still uploading, or cut short)."""
    import pyarrow.fs

    try:
        with fs.open_input_stream(f"{path}/{META_FILE}") as stream:
            meta = json.loads(stream.read())
        files = meta.get("files")
        if files is None:  # a checkpoint from before meta.json listed its files
            return meta
        infos = fs.get_file_info([f"{path}/{name}" for name in files])
    except (OSError, ValueError, AttributeError):
        return None
    for info, size in zip(infos, files.values()):
        if info.type != pyarrow.fs.FileType.File or info.size != size:
            return None
    return meta
