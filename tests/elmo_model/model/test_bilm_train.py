"""The training path's packing and forward: the layout indexes what it says, and without dropout
the training forward gives the inference path's layers and state."""

import torch

from elmo_model.model.bilm_train import train_forward, train_forward_paired
from elmo_model.model.chars import batch_char_ids
from elmo_model.model.packing import Packing

from support import random_bilm

SENTENCES = [["a", "long", "sentence", "here"], ["short"], ["mid", "size", "one"]]


def test_packing_lists_each_step_of_the_sorted_rows():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    p = Packing.build(mask)
    assert p.order.tolist() == [1, 0, 2, 3] and p.batch_sizes == [3, 2, 1, 1]
    # entry order: step 0 of rows 1, 0, 2; step 1 of rows 1, 0; steps 2, 3 of row 1
    assert p.forward_index.tolist() == [4, 0, 8, 5, 1, 6, 7]
    assert p.backward_index.tolist() == [7, 1, 8, 6, 0, 5, 4]  # each row read from its end
    assert p.last_entry.tolist() == [6, 4, 2] and p.ended_rows.tolist() == [1, 0, 2]


def test_training_forward_without_dropout_equals_inference():
    bilm = random_bilm().double().eval()
    ids = torch.from_numpy(batch_char_ids(SENTENCES, add_boundaries=True)).long()
    with torch.no_grad():
        expected = bilm(ids)  # the packed inference path
    got = train_forward(bilm, ids)
    for a, b in zip(got.layers, expected.layers):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    torch.testing.assert_close(got.state.h, expected.state.h, atol=1e-12, rtol=0)
    torch.testing.assert_close(got.state.c, expected.state.c, atol=1e-12, rtol=0)


def test_paired_forward_reads_each_direction_on_its_own_rows():
    bilm = random_bilm().double().eval()
    ids = torch.from_numpy(batch_char_ids([["w"] * 5] * 4)).long()  # 2 forward + 2 backward windows, full
    fwd_top, bwd_top, _ = train_forward_paired(bilm, ids)
    with torch.no_grad():
        whole = bilm(ids)
    forward, backward = whole.direction_outputs(-1)
    torch.testing.assert_close(fwd_top, forward[:2], atol=1e-12, rtol=0)
    torch.testing.assert_close(bwd_top, backward[2:], atol=1e-12, rtol=0)
