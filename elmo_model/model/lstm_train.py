"""The training (autograd) path of the projected LSTM: whole sequences as one autograd node.

:class:`elmo_model.model.lstm.ProjectedLstm` run step by step under autograd records ~20 graph nodes
per step, and slicing step ``t`` out of the precomputed input gates makes autograd allocate and
zero a full-size gradient per step (quadratic in the length). Here the recurrence of several
same-shaped LSTMs (the two directions of a layer) over packed, time-major inputs is one
:class:`torch.autograd.Function` whose backward is written out by hand (backpropagation through
time): per step two batched matrix products forward and two backward, and the weight gradients
as one large matrix product each over all steps. Same arithmetic as the step-by-step oracle (``elmo_model.testing.step_by_step.lstm_steps``)
(exact ``tanh``/``sigmoid``; TF's gate order ``i, j, f, o``; clipping with ``clamp``'s gradient).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from elmo_model.model.lstm import ProjectedLstm


def stacked_weights(lstms: Sequence[ProjectedLstm]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The LSTMs' weights stacked along a leading direction axis (differentiable).

    Returns ``input_weight (D, input, 4·cell)``, ``bias (D, 1, 4·cell)`` with ``forget_bias``
    added to the ``f`` block, ``recurrent_weight (D, 4·cell, out)`` and ``projection
    (D, out, cell)`` or ``None``.
    """
    first = lstms[0]
    cell = first.cell_dim
    forget = torch.zeros(4 * cell, dtype=first.bias.dtype, device=first.bias.device)
    forget[2 * cell : 3 * cell] = first.forget_bias
    input_weight = torch.stack([lstm.input_weight for lstm in lstms]).transpose(1, 2)
    bias = torch.stack([lstm.bias for lstm in lstms]).unsqueeze(1) + forget
    recurrent = torch.stack([lstm.recurrent_weight for lstm in lstms])
    projection = None if first.projection is None else torch.stack([lstm.projection for lstm in lstms])
    return input_weight, bias, recurrent, projection


