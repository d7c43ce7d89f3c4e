"""What the training driver and its workers agree on: a checkpoint directory's files and when a
checkpoint may continue a run. Imported by both :mod:`.job` and :mod:`.worker`."""

from __future__ import annotations

from elmo_model.errors import ElmoError

# Inside a checkpoint directory: the torch checkpoint, its meta data, and (final one) the export.
CHECKPOINT_FILE, META_FILE, EXPORT_DIR = "checkpoint.pt", "meta.json", "export"


def check_resume_key(saved: dict, wanted: dict, run: str) -> None:
    """A checkpoint continues only a run with the same model, vocabulary and data settings.

    ``run`` names the run in the message (e.g. ``run 'x' in s3://bucket/ckpt``).
    """
    changed = [f"{k}: {saved.get(k)!r} → {wanted.get(k)!r}" for k in sorted(set(saved) | set(wanted))
               if saved.get(k) != wanted.get(k)]
    if changed:
        raise ElmoError(f"{run} already has a checkpoint made with other settings ({'; '.join(changed)}); "
                        "use a new name to start over, or restore those settings to continue it")
