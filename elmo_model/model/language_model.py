"""The training-time biLM: the biLM plus the softmax shared by both directions, and its loss."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from elmo_model.model.bilm import BiLm
from elmo_model.model.state import BiLmOutput
from elmo_model.model.options import ElmoOptions
from elmo_model.model.softmax import LmSoftmax, SampledClasses


@dataclasses.dataclass
class LmLoss:
    """Summed negative log-likelihoods and target counts per direction."""

    forward_nll: torch.Tensor
    backward_nll: torch.Tensor
    n_targets: int  # per direction (both directions predict the same number of tokens)

    @property
    def loss(self) -> torch.Tensor:
        """bilm-tf's objective: the mean of the two directions' mean losses."""
        return 0.5 * (self.forward_nll + self.backward_nll) / max(self.n_targets, 1)

    def metrics(self) -> dict[str, float]:
        n = max(self.n_targets, 1)
        fwd, bwd = float(self.forward_nll.detach()) / n, float(self.backward_nll.detach()) / n
        return {
            "loss_forward": fwd,
            "loss_backward": bwd,
            "loss": 0.5 * (fwd + bwd),
            "perplexity_forward": perplexity_from_loss(fwd),
            "perplexity_backward": perplexity_from_loss(bwd),
            "perplexity": perplexity_from_loss(0.5 * (fwd + bwd)),
            "n_targets": self.n_targets,
        }


def perplexity_from_loss(loss: float) -> float:
    """``exp(loss)`` of a mean NLL in nats, ``inf`` where ``exp`` would overflow."""
    return math.exp(loss) if loss < 700 else float("inf")


class BiLmWithSoftmax(nn.Module):
    """``forward(char_ids, token_ids, sampled=None) -> LmLoss``; ``sampled=None`` means full softmax."""

    def __init__(self, options: ElmoOptions, n_vocab: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.bilm = BiLm(options, dropout=dropout)
        self.softmax = LmSoftmax(n_vocab, options.projection_dim)
        self.dropout = dropout

    def forward(
        self, char_ids: torch.Tensor, token_ids: torch.Tensor, sampled: SampledClasses | None = None
    ) -> LmLoss:
        return self.loss(self.bilm(char_ids), token_ids, sampled)

    def loss(self, out: BiLmOutput, token_ids: torch.Tensor, sampled: SampledClasses | None = None,
             nll: Callable[..., torch.Tensor] | None = None) -> LmLoss:
        """The LM loss of the biLM's output ``out`` for ``token_ids``; ``nll(hidden, targets,
        sampled)`` is the softmax loss (default :meth:`LmSoftmax.nll`)."""
        nll = nll or self.softmax.nll
        forward_out, backward_out = out.direction_outputs(-1)  # each (B, T, proj)
        valid = out.mask[:, 1:]  # (B, T-1): position t+1 exists
        # forward: output at t predicts token t+1; backward: output at t+1 predicts token t
        fwd_hidden = forward_out[:, :-1][valid]  # (N, proj)
        bwd_hidden = backward_out[:, 1:][valid]
        fwd_targets = token_ids[:, 1:][valid]  # (N,)
        bwd_targets = token_ids[:, :-1][valid]
        if self.training and self.dropout:
            fwd_hidden = F.dropout(fwd_hidden, self.dropout)
            bwd_hidden = F.dropout(bwd_hidden, self.dropout)
        return LmLoss(nll(fwd_hidden, fwd_targets, sampled), nll(bwd_hidden, bwd_targets, sampled), int(valid.sum()))


def initialize_like_bilm_tf(model: BiLmWithSoftmax) -> None:
    """bilm-tf's initialisers for a model trained from scratch."""
    enc = model.bilm.token_encoder
    with torch.no_grad():
        nn.init.uniform_(enc.char_embedding.weight, -1.0, 1.0)
        enc.char_embedding.weight[0].zero_()
        char_dim = enc.char_embedding.weight.shape[1]
        for conv in enc.convolutions:
            width = conv.kernel_size[0]
            if enc.activation is torch.relu:
                nn.init.normal_(conv.weight, 0.0, math.sqrt(1.0 / (width * char_dim)))
            else:
                nn.init.uniform_(conv.weight, -0.05, 0.05)
            nn.init.zeros_(conv.bias)
        for highway in enc.highways:
            dim = highway.carry.in_features
            nn.init.normal_(highway.carry.weight, 0.0, math.sqrt(1.0 / dim))
            nn.init.constant_(highway.carry.bias, -2.0)  # start close to the identity (gate ≈ 0.12)
            nn.init.normal_(highway.transform.weight, 0.0, math.sqrt(1.0 / dim))
            nn.init.zeros_(highway.transform.bias)
        if enc.projection is not None:
            nn.init.normal_(enc.projection.weight, 0.0, math.sqrt(1.0 / enc.projection.in_features))
            nn.init.zeros_(enc.projection.bias)
        for lstm in [*model.bilm.forward_layers, *model.bilm.backward_layers]:
            lstm.reset_parameters()
