"""The biLM's training (autograd) forward over a packed, time-major layout.

Both directions of a layer run together in :func:`elmo_model.lstm_train.run_packed_train`, so
padding positions cost nothing, nothing is concatenated per step and each step is a few batched
kernels. Same results as ``BiLm``'s step-by-step path, dropout included: the masks are drawn
with the same generator calls in the same order (forward stack layer by layer, then backward)
over the same ``(batch, steps, dim)`` shapes, and applied to the same (row, step) positions.
"""

from __future__ import annotations

import dataclasses

import torch

from elmo_model.lstm_train import packed_dropout_masks, run_packed_train


@dataclasses.dataclass
class TrainPacking:
    """Where each (step, sorted row) lives in the packed time-major layout.

    ``forward_index``/``backward_index``: flat ``row·T + position`` in the batch that packed entry
    ``e`` reads for the forward / backward direction; ``sorted_index``: ``sorted_row·T + step``
    (where the step-by-step path's dropout mask for that entry lives).
    """

    order: torch.Tensor  # (batch,) original row of each sorted row (longest first, stable)
    batch_sizes: list[int]
    forward_index: torch.Tensor  # (N,)
    backward_index: torch.Tensor  # (N,)
    sorted_index: torch.Tensor  # (N,)
    last_entry: torch.Tensor  # (rows with tokens,) packed entry of each sorted row's last step

    @classmethod
    def build(cls, mask: torch.Tensor) -> TrainPacking:
        batch, steps = mask.shape
        lengths = mask.sum(dim=1)
        order = torch.argsort(lengths, descending=True, stable=True)
        sorted_lengths = lengths[order]
        valid = torch.arange(steps, device=mask.device).unsqueeze(1) < sorted_lengths.unsqueeze(0)  # (T, B)
        t, b = valid.nonzero(as_tuple=True)  # time-major order
        rows = order[b]
        entry = torch.arange(t.numel(), device=mask.device)
        is_last = t == sorted_lengths[b] - 1
        last_entry = torch.empty(int((sorted_lengths > 0).sum()), dtype=torch.long, device=mask.device)
        last_entry[b[is_last]] = entry[is_last]
        return cls(
            order=order,
            batch_sizes=[n for n in valid.sum(dim=1).tolist() if n > 0],
            forward_index=rows * steps + t,
            backward_index=rows * steps + (sorted_lengths[b] - 1 - t),
            sorted_index=b * steps + t,
            last_entry=last_entry,
        )


def train_forward(bilm, char_ids: torch.Tensor, state=None):
    """``BiLm.forward`` under autograd (``bilm`` a :class:`elmo_model.bilm.BiLm`) → ``BiLmOutput``."""
    from elmo_model.bilm import BiLmOutput, BiLmState

    options = bilm.options
    batch, steps, _ = char_ids.shape
    mask = char_ids[:, :, 0] > 0  # (batch, tokens)
    tokens = bilm.token_encoder(char_ids)  # (batch, tokens, proj)
    packing = TrainPacking.build(mask)
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
    flat = tokens.reshape(batch * steps, -1)
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
    layers = [torch.cat([tokens, tokens], dim=-1)]
    for out in outputs:
        dim = out.shape[2]
        unpacked = out.new_zeros(batch * steps, 2, dim)
        unpacked[packing.forward_index, 0] = out[0]
        unpacked[packing.backward_index, 1] = out[1]
        layers.append(unpacked.view(batch, steps, 2 * dim))
    new_state = BiLmState(torch.stack(h_final, dim=1)[:, :, restore], torch.stack(c_final, dim=1)[:, :, restore])
    return BiLmOutput(layers, mask, tokens, new_state)
