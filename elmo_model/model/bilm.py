"""The bidirectional LM: a shared token encoder, a forward and a backward LSTM stack.

State is explicit: ``BiLm.forward`` takes an optional initial :class:`BiLmState` and returns the
final one. Stateless use (the default everywhere) passes nothing, so a sentence's vectors never
depend on the rest of the batch; carrying state between batches is the caller's business.
"""

from __future__ import annotations


import torch
from torch import nn

from elmo_model.model.bilm_train import train_forward
from elmo_model.model.lstm import ProjectedLstm
from elmo_model.model.packed_lstm import DistinctRows, run_packed
from elmo_model.model.packing import Packing
from elmo_model.model.options import ElmoOptions
from elmo_model.model.state import BiLmOutput, BiLmState
from elmo_model.model.token_encoder import CharCnnTokenEncoder


def _lstm_stack(options: ElmoOptions) -> nn.ModuleList:
    projection = options.projection_dim if options.has_lstm_projection else None
    return nn.ModuleList(
        ProjectedLstm(
            options.projection_dim, options.lstm_dim, projection, options.cell_clip, options.proj_clip
        )
        for _ in range(options.n_layers)
    )


class BiLm(nn.Module):
    """Char ids (with ``<S>``/``</S>`` already in place) → the L+1 layer stack."""

    def __init__(self, options: ElmoOptions, dropout: float = 0.0) -> None:
        super().__init__()
        self.options = options
        self.token_encoder = CharCnnTokenEncoder(options)
        self.forward_layers = _lstm_stack(options)
        self.backward_layers = _lstm_stack(options)
        self.dropout = dropout

    def zero_state(self, batch: int, like: torch.Tensor) -> BiLmState:
        o = self.options
        h = like.new_zeros(2, o.n_layers, batch, o.projection_dim)
        return BiLmState(h, like.new_zeros(2, o.n_layers, batch, o.lstm_dim))

    def forward(self, char_ids: torch.Tensor, state: BiLmState | None = None) -> BiLmOutput:
        """``char_ids (batch, tokens, max_chars)``, 0 = padding position, tokens left-aligned.

        Under autograd (or with active dropout) the packed training path
        (:func:`elmo_model.model.bilm_train.train_forward`, a hand-written backward); otherwise
        the packed inference path (:meth:`contextualize`). Both give the numbers of the
        step-by-step oracle, :func:`elmo_model.testing.step_by_step.bilm_forward`.
        """
        if torch.is_grad_enabled() or (self.training and self.dropout):
            return train_forward(self, char_ids, state)
        mask = char_ids[:, :, 0] > 0  # (batch, tokens)
        return self.contextualize(self.token_encoder(char_ids), mask, state)

    def contextualize(self, tokens: torch.Tensor, mask: torch.Tensor, state: BiLmState | None = None) -> BiLmOutput:
        """Inference only: token vectors ``(batch, T, proj)`` (zero at padding) → :class:`BiLmOutput`.

        Both directions of a layer run together over a time-major packed layout, so padding
        positions cost nothing and no tensor is concatenated per step.
        """
        batch, steps, _ = tokens.shape
        packing = Packing.build(mask)
        outputs, final = self._run_packed(tokens, packing, state, (0, 1))
        layers = [torch.cat([tokens, tokens], dim=-1)]
        layers += [packing.unpack(out, batch, steps) for out in outputs]
        return BiLmOutput(layers, mask, tokens, final)

    def contextualize_direction(
        self, tokens: torch.Tensor, mask: torch.Tensor, state: BiLmState | None, direction: int
    ) -> tuple[list[torch.Tensor], BiLmState]:
        """Inference only: one direction's stack (0 forward, 1 backward) over token vectors
        ``(batch, T, proj)``: its L+1 layers ``(batch, T, proj)`` (layer 0 is ``tokens``; each
        layer is that direction's half of :meth:`contextualize`'s) and the final state (the other
        direction's part as given).

        Used to embed a long sentence in two passes of windows: backward right to left, then
        forward left to right, each carrying its own state; the halves make up the whole.
        """
        batch, steps, _ = tokens.shape
        packing = Packing.build(mask)
        outputs, final = self._run_packed(tokens, packing, state, (direction,))
        index = (packing.forward_index, packing.backward_index)[direction]
        return [tokens] + [packing.unpack_direction(out[0], index, batch, steps) for out in outputs], final

    def backward_final_state(
        self, tokens: torch.Tensor, mask: torch.Tensor, state: BiLmState | None = None
    ) -> BiLmState:
        """Inference only: run just the backward stack; its final state (forward part unchanged).

        Used to carry the backward state right to left over the windows of a long sentence.
        """
        return self._run_packed(tokens, Packing.build(mask), state, (1,))[1]

    def _run_packed(
        self, tokens: torch.Tensor, packing: Packing, state: BiLmState | None, directions: tuple[int, ...]
    ) -> tuple[list[torch.Tensor], BiLmState]:
        """The stacks of ``directions`` over packed inputs → per-layer packed ``(D, N, proj)``."""
        batch, steps, proj = tokens.shape
        if state is None:
            state = self.zero_state(batch, tokens)
        stacks = [(self.forward_layers, self.backward_layers)[d] for d in directions]
        indices = [(packing.forward_index, packing.backward_index)[d] for d in directions]
        flat = tokens.reshape(batch * steps, proj)  # (batch·T, proj)
        x = torch.stack([flat[index] for index in indices])  # (D, N, proj)
        first = stacks[0][0]  # layer 1's input gates once per distinct token, where that pays
        distinct = DistinctRows.of(flat, indices) if DistinctRows.pays_for(first) else None
        h_final, c_final = state.h.clone(), state.c.clone()
        order, outputs = packing.order, []
        for k in range(self.options.n_layers):
            h0 = torch.stack([state.h[d, k, order] for d in directions])  # (D, batch, proj), sorted
            c0 = torch.stack([state.c[d, k, order] for d in directions])
            out, c = run_packed([stack[k] for stack in stacks], x, packing.batch_sizes, h0, c0,
                                distinct if k == 0 else None)
            for i, d in enumerate(directions):
                c_final[d, k, order] = c[i]
                h_final[d, k, packing.ended_rows] = out[i, packing.last_entry].to(h_final.dtype)  # pre-skip
            if k > 0 and self.options.use_skip_connections:
                out += x
            outputs.append(out)
            x = out
        return outputs, BiLmState(h_final, c_final)
