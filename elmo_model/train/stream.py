"""Stream training (bilm-tf's way): each batch row is its own contiguous token stream, read in
fixed windows with the LSTM state carried from batch to batch (truncated back-propagation).

The ordered sentences (:func:`elmo_model.train.batch_plan.ordered_items` with whole sentences) are
joined into one sequence ``<S> s1 </S> <S> s2 </S> …`` of ``N`` tokens and cut into ``R`` equal,
contiguous segments of ``L = N // R`` tokens, one per stream (``R`` = workers × ``batch_size``;
worker ``r`` owns segments ``r·B … r·B + B − 1``). At stream step ``k`` (the global step) stream
``j`` gives

- the forward LM positions ``k·T … k·T + T − 1`` of its segment (mod ``L``: at the end it
  starts over), each predicting the next token;
- the backward LM positions ``L − (k+1)·T … L − k·T − 1`` (mod ``L``), which the backward LSTM
  reads right to left, each predicting the previous token — so each direction's state flows
  into the window it reads next.

The char-CNN runs once over the ``2B`` windows (rows ``0…B−1`` forward windows, rows ``B…2B−1``
backward windows); the forward LSTMs then read only the forward windows and the backward LSTMs only
the backward ones (:func:`elmo_model.model.bilm_train.train_forward_paired`; the step-by-step path, kept
as the benchmarks' reference, runs both over all ``2B`` rows and uses half of each). Targets
across a sentence boundary (``</S> → <S>`` forward, ``<S> → </S>`` backward) and across the wrap
from a segment's end to its start are not counted, so every sentence gives the targets it gives
in sentence mode (its words and ``</S>`` forward, ``<S>`` and its words backward) — with the
context of the sentences before (forward) or after (backward) it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from elmo_model.model.bilm import BiLmState
from elmo_model.model.bilm_train import train_forward_paired
from elmo_model.model.chars import BOS_TOKEN, EOS_TOKEN, token_char_ids
from elmo_model.errors import ElmoError
from elmo_model.formats.vocab import Vocabulary

Batch = dict[str, np.ndarray]


class TokenStreams:
    """This worker's ``batch_size`` streams (segments ``rank·B …``) of ``n_streams`` over the corpus."""

    def __init__(self, sequences: Iterable[Sequence[str]], vocab: Vocabulary, window: int, n_streams: int,
                 rows: range, max_chars: int) -> None:
        table: dict[str, int] = {}
        ids: list[int] = []
        for sequence in sequences:  # each already `<S> … </S>`
            ids.extend(table.setdefault(token, len(table)) for token in sequence)
        self.total_tokens = len(ids)
        self.segment = len(ids) // n_streams
        if self.segment < window + 1:
            raise ElmoError(f"stream mode: the corpus has {len(ids)} tokens, too few for {n_streams} streams of "
                            f"windows of {window} (use fewer workers, a smaller batch_size or max_tokens)")
        tokens = list(table)
        self.window, self.rows = window, rows
        self.token_chars = np.stack([token_char_ids(t, max_chars) for t in tokens]).astype(np.int32)
        self.token_vocab_ids = np.asarray(vocab.encode(tokens), dtype=np.int64)
        is_bos = np.array([t == BOS_TOKEN for t in tokens] + [False])
        is_eos = np.array([t == EOS_TOKEN for t in tokens] + [False])
        array = np.asarray(ids, dtype=np.int64)
        self.segments = np.stack([array[j * self.segment : (j + 1) * self.segment] for j in rows])  # (B, L)
        self.is_bos, self.is_eos = is_bos[self.segments], is_eos[self.segments]

    def batch(self, step: int, wrap: bool = True) -> Batch:
        """Stream step ``step`` (0-based): char ids of the ``2B`` windows, targets and masks per direction.

        Without ``wrap`` (one pass, for validation) the positions a window reads after the wrap
        (past a segment's end forward, before its start backward) are not scored."""
        length, window = self.segment, self.window
        rows = np.arange(len(self.rows))[:, None]
        unwrapped_forward = step * window + np.arange(window)  # (T,) positions in each segment
        unwrapped_backward = length - (step + 1) * window + np.arange(window)
        forward, backward = unwrapped_forward % length, unwrapped_backward % length
        forward_next, backward_previous = (forward + 1) % length, (backward - 1) % length
        f_local, b_local = self.segments[:, forward], self.segments[:, backward]
        char_ids = self.token_chars[np.concatenate([f_local, b_local])]  # (2B, T, chars)
        fwd_mask = ~self.is_eos[:, forward] & (forward_next != 0)[None]  # not across </S> <S> or the wrap
        bwd_mask = ~self.is_bos[:, backward] & (backward != 0)[None]
        if not wrap:
            fwd_mask &= (unwrapped_forward < length)[None]
            bwd_mask &= (unwrapped_backward >= 0)[None]
        return {"char_ids": char_ids,
                "forward_targets": self.token_vocab_ids[self.segments[rows, forward_next]],
                "backward_targets": self.token_vocab_ids[self.segments[rows, backward_previous]],
                "forward_mask": fwd_mask, "backward_mask": bwd_mask}


