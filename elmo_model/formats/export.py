"""Export a trained biLM in the published layout, and load one back for fine-tuning.

An export directory holds ``options.json`` + ``weights.hdf5`` (bilm-tf layout; the softmax in its
own ``softmax`` group, which inference ignores) + ``vocab.txt``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import torch

from elmo_model.errors import ElmoError
from elmo_model.model.bilm import BiLm
from elmo_model.model.language_model import BiLmWithSoftmax
from elmo_model.formats.vocab import Vocabulary
from elmo_model.formats.local_files import LocalPath
from elmo_model.formats.weights import WeightSource, load_weights, read_options, save_options, save_weights

log = logging.getLogger(__name__)

OPTIONS_FILE, WEIGHTS_FILE, VOCAB_FILE = "options.json", "weights.hdf5", "vocab.txt"


def export_model(model: BiLmWithSoftmax, vocab: Vocabulary, directory: str | os.PathLike) -> Path:
    """Write ``options.json``, ``weights.hdf5`` (with softmax) and ``vocab.txt`` into ``directory``."""
    directory = Path(directory)
    options = model.bilm.options
    options = dataclasses.replace(options, n_characters=262,
                                  extra={**options.extra, "n_tokens_vocab": len(vocab)})
    softmax = (model.softmax.weight.detach().cpu().numpy(), model.softmax.bias.detach().cpu().numpy())
    save_weights(model.bilm, directory / WEIGHTS_FILE, softmax)
    vocab.save(directory / VOCAB_FILE)
    save_options(options, directory / OPTIONS_FILE)  # last: its presence marks a complete export
    return directory


def load_pretrained_lm(
    options_file: LocalPath, weight_file: WeightSource, vocab: Vocabulary, dropout: float = 0.1
) -> BiLmWithSoftmax:
    """A trainable biLM from published (or exported) local files, for fine-tuning on ``vocab``.

    The file's softmax is kept when it has one row per vocabulary entry; a file without a softmax
    (published models) gets a freshly initialised one. Any other mismatch is an error.
    """
    model = BiLmWithSoftmax(read_options(options_file), len(vocab), dropout)
    softmax = load_weights(model.bilm, weight_file)
    _set_softmax(model, softmax, vocab, str(weight_file))
    return model


def lm_from_bilm(bilm: BiLm, softmax: tuple[np.ndarray, np.ndarray] | None, vocab: Vocabulary,
                 dropout: float = 0.1, source: str = WEIGHTS_FILE) -> BiLmWithSoftmax:
    """:func:`load_pretrained_lm` for a biLM already loaded (no I/O): its weights and ``softmax``
    (the file's, or ``None``) copied into a trainable biLM; ``source`` names the file in errors."""
    model = BiLmWithSoftmax(bilm.options, len(vocab), dropout)
    model.bilm.load_state_dict(bilm.state_dict())
    _set_softmax(model, softmax, vocab, source)
    return model


def _set_softmax(model: BiLmWithSoftmax, softmax: tuple[np.ndarray, np.ndarray] | None, vocab: Vocabulary,
                 source: str) -> None:
    if softmax is None:
        log.info("%s has no softmax: initialising one for %d tokens", source, len(vocab))
        return
    declared = model.bilm.options.extra.get("n_tokens_vocab")
    if softmax[0].shape[0] != len(vocab) or (declared is not None and int(declared) != len(vocab)):
        raise ElmoError(
            f"{source}: softmax has {softmax[0].shape[0]} rows (options say n_tokens_vocab="
            f"{declared}) but the vocabulary has {len(vocab)} tokens; use the vocab.txt exported with "
            "the model, or a file without a softmax"
        )
    with torch.no_grad():
        model.softmax.weight.copy_(torch.from_numpy(softmax[0]))
        model.softmax.bias.copy_(torch.from_numpy(softmax[1]))
