"""The step-by-step biLM path on the production modules' own parameters: the oracle of the fast
training and inference paths (the tests compare losses, every gradient and outputs) and the
"current path" of ``benchmarks/train_path_bench.py``.

Written the plain way: ``Conv1d`` over every character position, each LSTM one time step at a
time (``F.linear`` on the gates, TF's cell), the backward LSTMs on the reversed sequences,
``F.linear`` + ``log_softmax`` for the softmax. Dropout draws its masks with ``F.dropout`` in the
order the fast path reproduces (per direction, per layer, then the softmax inputs), so with the
same generator state both paths see the same masks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from elmo_model.model.bilm import BiLm
from elmo_model.model.language_model import BiLmWithSoftmax, LmLoss
from elmo_model.model.lstm import LstmState, ProjectedLstm
from elmo_model.model.softmax import LmSoftmax, SampledClasses
from elmo_model.model.state import BiLmOutput, BiLmState
from elmo_model.model.token_encoder import CharCnnTokenEncoder
from elmo_model.train.stream import StreamLm, StreamLoss


def pool_conv1d(encoder: CharCnnTokenEncoder, char_ids: torch.Tensor) -> torch.Tensor:
    """Max-pooled ``Conv1d`` over all ``max_chars`` positions: ``(n, max_chars)`` → ``(n, n_filters)``."""
    chars = encoder.char_embedding(char_ids).transpose(1, 2)  # (n, char_dim, max_chars)
    return torch.cat([conv(chars).amax(dim=2) for conv in encoder.convolutions], dim=1)


def token_vectors(encoder: CharCnnTokenEncoder, char_ids: torch.Tensor) -> torch.Tensor:
    """``(batch, tokens, max_chars)`` → ``(batch, tokens, proj)``, every position on its own;
    padding positions are zero."""
    batch, n_tokens, max_chars = char_ids.shape
    flat = char_ids.reshape(-1, max_chars)
    x = encoder.activation(pool_conv1d(encoder, flat))
    for highway in encoder.highways:
        gate = torch.sigmoid(highway.carry(x))
        x = gate * torch.relu(highway.transform(x)) + (1.0 - gate) * x
    if encoder.projection is not None:
        x = encoder.projection(x)
    return (x * (flat[:, :1] > 0).to(x.dtype)).reshape(batch, n_tokens, -1)


def lstm_cell(lstm: ProjectedLstm, gates: torch.Tensor, c: torch.Tensor) -> LstmState:
    """TF's ``LSTMCell`` step on ``gates (n, 4·cell)`` (gate order ``i, j, f, o``) → ``(h, c)``."""
    i, j, f, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f + lstm.forget_bias) * c + torch.sigmoid(i) * torch.tanh(j)
    if lstm.cell_clip is not None:
        c = c.clamp(-lstm.cell_clip, lstm.cell_clip)
    m = torch.sigmoid(o) * torch.tanh(c)
    if lstm.projection is not None:
        m = F.linear(m, lstm.projection)
        if lstm.proj_clip is not None:
            m = m.clamp(-lstm.proj_clip, lstm.proj_clip)
    return m, c


