"""The biLM's training (autograd) forward over a packed, time-major layout.

Both directions of a layer run together in :func:`elmo_model.model.lstm_train.run_packed_train`, so
padding positions cost nothing, nothing is concatenated per step and each step is a few batched
kernels. Same results as ``BiLm``'s step-by-step path, dropout included: the masks are drawn
with the same generator calls in the same order (forward stack layer by layer, then backward)
over the same ``(batch, steps, dim)`` shapes, and applied to the same (row, step) positions.
"""

from __future__ import annotations


import torch

from elmo_model.model.lstm_train import packed_dropout_masks, run_packed_train
from elmo_model.model.packing import Packing
from elmo_model.model.state import BiLmOutput, BiLmState


def train_forward(bilm, char_ids: torch.Tensor, state=None):
    """``BiLm.forward`` under autograd (``bilm`` a :class:`elmo_model.model.bilm.BiLm`) → ``BiLmOutput``."""

    batch, steps, _ = char_ids.shape
    mask = char_ids[:, :, 0] > 0  # (batch, tokens)
    tokens = bilm.token_encoder(char_ids)  # (batch, tokens, proj)
    packing = Packing.build(mask)
    outputs, new_state = _run_layers(bilm, tokens, packing, state, batch, steps)
    layers = [torch.cat([tokens, tokens], dim=-1)]
    for out in outputs:
        dim = out.shape[2]
        unpacked = out.new_zeros(batch * steps, 2, dim)
        unpacked[packing.forward_index, 0] = out[0]
        unpacked[packing.backward_index, 1] = out[1]
        layers.append(unpacked.view(batch, steps, 2 * dim))
    return BiLmOutput(layers, mask, tokens, new_state)


def train_forward_paired(bilm, char_ids: torch.Tensor, state=None):
    """Each direction on its own windows, under autograd: ``char_ids (2B, T, chars)`` without
    padding, rows ``[0, B)`` for the forward LSTMs and ``[B, 2B)`` for the backward ones (as
    stream training reads them). Returns the top layer's forward outputs on the first rows and
    backward outputs on the others, each ``(B, T, proj)``, and the new state ``(2, L, B, ·)``.
    Same numbers as :func:`train_forward` on all ``2B`` rows for the halves it returns, with
    half the LSTM work (dropout masks are drawn over ``B`` rows, so they differ from that run's)."""
    rows, steps, _ = char_ids.shape
    if rows % 2 or not bool((char_ids[:, :, 0] > 0).all()):
        raise ValueError("paired windows: an even number of rows, every position a token")
    batch = rows // 2
    tokens = bilm.token_encoder(char_ids)  # (2B, T, proj)
    packing = Packing.paired(batch, steps, char_ids.device)
    outputs, new_state = _run_layers(bilm, tokens, packing, state, batch, steps)
    top = outputs[-1].unflatten(1, (steps, batch))  # (2, T, B, proj): entry t·B + b
    return top[0].transpose(0, 1), top[1].flip(0).transpose(0, 1), new_state


def _run_layers(bilm, tokens: torch.Tensor, packing: Packing, state, batch: int, steps: int):
    """The LSTM stacks over the packed tokens → per-layer ``(2, N, proj)`` outputs and the new
    state (``batch`` rows per direction, in the caller's row order)."""

    options = bilm.options
    if state is None:
        state = bilm.zero_state(batch, tokens)
    n_layers = options.n_layers
    masks = None
    if bilm.dropout and bilm.training:
        # The step-by-step path draws, per stack, one mask per layer over (batch, steps, dim).
        dims = [lstm.input_weight.shape[1] for lstm in bilm.forward_layers]
        drawn = [packed_dropout_masks((batch, steps, d), bilm.dropout, 1, tokens)[0]
                 for _ in range(2) for d in dims]
        masks = [torch.stack([drawn[k].reshape(batch * steps, -1)[packing.sorted_index],
                              drawn[n_layers + k].reshape(batch * steps, -1)[packing.sorted_index]])
                 for k in range(n_layers)]  # per layer (2, N, dim)
    flat = tokens.reshape(-1, tokens.shape[-1])
    x = torch.stack([flat[packing.forward_index], flat[packing.backward_index]])  # (2, N, proj)
    order, n_running = packing.order, packing.last_entry.numel()
    outputs, h_final, c_final = [], [], []
    for k in range(n_layers):
        lstms = [bilm.forward_layers[k], bilm.backward_layers[k]]
        h0, c0 = state.h[:, k][:, order], state.c[:, k][:, order]  # (2, batch, ·), sorted
        layer_in = x * masks[k] if masks is not None else x
        out, c = run_packed_train(lstms, layer_in, packing.batch_sizes, h0, c0)
        h = torch.cat([out[:, packing.last_entry], h0[:, n_running:]], dim=1)  # pre-skip, sorted
        h_final.append(h)
        c_final.append(c)
        if k > 0 and options.use_skip_connections:
            out = out + x
        outputs.append(out)
        x = out
    restore = torch.argsort(order)
    new_state = BiLmState(torch.stack(h_final, dim=1)[:, :, restore], torch.stack(c_final, dim=1)[:, :, restore])
    return outputs, new_state
