"""The biLM's state and output dataclasses."""

import torch

from elmo_model.model.state import BiLmOutput, BiLmState


def test_select_takes_batch_rows_in_the_order_given():
    h = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # (dirs, layers, batch, dim)
    c = -h
    picked = BiLmState(h, c).select(torch.tensor([3, 0]))
    assert torch.equal(picked.h, h[:, :, [3, 0]]) and torch.equal(picked.c, c[:, :, [3, 0]])


def test_direction_outputs_are_the_halves_of_a_layer():
    layer = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    out = BiLmOutput([layer, layer + 1], torch.ones(2, 3, dtype=torch.bool), layer[..., :4], BiLmState(layer, layer))
    forward, backward = out.direction_outputs(-1)
    assert torch.equal(forward, (layer + 1)[..., :4]) and torch.equal(backward, (layer + 1)[..., 4:])