def run_packed_train(
    lstms: Sequence[ProjectedLstm],
    inputs: torch.Tensor,
    batch_sizes: Sequence[int],
    h0: torch.Tensor,
    c0: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable twin of :func:`elmo_model.model.lstm.run_packed` (same layout, same results).

    ``inputs (D, N, input)`` packed time-major (step ``t``'s rows ``[0, batch_sizes[t])``, rows
    sorted longest first), ``h0 (D, B, out)``, ``c0 (D, B, cell)``. Returns ``outputs (D, N, out)``
    and the final cells ``(D, B, cell)`` (a row keeps its cell after its last step). Gradients
    flow to the inputs, the LSTMs' parameters, ``h0`` and ``c0``.
    """
    first = lstms[0]
    input_weight, bias, recurrent, projection = stacked_weights(lstms)
    gates_x = torch.baddbmm(bias, inputs, input_weight)  # (D, N, 4·cell): one GEMM for all steps
    device_type = inputs.device.type
    if torch.is_autocast_enabled(device_type):
        # Under autocast the big input GEMM above runs in low precision; the recurrence, with its
        # in-place kernels writing into preallocated buffers, keeps its state, cells and gradients
        # in the weights' dtype. On CPU (bf16 training) its matrix products run in the autocast
        # dtype too; GPU workers keep them in the weights' dtype.
        dtype = recurrent.dtype
        low = torch.get_autocast_dtype(device_type) if device_type == "cpu" else None
        with torch.autocast(device_type, enabled=False):
            return _PackedLstm.apply(gates_x.to(dtype), recurrent, projection, h0.to(dtype), c0.to(dtype),
                                     tuple(batch_sizes), first.cell_clip, first.proj_clip, low)
    return _PackedLstm.apply(gates_x, recurrent, projection, h0, c0, tuple(batch_sizes),
                             first.cell_clip, first.proj_clip)


class _PackedLstm(torch.autograd.Function):
    """``(gates_x, recurrent, projection, h0, c0) → (outputs, c_final)`` with a hand-written BPTT."""

    @staticmethod
    def forward(ctx, gates_x, recurrent, projection, h0, c0, batch_sizes, cell_clip, proj_clip, low=None):
        n_dirs, total, four_cell = gates_x.shape
        cell = four_cell // 4
        out_dim = recurrent.shape[2]
        recurrent_t = recurrent.transpose(1, 2)  # (D, out, 4·cell)
        projection_t = None if projection is None else projection.transpose(1, 2)  # (D, cell, out)
        if low is not None:  # converted once per forward, contiguous: bf16 matrix-unit kernels' form
            recurrent_t = recurrent_t.to(low).contiguous()
            projection_t = None if projection_t is None else projection_t.to(low).contiguous()
        acts = torch.empty_like(gates_x)  # σ(i), tanh(j), σ(f), σ(o) per packed row
        cells = gates_x.new_empty(n_dirs, total, cell)  # c_t after clipping
        tanh_cells = torch.empty_like(cells)
        outputs = gates_x.new_empty(n_dirs, total, out_dim)
        h_prev = torch.empty_like(outputs)  # the h each step's recurrent product used
        cell_ok = torch.empty_like(cells, dtype=torch.bool) if cell_clip is not None else None
        proj_ok = torch.empty_like(outputs, dtype=torch.bool) if (projection is not None and proj_clip is not None) else None
        c = c0.clone()
        offset, previous = 0, -1
        for n in batch_sizes:
            rows = slice(offset, offset + n)
            h = h0[:, :n] if previous < 0 else outputs[:, previous : previous + n]
            h_prev[:, rows] = h
            g = acts[:, rows]
            if low is None:
                torch.baddbmm(gates_x[:, rows], h, recurrent_t, out=g)
            else:
                torch.add(gates_x[:, rows], torch.bmm(h.to(low), recurrent_t), out=g)
            i, j, f, o = g[..., :cell], g[..., cell : 2 * cell], g[..., 2 * cell : 3 * cell], g[..., 3 * cell :]
            i.sigmoid_()
            j.tanh_()
            g[..., 2 * cell :].sigmoid_()
            c_n = c[:, :n]
            c_n.mul_(f).addcmul_(i, j)
            if cell_clip is not None:
                cell_ok[:, rows] = c_n.abs() <= cell_clip
                c_n.clamp_(-cell_clip, cell_clip)
            cells[:, rows] = c_n
            th = tanh_cells[:, rows]
            torch.tanh(c_n, out=th)
            m = o * th
            out = outputs[:, rows]
            if projection is None:
                out.copy_(m)
            else:
                if low is None:
                    torch.bmm(m, projection_t, out=out)
                else:
                    out.copy_(torch.bmm(m.to(low), projection_t))
                if proj_clip is not None:
                    proj_ok[:, rows] = out.abs() <= proj_clip
                    out.clamp_(-proj_clip, proj_clip)
            previous, offset = offset, offset + n
        ctx.batch_sizes = batch_sizes
        ctx.low = low
        ctx.has_projection = projection is not None
        ctx.save_for_backward(recurrent, projection, c0, acts, cells, tanh_cells, h_prev, cell_ok, proj_ok)
        return outputs, c

    @staticmethod
    def backward(ctx, grad_outputs, grad_c):
        recurrent, projection, c0, acts, cells, tanh_cells, h_prev, cell_ok, proj_ok = ctx.saved_tensors
        low = ctx.low
        mm = torch.bmm if low is None else _low_bmm(low)
        recurrent_mm = recurrent if low is None else recurrent.to(low)
        projection_mm = projection if (low is None or projection is None) else projection.to(low)
        n_dirs, total, four_cell = acts.shape
        cell = four_cell // 4
        batch = c0.shape[1]
        out_dim = recurrent.shape[2]
        if grad_outputs is None:
            grad_outputs = acts.new_zeros(n_dirs, total, out_dim)
        d_gates = torch.empty_like(acts)
        d_h = acts.new_zeros(n_dirs, batch, out_dim)  # from the next step's recurrent product
        d_c = grad_c.clone() if grad_c is not None else acts.new_zeros(n_dirs, batch, cell)
        d_proj_in = torch.empty_like(h_prev) if projection is not None else None  # dL/d(P·m) per row
        offsets = [0]
        for n in ctx.batch_sizes:
            offsets.append(offsets[-1] + n)
        for step in range(len(ctx.batch_sizes) - 1, -1, -1):
            n, start = ctx.batch_sizes[step], offsets[step]
            rows = slice(start, start + n)
            dh = grad_outputs[:, rows] + d_h[:, :n]
            if projection is not None:
                if proj_ok is not None:
                    dh.mul_(proj_ok[:, rows])
                d_proj_in[:, rows] = dh
                dm = mm(dh, projection_mm)  # (D, n, cell)
            else:
                dm = dh
            a = acts[:, rows]
            i, j, f, o = a[..., :cell], a[..., cell : 2 * cell], a[..., 2 * cell : 3 * cell], a[..., 3 * cell :]
            th = tanh_cells[:, rows]
            dg = d_gates[:, rows]
            di, dj, df, do = dg[..., :cell], dg[..., cell : 2 * cell], dg[..., 2 * cell : 3 * cell], dg[..., 3 * cell :]
            torch.mul(dm, th, out=do)
            do.mul_(o * (1 - o))
            dc = d_c[:, :n]
            dc.addcmul_(dm, o * (1 - th * th))
            if cell_ok is not None:
                dc.mul_(cell_ok[:, rows])
            c_prev = c0[:, :n] if step == 0 else cells[:, offsets[step - 1] : offsets[step - 1] + n]
            torch.mul(dc, j, out=di)
            di.mul_(i * (1 - i))
            torch.mul(dc, i, out=dj)
            dj.mul_(1 - j * j)
            torch.mul(dc, c_prev, out=df)
            df.mul_(f * (1 - f))
            dc.mul_(f)
            if low is None:
                torch.bmm(dg, recurrent, out=d_h[:, :n])
            else:
                d_h[:, :n] = mm(dg, recurrent_mm)
        grad_recurrent = mm(d_gates.transpose(1, 2), h_prev)  # (D, 4·cell, out)
        grad_projection = None
        if projection is not None:
            m = acts[..., 3 * cell :] * tanh_cells  # σ(o) ⊙ tanh(c) per row
            grad_projection = mm(d_proj_in.transpose(1, 2), m)  # (D, out, cell)
        return d_gates, grad_recurrent, grad_projection, d_h, d_c, None, None, None, None


def _low_bmm(low: torch.dtype):
    """``bmm`` of float32 operands with the product in ``low``, the result float32."""
    def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a.to(low), b.to(low)).float()
    return bmm


def packed_dropout_masks(shape: tuple[int, int, int], p: float, n_masks: int, like: torch.Tensor) -> list[torch.Tensor]:
    """``n_masks`` dropout masks ``(batch, steps, dim)`` scaled by ``1/(1-p)``, drawn exactly as
    ``F.dropout`` draws them (same generator calls, same order)."""
    masks = [torch.empty(shape, dtype=like.dtype, device=like.device) for _ in range(n_masks)]
    for mask in masks:
        if p >= 1:
            mask.zero_()
        else:
            mask.bernoulli_(1 - p).div_(1 - p)
    return masks

