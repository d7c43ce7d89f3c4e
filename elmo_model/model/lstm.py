"""One direction of one biLM layer: an LSTM cell with a projection and optional clipping.

Same arithmetic as TensorFlow's ``LSTMCell(num_proj=..., cell_clip=..., proj_clip=...)`` that
bilm-tf trained with. The gate order in the weight rows is TF's ``i, j, f, o`` (input gate,
candidate, forget gate, output gate), and the forget gate gets a constant ``forget_bias`` of 1.0
added on top of the learned bias, as TF does; the weights module therefore copies bilm-tf's
kernels without reordering or touching the bias.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

LstmState = tuple[torch.Tensor, torch.Tensor]  # (h: (batch, out_dim), c: (batch, cell_dim))


class ProjectedLstm(nn.Module):
    """``h_t = clip(P · (σ(o) ⊙ tanh(c_t)))``, ``c_t = clip(σ(f+1) ⊙ c_{t-1} + σ(i) ⊙ tanh(j))``."""

    def __init__(
        self,
        input_dim: int,
        cell_dim: int,
        projection_dim: int | None,
        cell_clip: float | None = None,
        proj_clip: float | None = None,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        out_dim = projection_dim if projection_dim is not None else cell_dim
        self.input_weight = nn.Parameter(torch.empty(4 * cell_dim, input_dim))
        self.recurrent_weight = nn.Parameter(torch.empty(4 * cell_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(4 * cell_dim))
        self.projection = (
            nn.Parameter(torch.empty(projection_dim, cell_dim)) if projection_dim is not None else None
        )
        self.cell_dim, self.out_dim = cell_dim, out_dim
        self.cell_clip, self.proj_clip, self.forget_bias = cell_clip, proj_clip, forget_bias
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in (self.input_weight, self.recurrent_weight, self.projection):
            if weight is not None:
                nn.init.xavier_uniform_(weight)
        nn.init.zeros_(self.bias)

    def zero_state(self, batch: int, like: torch.Tensor) -> LstmState:
        return like.new_zeros(batch, self.out_dim), like.new_zeros(batch, self.cell_dim)

    def forward(
        self, inputs: torch.Tensor, batch_sizes: list[int], state: LstmState | None = None
    ) -> tuple[torch.Tensor, LstmState]:
        """Run over ``inputs`` ``(batch, steps, input_dim)``, rows sorted longest first.

        ``batch_sizes[t]`` is how many rows are still inside their sentence at step ``t`` (like a
        PackedSequence). Rows that have ended keep their state, so the returned state is each
        row's state after its own last token. Outputs past a row's end are zero.
        Returns ``(outputs (batch, steps, out_dim), (h, c))``.
        """
        batch, steps, _ = inputs.shape
        h, c = state if state is not None else self.zero_state(batch, inputs)
        # The input half of the gates for every step in one GEMM: (batch, steps, 4·cell)
        input_gates = F.linear(inputs, self.input_weight, self.bias)
        outputs = []
        for t in range(steps):
            n = batch_sizes[t]
            gates = input_gates[:n, t] + F.linear(h[:n], self.recurrent_weight)
            h_new, c_new = self._cell(gates, c[:n])
            outputs.append(h_new if n == batch else F.pad(h_new, (0, 0, 0, batch - n)))
            h = h_new if n == batch else torch.cat([h_new, h[n:]])
            c = c_new if n == batch else torch.cat([c_new, c[n:]])
        if not outputs:
            return inputs.new_zeros(batch, 0, self.out_dim), (h, c)
        return torch.stack(outputs, dim=1), (h, c)

    def _cell(self, gates: torch.Tensor, c: torch.Tensor) -> LstmState:
        i, j, f, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(j)
        if self.cell_clip is not None:
            c = c.clamp(-self.cell_clip, self.cell_clip)
        m = torch.sigmoid(o) * torch.tanh(c)
        if self.projection is not None:
            m = F.linear(m, self.projection)
            if self.proj_clip is not None:
                m = m.clamp(-self.proj_clip, self.proj_clip)
        return m, c

    def folded_bias(self) -> torch.Tensor:
        """The gate bias with ``forget_bias`` added to the ``f`` block (for the inference path)."""
        bias = self.bias.detach().clone()
        bias[2 * self.cell_dim : 3 * self.cell_dim] += self.forget_bias
        return bias
