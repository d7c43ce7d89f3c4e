"""The original's stateful mode: each batch row's LSTM state carried into the next call."""

from __future__ import annotations

import torch

from elmo_model.model.bilm import BiLm, BiLmState


class CarriedState:
    """Holds the final state of every batch row seen so far.

    Row ``k`` of a call starts where row ``k`` of the previous call ended; rows never seen
    start from zeros; rows beyond the current batch are kept for later calls.
    """

    def __init__(self, bilm: BiLm) -> None:
        self.bilm = bilm
        self.state: BiLmState | None = None

    def reset(self) -> None:
        self.state = None

    def take(self, batch: int) -> BiLmState:
        """The initial state for a batch of ``batch`` rows."""
        like = self.bilm.token_encoder.char_embedding.weight
        have = 0 if self.state is None else self.state.h.shape[2]
        if have < batch:
            extra = self.bilm.zero_state(batch - have, like)
            if self.state is None:
                self.state = extra
            else:
                self.state = BiLmState(torch.cat([self.state.h, extra.h], 2),
                                       torch.cat([self.state.c, extra.c], 2))
        return BiLmState(self.state.h[:, :, :batch], self.state.c[:, :, :batch])

    def keep(self, final: BiLmState) -> None:
        """Store the final state of the rows just run (the first ``batch`` rows)."""
        batch = final.h.shape[2]
        rest_h, rest_c = self.state.h[:, :, batch:], self.state.c[:, :, batch:]
        self.state = BiLmState(torch.cat([final.h.detach(), rest_h], 2),
                               torch.cat([final.c.detach(), rest_c], 2))
