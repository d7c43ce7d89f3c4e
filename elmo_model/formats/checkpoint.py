"""Training checkpoints: model, optimizer, step, generators, config and vocabulary in one file.

Written with ``torch.save`` and read back with ``torch.load(weights_only=True)`` — the file holds
only tensors and plain Python data, so loading it never runs code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from elmo_model.errors import ElmoError
from elmo_model.formats.local_files import write_atomically

FORMAT = "elmo-ray-checkpoint/1"


def save_checkpoint(path: str | os.PathLike, trainer_state: dict, config: dict, vocab: list[str],
                    extra: dict | None = None) -> None:
    """Write a checkpoint file atomically. ``trainer_state`` is ``LmTrainer.state_dict()``."""
    payload = {
        "format": FORMAT,
        **trainer_state,
        "config": config,
        "vocab": list(vocab),
        "extra": extra or {},
    }
    write_atomically(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); a bad file raises :class:`ElmoError`."""
    path = Path(path)
    if not path.exists():
        raise ElmoError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise ElmoError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ElmoError(f"{path}: not an elmo-ray checkpoint (expected format {FORMAT})")
    return payload