@dataclasses.dataclass
class StreamLoss:
    forward_nll: torch.Tensor
    backward_nll: torch.Tensor
    n_forward: int
    n_backward: int
    state: BiLmState  # detached: the next batch starts from it without back-propagating into this one


def paired_state(state: BiLmState | None, rows: int) -> BiLmState | None:
    """The carried state as the paired path keeps it, ``(2, L, B, ·)``: the forward LSTMs' state
    on the forward windows and the backward LSTMs' on the backward ones. A state of ``2B`` rows
    (the step-by-step path's, and checkpoints made before the paired path) keeps just those halves."""
    if state is None or state.h.shape[2] == rows:
        return state
    return BiLmState(torch.stack([state.h[0, :, :rows], state.h[1, :, rows:]]),
                     torch.stack([state.c[0, :, :rows], state.c[1, :, rows:]]))


def stream_tensors(batch: Batch, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """A stream batch as :class:`StreamLm`'s first five arguments (char ids as int64)."""
    tensors = [torch.as_tensor(batch[k]).to(device) for k in
               ("char_ids", "forward_targets", "backward_targets", "forward_mask", "backward_mask")]
    tensors[0] = tensors[0].long()
    return tensors


def target_counts(batch: Batch) -> tuple[int, int]:
    return int(batch["forward_mask"].sum()), int(batch["backward_mask"].sum())


class StreamLm(nn.Module):
    """The LM (:class:`elmo_model.model.language_model.BiLmWithSoftmax`) on a stream batch with carried state."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, char_ids: torch.Tensor, forward_targets: torch.Tensor, backward_targets: torch.Tensor,
                forward_mask: torch.Tensor, backward_mask: torch.Tensor, state: BiLmState | None,
                sampled=None) -> StreamLoss:
        rows = forward_targets.shape[0]  # each direction runs on its own windows only
        fwd_top, bwd_top, new_state = train_forward_paired(self.lm.bilm, char_ids, paired_state(state, rows))
        return self.loss(fwd_top, bwd_top, new_state, forward_targets, backward_targets, forward_mask, backward_mask,
                         sampled)

    def loss(self, fwd_top: torch.Tensor, bwd_top: torch.Tensor, new_state: BiLmState, forward_targets: torch.Tensor,
             backward_targets: torch.Tensor, forward_mask: torch.Tensor, backward_mask: torch.Tensor, sampled=None,
             nll: Callable[..., torch.Tensor] | None = None) -> StreamLoss:
        """The loss of the top layer's halves (``(rows, T, proj)`` each) and the state to carry;
        ``nll(hidden, targets, sampled)`` is the softmax loss (default the LM's)."""
        lm = self.lm
        nll = nll or lm.softmax.nll
        fwd_hidden, bwd_hidden = fwd_top[forward_mask], bwd_top[backward_mask]
        fwd_targets, bwd_targets = forward_targets[forward_mask], backward_targets[backward_mask]
        if self.training and lm.dropout:
            fwd_hidden, bwd_hidden = F.dropout(fwd_hidden, lm.dropout), F.dropout(bwd_hidden, lm.dropout)
        fwd, bwd = nll(fwd_hidden, fwd_targets, sampled), nll(bwd_hidden, bwd_targets, sampled)
        state = BiLmState(new_state.h.detach(), new_state.c.detach())
        return StreamLoss(fwd, bwd, int(forward_mask.sum()), int(backward_mask.sum()), state)


@torch.no_grad()
def stream_validation_nll(lm: nn.Module, sequences: Sequence[Sequence[str]], vocab: Vocabulary, window: int,
                          n_streams: int, rank: int, world: int, max_chars: int) -> tuple[float, float, int, int]:
    """Held-out text in the stream measure, as stream training reads it: the ``<S> … </S>``
    sequences joined and cut into ``n_streams`` contiguous segments, each read once in windows of
    ``window`` with the state carried from a zero start (forward LM from the segment's start,
    backward LM from its end). This worker takes streams ``rank, rank + world, …``. Returns the
    summed NLL and target counts per direction (forward, backward, n_forward, n_backward).

    Fewer streams (and a shorter window) when the text is too short for them. With one stream
    the result is :func:`elmo_model.eval.perplexity.stream_perplexity`'s (``stream`` mode).
    """
    total = sum(len(s) for s in sequences)
    if total < 2:
        return 0.0, 0.0, 0, 0
    window = min(window, total - 1)
    n_streams = max(1, min(n_streams, total // (window + 1)))
    rows = range(rank, n_streams, world)
    if len(rows) == 0:
        return 0.0, 0.0, 0, 0
    streams = TokenStreams(sequences, vocab, window, n_streams, rows, max_chars)
    model = StreamLm(lm)
    was_training = lm.training
    model.eval()
    device = next(lm.parameters()).device
    state, sums = None, [0.0, 0.0, 0, 0]
    for step in range(-(-streams.segment // window)):  # one pass over each segment
        out = model(*stream_tensors(streams.batch(step, wrap=False), device), state)
        state = out.state
        sums = [sums[0] + float(out.forward_nll), sums[1] + float(out.backward_nll),
                sums[2] + out.n_forward, sums[3] + out.n_backward]
    lm.train(was_training)
    return sums[0], sums[1], sums[2], sums[3]
