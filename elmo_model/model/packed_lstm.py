"""The inference (no-autograd) LSTM path: several same-shaped :class:`ProjectedLstm` (the two
directions of a layer) over inputs packed time-major, like a ``PackedSequence``.

Same arithmetic as the step-by-step oracle, :func:`elmo_model.testing.step_by_step.lstm_steps`. What makes it fast on CPU:

- the input half of the gates for a block of steps in one GEMM (:data:`GATE_BLOCK_ROWS` rows);
- the recurrent GEMM split into column blocks whose weights stay in L2 (:data:`RECURRENT_BLOCK_BYTES`);
- on the first layer, whose inputs are context-free token vectors, the input half of the gates
  once per *distinct* token of the batch (:class:`DistinctRows`; real text repeats words, so a
  batch of 64 sentences has about half as many distinct tokens as positions), then gathered;
- one ``sigmoid_`` for all four gates, cells and outputs updated in place in buffers made once
  per call (nothing allocated per step);
- the directions are independent for a whole layer, so with ``torch.get_num_threads() ≥ 2`` each
  runs on its own thread with ``threads // directions`` intra-op threads: the per-step GEMMs are
  small (batch rows × 512 on the original shape) and splitting one of them over two threads makes
  them wait for each other at every step — on a busy machine 2-5× slower than one thread.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch

from elmo_model.model.precision import Int8Linear, current_precision
from elmo_model.model.distinct import distinct_by_keys

if TYPE_CHECKING:
    from elmo_model.model.lstm import ProjectedLstm

# The input half of the gates is computed for blocks of at most this many packed rows at a time
# (one GEMM each): memory stays bounded on long inputs and the block is still in cache when used.
GATE_BLOCK_ROWS = 512
# On CPU the recurrent GEMM is split into column blocks whose weights fit in L2 (~2 MB): with one
# thread per direction that is ~1.8× faster for the original shape's 16384 × 512 weight.
RECURRENT_BLOCK_BYTES = 2 * 1024 * 1024
# Directions run on threads of their own only if a recurrent weight has this many entries (the
# small shape's 4096 × 128 and up); below, the per-step work is too small to pay for a thread.
PARALLEL_MIN_WEIGHTS = 2**19
# Input gates go through a table of distinct rows only for an input weight of at least
# DISTINCT_MIN_WEIGHTS entries (below, finding the distinct rows costs about what it saves), when
# the table saves at least a fifth of the rows, and while it (distinct rows × 4·cell per
# direction) stays within DISTINCT_TABLE_BYTES (4,096 distinct tokens of the original shape).
DISTINCT_MIN_WEIGHTS = 2**16
DISTINCT_MAX_SHARE = 0.8
DISTINCT_TABLE_BYTES = 256 * 1024 * 1024
_ALL = slice(None)


@dataclasses.dataclass
class DistinctRows:
    """``inputs[d] == table[index[d]]``: the packed inputs as rows of a table of distinct rows."""

    table: torch.Tensor  # (U, input_dim)
    index: torch.Tensor  # (D, N) rows of ``table``

    @staticmethod
    def pays_for(lstm: ProjectedLstm) -> bool:
        """Whether finding the distinct input rows can pay for ``lstm`` (a large enough input weight)."""
        return lstm.input_weight.numel() >= DISTINCT_MIN_WEIGHTS

    @classmethod
    def of(cls, rows: torch.Tensor, indices: Sequence[torch.Tensor]) -> DistinctRows | None:
        """The distinct rows of ``rows (n, dim)`` (bitwise equal), with ``index[d] = row ids of indices[d]``;
        ``None`` if they cannot be told apart cheaply (then every row is its own)."""
        if rows.shape[0] == 0:
            return None
        generator = torch.Generator().manual_seed(rows.shape[1])
        weights = torch.randn(rows.shape[1], generator=generator, dtype=torch.float64).to(rows.device)
        found = distinct_by_keys(rows, rows.double() @ weights)  # keys: a random projection
        if found is None:  # two different rows with one key (or NaN): no table
            return None
        table, inverse = found
        return cls(table, torch.stack([inverse[i] for i in indices]))

    def worth_it(self, n_rows: int, cell_dim: int) -> bool:
        """Whether gathering from a table of gates beats computing every row's gates."""
        table_bytes = self.table.shape[0] * 4 * cell_dim * self.table.element_size()
        return self.table.shape[0] <= DISTINCT_MAX_SHARE * n_rows and table_bytes <= DISTINCT_TABLE_BYTES


