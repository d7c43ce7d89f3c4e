"""The LM output layer shared by both directions: full softmax and sampled softmax.

Sampled softmax follows TensorFlow's ``sampled_softmax_loss`` that bilm-tf trained with: one set
of negative classes per batch drawn from a log-uniform (Zipfian) distribution over the
frequency-sorted vocabulary, *unique* candidates (draw with replacement until enough distinct
ones), logits corrected by ``-log Q`` (Q = expected count of a class in the draw, for the true
and the sampled classes alike), and sampled classes equal to the true class ("accidental hits")
removed from that row.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F


class LogUniformSampler:
    """``P(k) = (log(k+2) - log(k+1)) / log(V+1)`` for ids ``k = 0 … V-1`` (id 0 most frequent)."""

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes
        self.log_range = math.log(n_classes + 1)

    def probability(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.double()
        return ((torch.log(ids + 2) - torch.log(ids + 1)) / self.log_range).float()

    def expected_count(self, ids: torch.Tensor, n_tries: int) -> torch.Tensor:
        """Expected times class ``ids`` was drawn in ``n_tries`` draws: ``1 - (1-p)^tries``."""
        p = self.probability(ids).double()
        return (-torch.expm1(n_tries * torch.log1p(-p))).float()

    def draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws with replacement (inverse CDF of the log-uniform distribution), int64."""
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return (torch.exp(u * self.log_range).floor().long() - 1).clamp_(0, self.n_classes - 1)

    def sample_unique(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        """``n`` distinct classes in draw order and the number of draws it took."""
        if n >= self.n_classes:
            return torch.arange(self.n_classes), -1  # every class: expected count 1
        seen: dict[int, None] = {}
        tries = 0
        while len(seen) < n:
            chunk = self.draw(max(2 * (n - len(seen)), 64), generator).tolist()
            for position, k in enumerate(chunk):
                if k not in seen:
                    seen[k] = None
                    if len(seen) == n:
                        tries += position + 1
                        break
            else:
                tries += len(chunk)
        return torch.tensor(list(seen), dtype=torch.long), tries


@dataclasses.dataclass
class SampledClasses:
    ids: torch.Tensor  # (S,) distinct class ids
    n_tries: int  # draws it took; -1 when every class is in the sample


class LmSoftmax(nn.Module):
    """``logits = h · Wᵀ + b`` over the vocabulary; ``W`` is ``(n_vocab, dim)`` as in bilm-tf."""

    def __init__(self, n_vocab: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_vocab, dim))
        self.bias = nn.Parameter(torch.zeros(n_vocab))
        nn.init.normal_(self.weight, 0.0, 1.0 / math.sqrt(dim))
        self.sampler = LogUniformSampler(n_vocab)

    @property
    def n_vocab(self) -> int:
        return self.weight.shape[0]

    def full_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood of ``targets (N,)`` given ``hidden (N, dim)``."""
        return F.cross_entropy(F.linear(hidden, self.weight, self.bias), targets, reduction="sum")

    def sample(self, n_samples: int, generator: torch.Generator | None = None) -> SampledClasses:
        ids, tries = self.sampler.sample_unique(n_samples, generator)
        return SampledClasses(ids.to(self.weight.device), tries)

    def sampled_nll(self, hidden: torch.Tensor, targets: torch.Tensor, sampled: SampledClasses) -> torch.Tensor:
        """Summed sampled-softmax loss (TF's ``sampled_softmax_loss`` with accidental hits removed)."""
        true_logits = (hidden * self.weight[targets]).sum(-1) + self.bias[targets]  # (N,)
        sampled_logits = F.linear(hidden, self.weight[sampled.ids], self.bias[sampled.ids])  # (N, S)
        if sampled.n_tries >= 0:  # log-Q correction (none when every class was taken: Q = 1)
            true_logits = true_logits - torch.log(self.sampler.expected_count(targets, sampled.n_tries))
            sampled_logits = sampled_logits - torch.log(
                self.sampler.expected_count(sampled.ids, sampled.n_tries)
            )
        hits = targets.unsqueeze(1) == sampled.ids.unsqueeze(0)  # (N, S) accidental hits
        sampled_logits = sampled_logits.masked_fill(hits, float("-inf"))
        logits = torch.cat([true_logits.unsqueeze(1), sampled_logits], dim=1)  # true class is column 0
        return -torch.log_softmax(logits, dim=1)[:, 0].sum()
