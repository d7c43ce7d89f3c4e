import pytest
import torch

from elmo_model.infer.elmo import Elmo, add_sentence_boundaries, batch_to_ids
from elmo_model.model.scalar_mix import ScalarMix

from support import random_bilm

SENTENCES = [["I", "ate", "an", "apple"], ["Apple", "shares", "rose", "sharply", "today"]]


def test_representations_are_the_scalar_mix_of_layers_without_boundaries():
    model = random_bilm()
    elmo = Elmo.from_bilm(model, 2, dropout=0.0, scalar_mix_parameters=[0.1, -0.3, 0.7])
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        out = elmo(ids)
        layers = model(add_sentence_boundaries(ids)).layers
    weights = torch.softmax(torch.tensor([0.1, -0.3, 0.7]), 0)
    mask = out["mask"]
    assert mask.tolist() == [[True] * 4 + [False], [True] * 5]
    for b, sentence in enumerate(SENTENCES):
        n = len(sentence)
        expected = sum(w * layer[b, 1 : n + 1] for w, layer in zip(weights, layers))
        for rep in out["elmo_representations"]:
            assert rep.shape == (2, 5, 32)
            torch.testing.assert_close(rep[b, :n], expected, atol=1e-6, rtol=0)
    assert (out["elmo_representations"][0][0, 4] == 0).all()


def test_keep_sentence_boundaries():
    elmo = Elmo.from_bilm(random_bilm(), 1, dropout=0.0, keep_sentence_boundaries=True)
    out = elmo(batch_to_ids(SENTENCES))
    assert out["elmo_representations"][0].shape == (2, 7, 32)
    assert out["mask"].sum(1).tolist() == [6, 7]


def test_requires_grad_false_freezes_bilm_but_mix_trains():
    elmo = Elmo.from_bilm(random_bilm(), 1)
    assert not any(p.requires_grad for p in elmo.bilm.parameters())
    assert all(p.requires_grad for p in elmo.scalar_mixes.parameters())
    elmo.train()
    loss = elmo(batch_to_ids(SENTENCES))["elmo_representations"][0].sum()
    loss.backward()
    assert elmo.scalar_mixes[0].scalar_parameters.grad is not None


def test_scalar_mix_formula_and_layer_norm():
    torch.manual_seed(0)
    layers = [torch.randn(2, 4, 3) * (k + 1) + k for k in range(3)]
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    mix = ScalarMix(3, initial_scalar_parameters=[1.0, 2.0, 3.0])
    with torch.no_grad():
        mix.gamma.fill_(0.5)
    w = torch.softmax(torch.tensor([1.0, 2.0, 3.0]), 0)
    torch.testing.assert_close(mix(layers), 0.5 * sum(wi * x for wi, x in zip(w, layers)))
    normed = ScalarMix(3, do_layer_norm=True)(layers, mask)
    for b in range(2):  # each sentence normalised over its own unmasked values
        n = int(mask[b].sum())
        expected = 0
        for x in layers:
            values = x[b, :n]
            expected = expected + (values - values.mean()) / values.std(unbiased=False) / 3
        torch.testing.assert_close(normed[b, :n], expected, atol=1e-5, rtol=0)


def test_scalar_mix_rejects_wrong_layer_count():
    with pytest.raises(ValueError):
        ScalarMix(3)([torch.zeros(1, 1, 1)] * 2)
