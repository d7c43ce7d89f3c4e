"""The biLM's explicit state and output (plain dataclasses, no module code)."""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class BiLmState:
    """LSTM state per direction and layer: ``h (2, n_layers, batch, proj)``, ``c (2, n_layers, batch, cell)``."""

    h: torch.Tensor
    c: torch.Tensor

    def select(self, index: torch.Tensor) -> BiLmState:
        """The state of the batch rows ``index`` (in that order)."""
        return BiLmState(self.h[:, :, index], self.c[:, :, index])


@dataclasses.dataclass
class BiLmOutput:
    """``layers``: L+1 tensors ``(batch, tokens, 2·proj)``; layer 0 is the token vector twice."""

    layers: list[torch.Tensor]
    mask: torch.Tensor  # (batch, tokens) bool
    token_embedding: torch.Tensor  # (batch, tokens, proj)
    state: BiLmState

    def direction_outputs(self, layer: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward and backward halves of one layer, each ``(batch, tokens, proj)``."""
        return self.layers[layer].chunk(2, dim=-1)
