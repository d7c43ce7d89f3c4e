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
last, by :func:`checkpoint_files`) is there with that size, and (``verify``) has the SHA-256 that
``meta.json`` records (``sha256``, :func:`checkpoint_digests`). A checkpoint being uploaded when the
run stopped, cut short or corrupted is skipped, and the reason is handed back (``skipped``) so that
the driver can say in one line which one it passed over and why.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

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


def checkpoint_digests(directory: Path) -> dict[str, str]:
    """SHA-256 (hex) of every file :func:`checkpoint_files` lists."""
    return {name: _sha256(lambda name=name: open(directory / name, "rb")) for name in checkpoint_files(directory)}


def _sha256(open_file: Callable[[], IO[bytes]]) -> str:
    digest = hashlib.sha256()
    with open_file() as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def content_problem(meta: dict[str, Any], open_file: Callable[[str], IO[bytes]]) -> str | None:
    """Why the checkpoint's files do not have the content its ``meta.json`` records (``None``: they
    do, or it records no digests: a checkpoint from before they were recorded)."""
    for name, expected in (meta.get("sha256") or {}).items():
        try:
            actual = _sha256(lambda name=name: open_file(name))
        except OSError as exc:
            return f"{name} cannot be read ({exc})"
        if actual != expected:
            return f"{name} does not have the SHA-256 its meta.json records (corrupted)"
    return None


def complete_checkpoints(fs: Any, path: str, skipped: list[tuple[str, str]] | None = None
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    """The run's complete checkpoints under ``path`` (``<storage>/<name>``) on the pyarrow filesystem
    ``fs``, newest (by step) first, as (path, ``meta.json``); each incomplete one passed over on the
    way is appended to ``skipped`` as (path, reason)."""
    import pyarrow.fs

    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(path.rstrip("/"), allow_not_found=True))
    except OSError:
        return
    steps = sorted((int(m.group(1)), entry.path) for entry in entries
                   if entry.type == pyarrow.fs.FileType.Directory and (m := _CHECKPOINT_DIR.fullmatch(entry.base_name)))
    for _, directory in reversed(steps):
        meta, reason = _complete_meta(fs, directory)
        if meta is not None:
            yield directory, meta
        elif skipped is not None:
            skipped.append((directory, reason))


def newest_complete_checkpoint(fs: Any, path: str, skipped: list[tuple[str, str]] | None = None,
                               verify: bool = False) -> tuple[str, dict[str, Any]] | None:
    """The path and ``meta.json`` of the run's newest (by step) complete checkpoint under ``path``
    (``<storage>/<name>``) on the pyarrow filesystem ``fs``; ``None`` when it has none. With
    ``verify``, a checkpoint whose files do not have the recorded SHA-256 is passed over too (this
    reads its files). The newer ones passed over are appended to ``skipped`` as (path, reason)."""
    for directory, meta in complete_checkpoints(fs, path, skipped):
        problem = content_problem(meta, lambda name: fs.open_input_stream(f"{directory}/{name}")) if verify else None
        if problem is None:
            return directory, meta
        if skipped is not None:
            skipped.append((directory, problem))
    return None


def describe_skipped(skipped: list[tuple[str, str]]) -> str:
    """``checkpoint_000000020 (checkpoint.pt is 1000 bytes, meta.json lists 5000)`` for each, joined."""
    return "; ".join(f"{directory.rstrip('/').rsplit('/', 1)[-1]} ({reason})" for directory, reason in skipped)


def _complete_meta(fs: Any, path: str) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint's meta data if all of its files are there; else ``None`` and why not (still
    uploading, cut short, a file deleted)."""
    import pyarrow.fs

    try:
        with fs.open_input_stream(f"{path}/{META_FILE}") as stream:
            meta = json.loads(stream.read())
        files = meta.get("files")
        if files is None:  # a checkpoint from before meta.json listed its files
            return meta, ""
        infos = fs.get_file_info([f"{path}/{name}" for name in files])
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or "does not exist" in str(exc) or "not found" in str(exc).lower():
            return None, f"no {META_FILE}: it was never finished"
        return None, f"its {META_FILE} cannot be read ({exc})"
    except (ValueError, AttributeError) as exc:
        return None, f"its {META_FILE} cannot be read ({type(exc).__name__})"
    for info, (name, size) in zip(infos, files.items()):
        if info.type != pyarrow.fs.FileType.File:
            return None, f"{name} is missing"
        if info.size != size:
            return None, f"{name} is {info.size} bytes, {META_FILE} lists {size}: cut short"
    return meta, ""