def run_packed(
    lstms: Sequence[ProjectedLstm],
    inputs: torch.Tensor,
    batch_sizes: Sequence[int],
    h0: torch.Tensor,
    c0: torch.Tensor,
    distinct: DistinctRows | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference only (no autograd): ``len(lstms)`` LSTMs over inputs packed time-major.

    ``inputs (D, N, input_dim)`` holds step ``t``'s rows ``[0, batch_sizes[t])`` at
    ``offset_t = Σ_{s<t} batch_sizes[s]``; rows are sorted longest first. ``h0 (D, B, out)``,
    ``c0 (D, B, cell)``. Returns ``outputs (D, N, out)`` packed the same way, and the final cells
    ``(D, B, cell)`` (rows keep their cell after their last step). ``distinct``, when given, says
    the same inputs as rows of a smaller table: the input gates are then computed per table row
    (where :meth:`DistinctRows.worth_it`). Under autocast the matrix
    products run in the autocast dtype; under :func:`elmo_model.model.precision.use_precision`
    ``("int8")`` in int8. The cells stay in ``c0``'s dtype.
    """
    device = inputs.device.type
    precision = current_precision()
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        if distinct is not None:
            distinct = DistinctRows(distinct.table.to(dtype), distinct.index)
        with torch.autocast(device, enabled=False):
            return _run_packed(lstms, inputs.to(dtype), batch_sizes, h0.to(dtype), c0, "fp32", distinct)
    if precision == "int8":
        inputs = inputs.float()
        distinct = None if distinct is None else DistinctRows(distinct.table.float(), distinct.index)
    return _run_packed(lstms, inputs, batch_sizes, h0.to(inputs.dtype), c0, precision, distinct)


def _run_packed(
    lstms: Sequence[ProjectedLstm],
    inputs: torch.Tensor,
    batch_sizes: Sequence[int],
    h0: torch.Tensor,
    c0: torch.Tensor,
    precision: str,
    distinct: DistinctRows | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`run_packed` with every matrix product in ``inputs.dtype`` (or int8)."""
    n_dirs, total, _ = inputs.shape
    first = lstms[0]
    outputs = inputs.new_empty(n_dirs, total, first.out_dim)
    c = c0.clone()
    if distinct is not None and not distinct.worth_it(total, first.cell_dim):
        distinct = None
    jobs = [
        _DirectionRun(_weights(lstm, inputs, precision), lstm.cell_clip, lstm.proj_clip, batch_sizes,
                      inputs[d], h0[d], c[d], outputs[d],
                      None if distinct is None else (distinct.table, distinct.index[d]))
        for d, lstm in enumerate(lstms)
    ]
    threads = torch.get_num_threads()
    parallel = (inputs.device.type == "cpu" and n_dirs > 1 and threads > 1
                and first.recurrent_weight.numel() >= PARALLEL_MIN_WEIGHTS)
    if parallel:
        _in_threads(jobs, threads)
    else:
        for job in jobs:
            job()
    return outputs, c


def _in_threads(jobs: Sequence[Callable[[], None]], threads: int) -> None:
    """Run ``jobs`` on threads of their own, each with ``threads // len(jobs)`` torch threads.

    torch's thread count is process-wide, so it is lowered for the duration and then restored;
    grad/inference mode is thread-local, so each job gets the caller's.
    """
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def run(job: Callable[[], None]) -> None:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            job()

    torch.set_num_threads(max(1, threads // len(jobs)))
    try:
        with ThreadPoolExecutor(len(jobs), thread_name_prefix="elmo-lstm") as pool:
            for future in [pool.submit(run, job) for job in jobs]:
                future.result()
    finally:
        torch.set_num_threads(threads)


class _Weights:
    """One LSTM's weights as the packed loop uses them, for one dtype/precision and device."""

    def __init__(self, lstm: ProjectedLstm, dtype: torch.dtype, device: torch.device, precision: str) -> None:
        bias = lstm.folded_bias().to(dtype)
        self.cell_dim, self.out_dim = lstm.cell_dim, lstm.out_dim
        self.int8 = precision == "int8"
        self.low = False
        self.has_projection = lstm.projection is not None
        if self.int8:
            self.input_q = Int8Linear(lstm.input_weight, bias)
            self.recurrent_q = Int8Linear(lstm.recurrent_weight)
            self.projection_q = None if lstm.projection is None else Int8Linear(lstm.projection)
            return
        self.bias = bias
        # float32 keeps the weights as stored, multiplied transposed (MKL's fast sgemm form); a low
        # precision gets them converted once, transposed and contiguous (the form that reaches the
        # bf16 matrix-unit kernels: ``x @ w_t``), the recurrent product in one block.
        self.low = dtype in (torch.bfloat16, torch.float16)
        layout = (lambda w: w.t().contiguous()) if self.low else (lambda w: w.t())
        self.input_t = layout(lstm.input_weight.detach().to(dtype))  # (input, 4·cell)
        recurrent = lstm.recurrent_weight.detach().to(dtype)
        columns = [_ALL]  # on a GPU, more kernel launches would cost more than cache misses
        if device.type == "cpu" and not self.low:
            columns = _column_blocks(4 * lstm.cell_dim, lstm.out_dim * recurrent.element_size())
        self.recurrent = [(cols, layout(recurrent[cols])) for cols in columns]  # (out, cols)
        self.projection_t = None if lstm.projection is None else layout(lstm.projection.detach().to(dtype))

    def input_gates(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """``out = x W_inᵀ + bias`` for rows ``x (rows, input)``."""
        if self.int8:
            out.copy_(self.input_q(x))
        else:
            torch.addmm(self.bias, x, self.input_t, out=out)

    def add_recurrent(self, gates: torch.Tensor, h: torch.Tensor) -> None:
        """``gates += h W_hᵀ``."""
        if self.int8:
            gates.add_(self.recurrent_q(h))
            return
        for cols, weight in self.recurrent:
            (gates if cols is _ALL else gates[:, cols]).addmm_(h, weight)

    def project(self, m: torch.Tensor, out: torch.Tensor) -> None:
        """``out = m Pᵀ`` (or ``m`` itself without a projection)."""
        if not self.has_projection:
            out.copy_(m)
        elif self.int8:
            out.copy_(self.projection_q(m))
        else:
            torch.mm(m, self.projection_t, out=out)


# Prepared weights per LSTM module, rebuilt when its parameters change (in place or moved).
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights(lstm: ProjectedLstm, like: torch.Tensor, precision: str) -> _Weights:
    params = [p for p in (lstm.input_weight, lstm.recurrent_weight, lstm.bias, lstm.projection) if p is not None]
    version = tuple((p._version, p.data_ptr()) for p in params)
    key = (precision, like.dtype, like.device)
    per_module = _CACHE.setdefault(lstm, {})
    cached = per_module.get(key)
    if cached is None or cached[0] != version:
        cached = (version, _Weights(lstm, like.dtype, like.device, precision))
        per_module.clear()  # one prepared copy per module: bounded memory
        per_module[key] = cached
    return cached[1]


class _DirectionRun:
    """One direction's whole pass over the packed steps, writing ``outputs`` and ``c`` in place."""

    def __init__(self, weights: _Weights, cell_clip: float | None, proj_clip: float | None,
                 batch_sizes: Sequence[int], inputs: torch.Tensor, h0: torch.Tensor, c: torch.Tensor,
                 outputs: torch.Tensor, table_index: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.w, self.cell_clip, self.proj_clip = weights, cell_clip, proj_clip
        self.batch_sizes, self.inputs, self.h0, self.c, self.outputs = batch_sizes, inputs, h0, c, outputs
        self.table_index = table_index

    def __call__(self) -> None:
        w, batch_sizes, inputs, outputs, c = self.w, self.batch_sizes, self.inputs, self.outputs, self.c
        total = inputs.shape[0]
        block_rows = min(total, max(GATE_BLOCK_ROWS, max(batch_sizes, default=0)))
        gates = inputs.new_empty(block_rows, 4 * w.cell_dim)  # buffers made once per call
        tanh_c = c.new_empty(c.shape)
        # low precision: σ(o)·tanh(c) into a contiguous buffer, the projection's fast input form
        m_buf = inputs.new_empty(c.shape[0], w.cell_dim) if w.low and w.has_projection else None
        gate_table = index = None
        if self.table_index is not None:  # the input gates of each distinct row, once
            table, index = self.table_index
            gate_table = inputs.new_empty(table.shape[0], 4 * w.cell_dim)
            w.input_gates(table, gate_table)
        offset, previous, block_start, block_end = 0, -1, 0, 0
        for step, n in enumerate(batch_sizes):
            if offset + n > block_end:  # the next block of input gates, starting at this step
                block_start, block_end = offset, _block_end(batch_sizes, step, offset, block_rows)
                if gate_table is None:
                    w.input_gates(inputs[block_start:block_end], gates[: block_end - block_start])
                else:
                    torch.index_select(gate_table, 0, index[block_start:block_end],
                                       out=gates[: block_end - block_start])
            g = gates[offset - block_start : offset - block_start + n]  # (n, 4·cell)
            h = self.h0[:n] if previous < 0 else outputs[previous : previous + n]  # (n, out)
            w.add_recurrent(g, h)
            m = _cell_inplace(g, c[:n], self.cell_clip, tanh_c[:n], None if m_buf is None else m_buf[:n])  # (n, cell)
            out = outputs[offset : offset + n]
            w.project(m, out)
            if self.proj_clip is not None and w.has_projection:
                out.clamp_(-self.proj_clip, self.proj_clip)
            previous, offset = offset, offset + n


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


def _cell_inplace(g: torch.Tensor, c: torch.Tensor, cell_clip: float | None, tanh_c: torch.Tensor,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """TF's cell on gates ``g (..., 4·cell)`` (forget bias already added), updating ``c`` in
    place; returns ``σ(o) ⊙ tanh(c)`` as a view into ``g``, or in ``out`` when given
    (``tanh_c``: a buffer like ``c``).

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
    torch.tanh(c, out=tanh_c)
    return o.mul_(tanh_c) if out is None else torch.mul(o, tanh_c, out=out)
