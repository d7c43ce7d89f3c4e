"""Task-specific combination of the biLM layers: ``γ · Σ_j softmax(s)_j · h_j``."""

from __future__ import annotations

import torch
from torch import nn


class ScalarMix(nn.Module):
    """Learned softmax-weighted sum of ``n_layers`` tensors of equal shape, scaled by ``γ``.

    With ``do_layer_norm`` each layer is first normalised to zero mean and unit variance over
    the unmasked positions *of its own sentence* (all features together). AllenNLP pools these
    statistics over the whole batch instead; per sentence keeps every sentence's vector
    independent of its batch-mates, which stateless inference promises.
    """

    def __init__(
        self,
        n_layers: int,
        do_layer_norm: bool = False,
        initial_scalar_parameters: list[float] | None = None,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        initial = initial_scalar_parameters or [0.0] * n_layers
        if len(initial) != n_layers:
            raise ValueError(f"{len(initial)} initial scalar parameters given for {n_layers} layers")
        self.scalar_parameters = nn.Parameter(torch.tensor(initial, dtype=torch.float32), trainable)
        self.gamma = nn.Parameter(torch.tensor(1.0), trainable)
        self.do_layer_norm = do_layer_norm

    def forward(self, layers: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """``layers``: n tensors ``(batch, tokens, dim)``; ``mask`` ``(batch, tokens)`` for layer norm."""
        if len(layers) != self.scalar_parameters.numel():
            raise ValueError(f"{len(layers)} layers given, this mix has {self.scalar_parameters.numel()}")
        weights = torch.softmax(self.scalar_parameters, dim=0)
        if self.do_layer_norm:
            if mask is None:
                raise ValueError("do_layer_norm needs the mask")
            layers = [_masked_layer_norm(layer, mask) for layer in layers]
        mixed = sum(w * layer for w, layer in zip(weights, layers))
        return self.gamma * mixed


def _masked_layer_norm(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)  # (batch, tokens, 1)
    count = (m.sum(dim=(1, 2)) * x.shape[-1]).clamp(min=1).view(-1, 1, 1)  # (batch, 1, 1)
    mean = (x * m).sum(dim=(1, 2), keepdim=True) / count
    variance = (((x - mean) * m) ** 2).sum(dim=(1, 2), keepdim=True) / count
    return (x - mean) / torch.sqrt(variance + 1e-12)
