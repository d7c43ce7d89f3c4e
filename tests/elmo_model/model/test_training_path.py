"""The fast training path (trimmed char-CNN, packed LSTM with a hand-written backward, fused
softmax loss) gives the step-by-step oracle's (:mod:`elmo_model.testing.step_by_step`) losses and
gradients, parameter by parameter.
Speed is the benchmarks' business (benchmarks/train_path_bench.py), not the tests'."""

import pytest
import torch

from elmo_model.model.bilm import BiLmState
from elmo_model.model.chars import batch_char_ids
from elmo_model.model.language_model import BiLmWithSoftmax
from elmo_model.model.token_encoder import PAD_ID, pool_trimmed
from elmo_model.testing import step_by_step

from support import odd_char_ids, random_bilm

N_VOCAB = 40
SENTENCES = [
    ["The", "bank", "raised", "rates", "."],
    ["They", "sat", "on", "the", "river", "bank", "all", "afternoon", "long", "."],
    ["x" * 47, "y" * 48, "z" * 60, "Ünïcödé", "a"],  # tokens filling all 50 char slots
    ["one"],
    ["the", "bank", "."],
]


def _ids(sentences=SENTENCES):
    return torch.from_numpy(batch_char_ids(sentences, add_boundaries=True)).long()


def _token_ids(char_ids, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, N_VOCAB, char_ids.shape[:2], generator=g) * (char_ids[:, :, 0] > 0)


def _lm(dropout=0.3, seed=0, **overrides):
    """A biLM whose random weights make the clipping act, with a softmax, in float64."""
    bilm = random_bilm(seed, **overrides)
    lm = BiLmWithSoftmax(bilm.options, N_VOCAB, dropout)
    lm.bilm.load_state_dict(bilm.state_dict())
    return lm.double().train()


def _grads(module):
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def _assert_same_grads(a, b, atol):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


def _loss_and_grads(lm, fast, char_ids, token_ids, sampled_seed=None):
    module = lm if fast else step_by_step.StepByStepLm(lm)
    lm.zero_grad(set_to_none=True)
    torch.manual_seed(123)  # the same dropout masks for both paths
    sampled = None
    if sampled_seed is not None:
        sampled = lm.softmax.sample(12, torch.Generator().manual_seed(sampled_seed))
    loss = module(char_ids, token_ids, sampled)
    loss.loss.backward()
    return float(loss.forward_nll), float(loss.backward_nll), _grads(lm)


def test_the_trimmed_char_cnn_gives_the_loss_and_gradients_of_conv1d_over_every_position():
    """Any char ids, not only well-formed tokens: padding inside a token, full rows, all-padding
    and all-zero rows; chunks of 1, 3 and 128 tokens; with and without autograd."""
    encoder = random_bilm(filters=((1, 3), (3, 5), (7, 8))).double().token_encoder
    ids, g = odd_char_ids()
    pool_weights = torch.randn(40, encoder.highways_dim, generator=g, dtype=torch.float64)
    encoder.zero_grad(set_to_none=True)
    expected = torch.cat([step_by_step.pool_conv1d(encoder, rows) for rows in ids.split(7)])  # all 50 positions
    (expected * pool_weights).sum().backward()
    expected_grads = _grads(encoder)
    for chunk in (1, 3, 128):
        encoder.zero_grad(set_to_none=True)
        pooled = pool_trimmed(encoder, ids, chunk)
        (pooled * pool_weights).sum().backward()
        torch.testing.assert_close(pooled, expected, atol=1e-12, rtol=0)
        _assert_same_grads(_grads(encoder), expected_grads, atol=1e-12)
        with torch.no_grad():
            torch.testing.assert_close(pool_trimmed(encoder, ids, chunk), expected, atol=1e-12, rtol=0)
    assert expected_grads["char_embedding.weight"][PAD_ID].abs().sum() > 0  # the padding row learns

    weights = torch.randn(40, encoder.output_dim, generator=g, dtype=torch.float64) * (ids[:, :1] > 0)  # positions
    encoder.zero_grad(set_to_none=True)
    (encoder.encode_distinct(ids) * weights).sum().backward()
    fast = _grads(encoder)
    encoder.zero_grad(set_to_none=True)
    (step_by_step.token_vectors(encoder, ids.unsqueeze(0))[0] * weights).sum().backward()
    _assert_same_grads(fast, _grads(encoder), atol=1e-10)


