"""ELMo in pure PyTorch: weight-compatible with bilm-tf / AllenNLP. Never imports Ray.

The public names are imported on first use (PEP 562), so that ``elmo_model.errors`` and other
light modules load without torch (``elmo --help`` stays fast).
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "BiLm": "elmo_model.model.bilm", "BiLmOutput": "elmo_model.model.bilm", "BiLmState": "elmo_model.model.bilm",
    "batch_char_ids": "elmo_model.model.chars", "Elmo": "elmo_model.infer.elmo", "batch_to_ids": "elmo_model.infer.elmo",
    "SentenceEmbedder": "elmo_model.infer.embedder", "ElmoError": "elmo_model.errors",
    "ElmoOptions": "elmo_model.model.options", "ScalarMix": "elmo_model.model.scalar_mix",
    "load_bilm": "elmo_model.formats.weights", "read_options": "elmo_model.formats.weights",
    "save_options": "elmo_model.formats.weights", "save_weights": "elmo_model.formats.weights",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'elmo_model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
