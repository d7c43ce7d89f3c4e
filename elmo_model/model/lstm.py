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

LstmState = tuple[torch.Tensor, torch.Tensor]  # (h: (batch, out_dim), c: (batch, cell_dim))


class ProjectedLstm(nn.Module):
    """``h_t = clip(P · (σ(o) ⊙ tanh(c_t)))``, ``c_t = clip(σ(f+1) ⊙ c_{t-1} + σ(i) ⊙ tanh(j))``.

    The parameters of one direction of one layer; the biLM runs them over packed sequences
    (:func:`elmo_model.model.packed_lstm.run_packed` for inference,
    :func:`elmo_model.model.lstm_train.run_packed_train` under autograd). The step-by-step
    recurrence written as above is the tests' oracle (:mod:`elmo_model.testing.step_by_step`).
    """

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

    def folded_bias(self) -> torch.Tensor:
        """The gate bias with ``forget_bias`` added to the ``f`` block (for the inference path)."""
        bias = self.bias.detach().clone()
        bias[2 * self.cell_dim : 3 * self.cell_dim] += self.forget_bias
        return bias
