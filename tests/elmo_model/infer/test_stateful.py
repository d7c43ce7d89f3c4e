"""CarriedState: row k of a call starts where row k of the previous call ended."""

import torch

from elmo_model.infer.stateful import CarriedState
from elmo_model.model.state import BiLmState

from support import random_bilm


def test_rows_start_from_zero_then_continue_and_unseen_rows_are_kept():
    bilm = random_bilm()
    o = bilm.options
    carried = CarriedState(bilm)
    first = carried.take(2)
    assert first.h.shape == (2, o.n_layers, 2, o.projection_dim) and first.c.shape == (2, o.n_layers, 2, o.lstm_dim)
    assert not first.h.any() and not first.c.any()
    final = BiLmState(torch.full_like(first.h, 1.0), torch.full_like(first.c, 2.0))
    carried.keep(final)
    wider = carried.take(3)  # rows 0-1 continue, row 2 is new
    assert torch.equal(wider.h[:, :, :2], final.h) and not wider.h[:, :, 2].any()
    carried.keep(BiLmState(wider.h[:, :, :1] + 5, wider.c[:, :, :1] + 5))  # a one-row call
    again = carried.take(3)
    assert (again.h[:, :, 0] == 6).all() and (again.h[:, :, 1] == 1).all()  # row 1 kept from before
    carried.reset()
    assert not carried.take(3).h.any()