def lstm_steps(lstm: ProjectedLstm, inputs: torch.Tensor, batch_sizes: list[int],
               state: LstmState | None = None) -> tuple[torch.Tensor, LstmState]:
    """``lstm`` over ``inputs (batch, steps, input_dim)``, rows sorted longest first, one step at a time.

    ``batch_sizes[t]`` rows are still inside their sentence at step ``t``; a row that has ended
    keeps its state (the returned state is each row's after its own last token); outputs past a
    row's end are zero. Returns ``(outputs (batch, steps, out_dim), (h, c))``.
    """
    batch, steps, _ = inputs.shape
    h, c = state if state is not None else lstm.zero_state(batch, inputs)
    input_gates = F.linear(inputs, lstm.input_weight, lstm.bias)  # (batch, steps, 4·cell)
    outputs = []
    for t in range(steps):
        n = batch_sizes[t]
        h_new, c_new = lstm_cell(lstm, input_gates[:n, t] + F.linear(h[:n], lstm.recurrent_weight), c[:n])
        outputs.append(h_new if n == batch else F.pad(h_new, (0, 0, 0, batch - n)))
        h = h_new if n == batch else torch.cat([h_new, h[n:]])
        c = c_new if n == batch else torch.cat([c_new, c[n:]])
    if not outputs:
        return inputs.new_zeros(batch, 0, lstm.out_dim), (h, c)
    return torch.stack(outputs, dim=1), (h, c)


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``lengths[b]`` steps of ``(batch, steps, dim)``; padding stays put."""
    t = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, steps)
    lengths = lengths.unsqueeze(1)  # (batch, 1)
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (batch, steps)
    return x.gather(1, index.unsqueeze(2).expand_as(x))


def _stack(bilm: BiLm, stack: nn.ModuleList, x: torch.Tensor, batch_sizes: list[int], state: BiLmState,
           direction: int) -> tuple[list[torch.Tensor], LstmState]:
    outputs, hs, cs = [], [], []
    for k, lstm in enumerate(stack):
        layer_in = F.dropout(x, bilm.dropout, bilm.training) if bilm.dropout else x
        out, (h, c) = lstm_steps(lstm, layer_in, batch_sizes, (state.h[direction, k], state.c[direction, k]))
        if k > 0 and bilm.options.use_skip_connections:
            out = out + x
        outputs.append(out)
        hs.append(h)
        cs.append(c)
        x = out
    return outputs, (torch.stack(hs), torch.stack(cs))


def bilm_forward(bilm: BiLm, char_ids: torch.Tensor, state: BiLmState | None = None) -> BiLmOutput:
    """:meth:`BiLm.forward`, step by step: the same layers, mask, token vectors and final state."""
    mask = char_ids[:, :, 0] > 0  # (batch, tokens)
    tokens = token_vectors(bilm.token_encoder, char_ids)  # (batch, tokens, proj)
    if state is None:
        state = bilm.zero_state(char_ids.shape[0], tokens)
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)  # longest first: step t runs on a prefix
    restore = torch.argsort(order)
    sorted_lengths = lengths[order]
    batch_sizes = [int(n) for n in (sorted_lengths.unsqueeze(0) > torch.arange(
        char_ids.shape[1], device=char_ids.device).unsqueeze(1)).sum(1)]
    sorted_state = state.select(order)
    x = tokens[order]
    forward_out, forward_state = _stack(bilm, bilm.forward_layers, x, batch_sizes, sorted_state, 0)
    backward_in = reverse_within_lengths(x, sorted_lengths)
    backward_out, backward_state = _stack(bilm, bilm.backward_layers, backward_in, batch_sizes, sorted_state, 1)
    backward_out = [reverse_within_lengths(b, sorted_lengths) for b in backward_out]
    layer_mask = mask.unsqueeze(2).to(tokens.dtype)
    layers = [torch.cat([tokens, tokens], dim=-1)]
    for f, b in zip(forward_out, backward_out):
        layers.append(torch.cat([f, b], dim=-1)[restore] * layer_mask)
    new_state = BiLmState(torch.stack([forward_state[0], backward_state[0]]),
                          torch.stack([forward_state[1], backward_state[1]])).select(restore)
    return BiLmOutput(layers, mask, tokens, new_state)


def softmax_nll(softmax: LmSoftmax, hidden: torch.Tensor, targets: torch.Tensor,
                sampled: SampledClasses | None = None) -> torch.Tensor:
    """:meth:`LmSoftmax.nll` with ``F.linear`` and ``log_softmax``: the full softmax, or TF's
    sampled softmax (log-Q correction, accidental hits removed)."""
    if sampled is None:
        return F.cross_entropy(F.linear(hidden, softmax.weight, softmax.bias), targets, reduction="sum")
    hits = targets.unsqueeze(1) == sampled.ids.unsqueeze(0)  # (N, S)
    true_logits = (hidden * softmax.weight[targets]).sum(-1) + softmax.bias[targets]  # (N,)
    sampled_logits = F.linear(hidden, softmax.weight[sampled.ids], softmax.bias[sampled.ids])  # (N, S)
    if sampled.n_tries >= 0:  # no correction when every class was taken (Q = 1)
        true_logits = true_logits - torch.log(softmax.sampler.expected_count(targets, sampled.n_tries))
        sampled_logits = sampled_logits - torch.log(softmax.sampler.expected_count(sampled.ids, sampled.n_tries))
    sampled_logits = sampled_logits.masked_fill(hits, float("-inf"))
    logits = torch.cat([true_logits.unsqueeze(1), sampled_logits], dim=1)  # the true class is column 0
    return -torch.log_softmax(logits, dim=1)[:, 0].sum()


class StepByStepLm(nn.Module):
    """``model``'s loss through the step-by-step path (its own parameters): a drop-in for the
    module an :class:`~elmo_model.train.trainer.LmTrainer` runs (``wrap=lambda m: StepByStepLm(model)``)."""

    def __init__(self, model: BiLmWithSoftmax) -> None:
        super().__init__()
        self.model = model

    def forward(self, char_ids: torch.Tensor, token_ids: torch.Tensor, sampled: SampledClasses | None = None) -> LmLoss:
        softmax = self.model.softmax
        return self.model.loss(bilm_forward(self.model.bilm, char_ids), token_ids, sampled,
                               lambda h, t, s: softmax_nll(softmax, h, t, s))


class StepByStepStreamLm(StreamLm):
    """:class:`StreamLm` through the step-by-step path: both directions over all ``2B`` rows, half
    of each unused (what the fast path avoids)."""

    def forward(self, char_ids: torch.Tensor, forward_targets: torch.Tensor, backward_targets: torch.Tensor,
                forward_mask: torch.Tensor, backward_mask: torch.Tensor, state: BiLmState | None,
                sampled=None) -> StreamLoss:
        rows = forward_targets.shape[0]
        out = bilm_forward(self.lm.bilm, char_ids, state)
        fwd_out, bwd_out = out.direction_outputs(-1)
        softmax = self.lm.softmax
        return self.loss(fwd_out[:rows], bwd_out[rows:], out.state, forward_targets, backward_targets, forward_mask,
                         backward_mask, sampled, lambda h, t, s: softmax_nll(softmax, h, t, s))


__all__ = ["StepByStepLm", "StepByStepStreamLm", "bilm_forward", "lstm_cell", "lstm_steps",
           "pool_conv1d", "reverse_within_lengths", "softmax_nll", "token_vectors"]
