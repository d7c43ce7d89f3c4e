"""Sentences in, numpy vectors out: the in-process inference path shared by ``elmo dump``,
the Ray embedding actors and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from elmo_model.bilm import BiLm
from elmo_model.chars import batch_char_ids
from elmo_model.stateful import CarriedState


class SentenceEmbedder:
    """Runs a :class:`BiLm` on token lists and returns, per sentence, ``(L+1, n_tokens, 2·proj)``.

    ``<S>``/``</S>`` are added before the biLM and removed from the result. Stateless unless
    ``stateful=True``, which carries each batch row's LSTM state into the next call (the
    original's behaviour; row ``k`` of one call continues row ``k`` of the previous).
    """

    def __init__(self, bilm: BiLm, device: str | torch.device = "cpu", stateful: bool = False) -> None:
        self.bilm = bilm.to(device).eval()
        self.device = torch.device(device)
        self.carried = CarriedState(self.bilm) if stateful else None

    def __call__(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        if not sentences:
            return []
        max_chars = self.bilm.options.max_characters_per_token
        ids = torch.from_numpy(batch_char_ids(sentences, add_boundaries=True, max_chars=max_chars))
        with torch.inference_mode():
            ids = ids.long().to(self.device)
            state = self.carried.take(len(sentences)) if self.carried else None
            output = self.bilm(ids, state)
            if self.carried:
                self.carried.keep(output.state)
            stacked = torch.stack(output.layers, dim=1).float().cpu().numpy()  # (batch, L+1, T, D)
        return [stacked[b, :, 1 : len(s) + 1] for b, s in enumerate(sentences)]
