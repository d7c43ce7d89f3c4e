"""Stateless by default: a sentence's vectors do not depend on its batch, padding or history."""

import torch

from elmo_model.model.chars import batch_char_ids
from elmo_model.infer.elmo import Elmo, batch_to_ids

from support import random_bilm

SENTENCES = [["a", "short", "one"], ["and", "a", "rather", "longer", "sentence", "with", "words"], ["x"]]


def _layers(model, sentences):
    ids = torch.from_numpy(batch_char_ids(sentences, add_boundaries=True)).long()
    with torch.no_grad():
        return model(ids).layers


def test_batch_and_padding_invariance():
    model = random_bilm()
    together = _layers(model, SENTENCES)
    for b, sentence in enumerate(SENTENCES):
        alone = _layers(model, [sentence])
        n = len(sentence) + 2
        for k in range(len(alone)):
            torch.testing.assert_close(together[k][b, :n], alone[k][0, :n], atol=1e-5, rtol=0)
            assert (together[k][b, n:] == 0).all()


def test_order_and_repeated_calls_do_not_matter():
    model = random_bilm()
    first = _layers(model, SENTENCES)
    _layers(model, [["something", "else"]] * 5)
    reversed_out = _layers(model, SENTENCES[::-1])
    for k in range(len(first)):
        torch.testing.assert_close(first[k][0], reversed_out[k][2, : first[k].shape[1]], atol=1e-5, rtol=0)


def test_elmo_stateful_differs_from_stateless_after_first_call():
    model = random_bilm()
    stateless = Elmo.from_bilm(model, 1, dropout=0.0)
    stateful = Elmo.from_bilm(model, 1, dropout=0.0, stateful=True)
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        a1, b1 = stateless(ids)["elmo_representations"][0], stateful(ids)["elmo_representations"][0]
        a2, b2 = stateless(ids)["elmo_representations"][0], stateful(ids)["elmo_representations"][0]
    torch.testing.assert_close(a1, b1)
    torch.testing.assert_close(a1, a2)
    assert (b2 - a2).abs().max() > 1e-3
    stateful.reset_states()
    with torch.no_grad():
        torch.testing.assert_close(stateful(ids)["elmo_representations"][0], a1)
