import math

import numpy as np
import torch

from elmo_model.model.softmax import LmSoftmax, LogUniformSampler, SampledClasses


def _softmax(n_vocab=50, dim=8, seed=0):
    torch.manual_seed(seed)
    layer = LmSoftmax(n_vocab, dim)
    with torch.no_grad():
        layer.bias.normal_()
    return layer


def test_log_uniform_probabilities_match_formula_and_draws():
    sampler = LogUniformSampler(1000)
    ids = torch.arange(1000)
    p = sampler.probability(ids).double()
    expected = torch.tensor([(math.log(k + 2) - math.log(k + 1)) / math.log(1001) for k in range(1000)])
    torch.testing.assert_close(p, expected.double(), rtol=1e-6, atol=0)
    assert abs(float(p.sum()) - 1.0) < 1e-6
    draws = sampler.draw(400_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=1000).double() / 400_000
    for k in (0, 1, 5, 50, 500):  # within 5 standard errors
        se = math.sqrt(float(p[k]) * (1 - float(p[k])) / 400_000)
        assert abs(float(freq[k] - p[k])) < 5 * se, k


def test_unique_sample_and_expected_count():
    sampler = LogUniformSampler(1000)
    ids, tries = sampler.sample_unique(100, torch.Generator().manual_seed(1))
    assert len(set(ids.tolist())) == 100 and tries >= 100
    # expected count: 1-(1-p)^tries, checked against simulation of `tries` draws
    gen = torch.Generator().manual_seed(2)
    hits = torch.zeros(1000)
    for _ in range(2000):
        hits += torch.bincount(sampler.draw(tries, gen).unique(), minlength=1000)
    simulated = hits / 2000
    expected = sampler.expected_count(torch.arange(1000), tries)
    assert float((simulated[:20] - expected[:20]).abs().max()) < 0.05


def test_all_classes_sampled_equals_full_softmax():
    layer = _softmax()
    hidden, targets = torch.randn(12, 8), torch.randint(0, 50, (12,))
    sampled = layer.sample(50)  # every class
    assert sampled.n_tries == -1
    torch.testing.assert_close(layer.sampled_nll(hidden, targets, sampled), layer.full_nll(hidden, targets))


def test_log_q_correction_and_accidental_hits_by_hand():
    layer = _softmax(n_vocab=20, dim=4)
    hidden = torch.randn(2, 4)
    targets = torch.tensor([3, 7])
    sampled = SampledClasses(torch.tensor([0, 3, 11]), n_tries=5)  # 3 is an accidental hit for row 0
    got = layer.sampled_nll(hidden, targets, sampled)
    q = lambda k: 1 - (1 - (math.log(k + 2) - math.log(k + 1)) / math.log(21)) ** 5
    total = 0.0
    for row, y in enumerate(targets.tolist()):
        logit = lambda k: float((hidden[row] @ layer.weight[k] + layer.bias[k]).detach()) - math.log(q(k))
        others = [logit(k) for k in (0, 3, 11) if k != y]
        all_logits = np.array([logit(y), *others])
        total += -(all_logits[0] - np.log(np.exp(all_logits).sum()))
    assert abs(float(got) - total) < 1e-4


def test_sampled_loss_approaches_full_loss_as_samples_grow():
    layer = _softmax(n_vocab=400, dim=8)
    hidden, targets = torch.randn(64, 8), torch.randint(0, 400, (64,))
    full = float(layer.full_nll(hidden, targets))
    errors = []
    for n in (20, 100, 399):
        gen = torch.Generator().manual_seed(n)
        estimates = [float(layer.sampled_nll(hidden, targets, layer.sample(n, gen))) for _ in range(20)]
        errors.append(abs(np.mean(estimates) - full))
    assert errors[2] < errors[0] and errors[2] < 0.02 * full