@pytest.mark.parametrize("sampled_seed", [None, 3])
@pytest.mark.parametrize("overrides", [
    {}, {"n_layers": 3, "activation": "tanh"},
    {"cell_clip": None, "proj_clip": None, "n_highway": 0, "use_skip_connections": False},
    {"lstm_dim": 16, "projection_dim": 16},  # no LSTM projection
])
def test_fast_training_path_gives_the_same_losses_and_gradients(overrides, sampled_seed):
    """Dropout on (the same masks), full and sampled softmax (log-Q, accidental hits)."""
    lm = _lm(**overrides)
    char_ids = _ids()
    token_ids = _token_ids(char_ids)
    slow = _loss_and_grads(lm, False, char_ids, token_ids, sampled_seed)
    fast = _loss_and_grads(lm, True, char_ids, token_ids, sampled_seed)
    assert fast[0] == pytest.approx(slow[0], abs=1e-10)
    assert fast[1] == pytest.approx(slow[1], abs=1e-10)
    _assert_same_grads(fast[2], slow[2], atol=1e-10)
    assert len(fast[2]) == len(list(lm.parameters()))  # every parameter has a gradient


def test_fast_training_path_float32_within_float_tolerance():
    lm = _lm().float()
    char_ids = _ids()
    token_ids = _token_ids(char_ids)
    slow = _loss_and_grads(lm, False, char_ids, token_ids, 3)
    fast = _loss_and_grads(lm, True, char_ids, token_ids, 3)
    assert fast[0] == pytest.approx(slow[0], rel=1e-5)
    _assert_same_grads(fast[2], slow[2], atol=2e-5)


def test_fast_training_path_state_in_and_out_with_gradients():
    """An initial state that requires grad; outputs, final state and every gradient agree."""
    bilm = random_bilm().double().train()  # no dropout
    char_ids = _ids()
    o = bilm.options
    g = torch.Generator().manual_seed(1)
    batch = char_ids.shape[0]
    h0 = torch.randn(2, o.n_layers, batch, o.projection_dim, generator=g, dtype=torch.float64)
    c0 = torch.randn(2, o.n_layers, batch, o.lstm_dim, generator=g, dtype=torch.float64) * 3
    results = {}
    for fast in (False, True):
        forward = bilm if fast else (lambda ids, state: step_by_step.bilm_forward(bilm, ids, state))
        bilm.zero_grad(set_to_none=True)
        h, c = h0.clone().requires_grad_(), c0.clone().requires_grad_()
        out = forward(char_ids, BiLmState(h, c))
        g = torch.Generator().manual_seed(2)
        total = sum((layer * torch.randn(layer.shape, generator=g, dtype=layer.dtype)).sum() for layer in out.layers)
        total = total + (out.state.h * torch.randn(out.state.h.shape, generator=g, dtype=h.dtype)).sum()
        total = total + (out.state.c * torch.randn(out.state.c.shape, generator=g, dtype=h.dtype)).sum()
        total.backward()
        results[fast] = out, _grads(bilm), h.grad, c.grad
    slow, fast = results[False], results[True]
    for a, b in zip(fast[0].layers, slow[0].layers):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    torch.testing.assert_close(fast[0].state.h, slow[0].state.h, atol=1e-10, rtol=0)
    torch.testing.assert_close(fast[0].state.c, slow[0].state.c, atol=1e-10, rtol=0)
    _assert_same_grads(fast[1], slow[1], atol=1e-10)
    torch.testing.assert_close(fast[2], slow[2], atol=1e-10, rtol=0)
    torch.testing.assert_close(fast[3], slow[3], atol=1e-10, rtol=0)
