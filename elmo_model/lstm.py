"""One direction of one biLM layer: an LSTM cell with a projection and optional clipping.

Same arithmetic as TensorFlow's ``LSTMCell(num_proj=..., cell_clip=..., proj_clip=...)`` that
bilm-tf trained with. The gate order in the weight rows is TF's ``i, j, f, o`` (input gate,
candidate, forget gate, output gate), and the forget gate gets a constant ``forget_bias`` of 1.0
added on top of the learned bias, as TF does; the weights module therefore copies bilm-tf's
kernels without reordering or touching the bias.
"""

from __future__ import annotations

from collections.abc import Sequence

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


# The input half of the gates is computed for blocks of at most this many packed rows at a time
# (one GEMM each): memory stays bounded on long inputs and the block is still in cache when used.
GATE_BLOCK_ROWS = 512
# On CPU the recurrent GEMM is split into column blocks whose weights fit in L2 (~2 MB): on the
# benchmark machine's MKL that is ~1.4× faster for the original shape's 16384 × 512 weight.
RECURRENT_BLOCK_BYTES = 2 * 1024 * 1024
_ALL = slice(None)


def run_packed(
    lstms: Sequence[ProjectedLstm],
    inputs: torch.Tensor,
    batch_sizes: Sequence[int],
    h0: torch.Tensor,
    c0: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference only (no autograd): several same-shaped LSTMs (e.g. the two directions of a
    layer) over inputs packed time-major like a ``PackedSequence``.

    ``inputs (D, N, input_dim)`` holds step ``t``'s rows ``[0, batch_sizes[t])`` at
    ``offset_t = Σ_{s<t} batch_sizes[s]``; rows are sorted longest first. ``h0 (D, B, out)``,
    ``c0 (D, B, cell)``. Returns ``outputs (D, N, out)`` packed the same way, and the final cells
    ``(D, B, cell)`` (rows keep their cell after their last step). Same arithmetic as
    :meth:`ProjectedLstm.forward`; outputs and cells are written in place, nothing is
    concatenated per step. Under autocast the weights are cast once per call and the matrix
    products run in the autocast dtype; the cells stay in ``c0``'s dtype.
    """
    device = inputs.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False):
            return _run_packed(lstms, inputs.to(dtype), batch_sizes, h0.to(dtype), c0)
    return _run_packed(lstms, inputs, batch_sizes, h0.to(inputs.dtype), c0)


def _run_packed(
    lstms: Sequence[ProjectedLstm],
    inputs: torch.Tensor,
    batch_sizes: Sequence[int],
    h0: torch.Tensor,
    c0: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`run_packed` with every matrix product in ``inputs.dtype``."""
    first = lstms[0]
    cell_dim, out_dim = first.cell_dim, first.out_dim
    n_dirs, total, _ = inputs.shape
    dtype = inputs.dtype
    biases = [lstm.folded_bias().to(dtype) for lstm in lstms]
    input_weights = [lstm.input_weight.to(dtype).t() for lstm in lstms]  # (input, 4·cell)
    columns = [_ALL]  # on a GPU, more kernel launches would cost more than cache misses
    if inputs.device.type == "cpu":
        columns = _column_blocks(4 * cell_dim, out_dim * inputs.element_size())
    # (4·cell, out)ᵀ column blocks and (out, cell)ᵀ, as views made once
    recurrent = [[(cols, weight[cols].t()) for cols in columns]
                 for weight in (lstm.recurrent_weight.to(dtype) for lstm in lstms)]
    projection = None if first.projection is None else [lstm.projection.to(dtype).t() for lstm in lstms]
    block_rows = min(total, max(GATE_BLOCK_ROWS, max(batch_sizes, default=0)))
    gates = inputs.new_empty(n_dirs, block_rows, 4 * cell_dim)
    outputs = inputs.new_empty(n_dirs, total, out_dim)
    c = c0.clone()
    offset, previous, block_start, block_end = 0, -1, 0, 0
    for step, n in enumerate(batch_sizes):
        if offset + n > block_end:  # the next block of input gates, starting at this step
            block_start, block_end = offset, _block_end(batch_sizes, step, offset, gates.shape[1])
            for d in range(n_dirs):  # (rows, input) @ (input, 4·cell) + bias
                torch.addmm(biases[d], inputs[d, block_start:block_end], input_weights[d],
                            out=gates[d, : block_end - block_start])
        g = gates[:, offset - block_start : offset - block_start + n]  # (D, n, 4·cell)
        h = h0[:, :n] if previous < 0 else outputs[:, previous : previous + n]  # (D, n, out)
        for d in range(n_dirs):
            g_d, h_d = g[d], h[d]
            for cols, weight in recurrent[d]:
                (g_d if cols is _ALL else g_d[:, cols]).addmm_(h_d, weight)
        m = _cell_inplace(g, c[:, :n], first.cell_clip)  # (D, n, cell)
        out = outputs[:, offset : offset + n]  # (D, n, out)
        if projection is None:
            out.copy_(m)
        else:
            for d in range(n_dirs):
                torch.mm(m[d], projection[d], out=out[d])
            if first.proj_clip is not None:
                out.clamp_(-first.proj_clip, first.proj_clip)
        previous, offset = offset, offset + n
    return outputs, c


def _block_end(batch_sizes: Sequence[int], step: int, offset: int, max_rows: int) -> int:
    """End (packed offset) of the longest run of whole steps from ``step`` within ``max_rows``."""
    end = offset
    for n in batch_sizes[step:]:
        if end + n - offset > max_rows:
            break
        end += n
    return end


def _column_blocks(n_columns: int, bytes_per_column: int) -> list[slice]:
    """Column ranges of the recurrent weight, each about :data:`RECURRENT_BLOCK_BYTES`."""
    width = max(256, RECURRENT_BLOCK_BYTES // max(bytes_per_column, 1))
    if width >= n_columns:
        return [_ALL]
    return [slice(start, min(start + width, n_columns)) for start in range(0, n_columns, width)]


def _cell_inplace(g: torch.Tensor, c: torch.Tensor, cell_clip: float | None) -> torch.Tensor:
    """TF's cell on gates ``g (..., 4·cell)`` (forget bias already added), updating ``c`` in
    place; returns ``σ(o) ⊙ tanh(c)`` as a view into ``g``.

    On CPU the candidate ``tanh(j)`` is computed as ``2σ(2j) − 1`` so that one ``sigmoid_``
    covers all four gates: torch's CPU tanh runs 2–5× slower than its sigmoid on the benchmark
    machine (AMD EPYC, MKL). It costs ≲ 2e-7 absolute per value; ``tanh(c)`` stays exact-ish
    (on a chaotic test model, doing it to ``tanh(c)`` as well doubled the float32 drift).
    """
    cell = c.shape[-1]
    i, j, f, o = g[..., :cell], g[..., cell : 2 * cell], g[..., 2 * cell : 3 * cell], g[..., 3 * cell :]
    if g.device.type == "cpu":
        j.mul_(2.0)
        g.sigmoid_()  # σ(i), σ(2j), σ(f), σ(o)
        c.mul_(f).addcmul_(i, j, value=2.0).sub_(i)  # σ(f)·c + σ(i)·(2σ(2j) − 1)
    else:
        i.sigmoid_()
        j.tanh_()
        g[..., 2 * cell :].sigmoid_()
        c.mul_(f).addcmul_(i, j)
    if cell_clip is not None:
        c.clamp_(-cell_clip, cell_clip)
    return o.mul_(torch.tanh(c))
