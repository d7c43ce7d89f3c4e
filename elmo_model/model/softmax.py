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


class _LinearSoftmaxNll(torch.autograd.Function):
    """Per-row ``-log softmax(logits)[target]`` of ``logits = h·Wᵀ + b``, in one ``(N, C)`` buffer.

    ``F.linear`` + ``F.cross_entropy`` allocates the logits, the log-probabilities, a dense
    one-hot gradient and the ``log_softmax`` gradient (fresh pages each, ~30 MB apiece on PTB)
    and passes over them several times. Here the logits buffer becomes the log-probabilities in
    place, and in the backward the softmax minus the one-hot, times the row's gradient.

    Full softmax: ``targets`` are columns. Sampled softmax (``true_weight``/``true_bias`` given):
    column 0 holds each row's own true-class logit ``h·w_t + b_t`` and columns ``1…`` the shared
    sampled classes ``W``, ``b`` with ``hits`` (accidental hits) at ``-inf``; the target is column 0.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, true_weight, true_bias, hits, low=None):
        n = hidden.shape[0]
        if true_weight is None:
            logits = hidden.new_empty(n, weight.shape[0])  # (N, C)
            sampled = logits
        else:
            logits = hidden.new_empty(n, weight.shape[0] + 1)
            sampled = logits[:, 1:]
        if low is None:
            torch.addmm(bias, hidden, weight.t(), out=sampled)
        else:  # the product in ``low`` (bf16 matrix units), the softmax in float32
            sampled.copy_(torch.mm(hidden.to(low), weight.to(low).t())).add_(bias)
        if true_weight is not None:
            sampled.masked_fill_(hits, float("-inf"))
            logits[:, 0] = (hidden * true_weight).sum(1) + true_bias
            targets = torch.zeros(n, dtype=torch.long, device=hidden.device)
        torch.log_softmax(logits, dim=1, out=logits)
        ctx.save_for_backward(hidden, weight, true_weight, logits, targets)
        ctx.low = low
        return -logits.gather(1, targets.unsqueeze(1)).squeeze(1)

    @staticmethod
    def backward(ctx, grad):
        hidden, weight, true_weight, logits, targets = ctx.saved_tensors
        # softmax from the log-probabilities, in place (their exp; renormalising is exact math)
        probs = torch.softmax(logits, dim=1, out=logits)
        probs[torch.arange(len(targets), device=targets.device), targets] -= 1.0
        probs.mul_(grad.unsqueeze(1))  # dL/dlogits
        d_sampled = probs if true_weight is None else probs[:, 1:]
        d_bias = d_sampled.sum(0)
        if ctx.low is None:
            d_hidden = d_sampled @ weight
            d_weight = d_sampled.t() @ hidden
        else:
            d_low = d_sampled.to(ctx.low)
            d_hidden = (d_low @ weight.to(ctx.low)).float()
            d_weight = (d_low.t() @ hidden.to(ctx.low)).float()
        d_true_weight = d_true_bias = None
        if true_weight is not None:
            d_true_bias = probs[:, 0]
            d_hidden.addcmul_(d_true_bias.unsqueeze(1), true_weight)
            d_true_weight = d_true_bias.unsqueeze(1) * hidden
        return d_hidden, d_weight, d_bias, None, d_true_weight, d_true_bias, None, None


def _fused_nll(hidden: torch.Tensor, weight: torch.Tensor, *rest) -> torch.Tensor:
    """:class:`_LinearSoftmaxNll` with buffers and softmax in the weights' dtype: under autocast
    its in-place buffers need one dtype, and the softmax wants full precision anyway. CPU
    autocast (bf16 training on CPU) keeps its matrix products in the autocast dtype; GPU workers
    run them in the weights' dtype."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        low = torch.get_autocast_dtype(device_type) if device_type == "cpu" else None
        with torch.autocast(device_type, enabled=False):
            return _LinearSoftmaxNll.apply(hidden.to(weight.dtype), weight, *rest, low)
    return _LinearSoftmaxNll.apply(hidden, weight, *rest)


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
        return _fused_nll(hidden, self.weight, self.bias, targets, None, None, None).sum()

    def nll(self, hidden: torch.Tensor, targets: torch.Tensor, sampled: SampledClasses | None = None) -> torch.Tensor:
        """:meth:`full_nll`, or :meth:`sampled_nll` over ``sampled``."""
        return self.full_nll(hidden, targets) if sampled is None else self.sampled_nll(hidden, targets, sampled)

    def sample(self, n_samples: int, generator: torch.Generator | None = None) -> SampledClasses:
        ids, tries = self.sampler.sample_unique(n_samples, generator)
        return SampledClasses(ids.to(self.weight.device), tries)

    def sampled_nll(self, hidden: torch.Tensor, targets: torch.Tensor, sampled: SampledClasses) -> torch.Tensor:
        """Summed sampled-softmax loss (TF's ``sampled_softmax_loss`` with accidental hits removed)."""
        hits = targets.unsqueeze(1) == sampled.ids.unsqueeze(0)  # (N, S) accidental hits
        true_bias, sampled_bias = self.bias[targets], self.bias[sampled.ids]
        if sampled.n_tries >= 0:  # log-Q correction, folded into the biases (none when Q = 1)
            true_bias = true_bias - torch.log(self.sampler.expected_count(targets, sampled.n_tries))
            sampled_bias = sampled_bias - torch.log(self.sampler.expected_count(sampled.ids, sampled.n_tries))
        return _fused_nll(hidden, self.weight[sampled.ids], sampled_bias, None,
                          self.weight[targets], true_bias, hits).sum()
