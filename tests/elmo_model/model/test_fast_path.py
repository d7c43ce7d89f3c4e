"""The inference fast path (packed LSTM, trimmed char-CNN, embedder windows, token cache)
gives the reference's numbers. Speed is the benchmarks' business, not the tests'."""

import numpy as np
import pytest
import torch

from elmo_model.model.bilm import BiLmState
from elmo_model.model.chars import batch_char_ids
from elmo_model.infer.embedder import SentenceEmbedder
from elmo_model.testing.reference import ReferenceBiLm
from elmo_model.model.distinct import distinct_rows
from elmo_model.model.token_encoder import pool_trimmed
from elmo_model.testing import step_by_step
from elmo_model.formats.weights import bilm_arrays, load_bilm

from support import odd_char_ids, random_bilm

SENTENCES = [
    ["The", "bank", "raised", "rates", "."],
    ["They", "sat", "on", "the", "river", "bank", "all", "afternoon", "long", "."],
    ["x" * 47, "y" * 48, "z" * 60, "Ünïcödé", "a"],  # tokens filling all 50 char slots
    ["one"],
]


def _ids(sentences):
    return torch.from_numpy(batch_char_ids(sentences, add_boundaries=True)).long()


def _random_state(model, batch, seed=1):
    o = model.options
    g = torch.Generator().manual_seed(seed)
    dtype = model.token_encoder.char_embedding.weight.dtype
    return BiLmState(torch.randn(2, o.n_layers, batch, o.projection_dim, generator=g, dtype=dtype),
                     torch.randn(2, o.n_layers, batch, o.lstm_dim, generator=g, dtype=dtype))


def _autograd_path(model, ids, state=None):
    """The training path (autograd on), run on a copy whose weights do not require grad."""
    with torch.enable_grad():
        return model(ids, state)


@pytest.mark.parametrize("overrides", [
    {}, {"n_layers": 3, "activation": "tanh"}, {"projection_dim": 32},
    {"filters": ((1, 8), (2, 8)), "projection_dim": 16, "lstm_dim": 24},
    {"cell_clip": None, "proj_clip": None, "n_highway": 0, "use_skip_connections": False},
])
def test_fast_path_equals_reference_and_training_path(overrides):
    model = random_bilm(**overrides).double().requires_grad_(False)
    ids = _ids(SENTENCES)
    ids = torch.cat([ids, torch.zeros_like(ids[:1])])  # plus an all-padding row
    with torch.inference_mode():
        fast = model(ids)
    slow = _autograd_path(model, ids)
    expected = ReferenceBiLm(model.options, bilm_arrays(model), dtype=torch.float64)(ids)
    for k, (a, b, c) in enumerate(zip(fast.layers, slow.layers, expected)):
        torch.testing.assert_close(a, c, atol=1e-10, rtol=0, msg=f"layer {k}")
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=f"layer {k}")
    torch.testing.assert_close(fast.state.h, slow.state.h, atol=1e-10, rtol=0)
    torch.testing.assert_close(fast.state.c, slow.state.c, atol=1e-10, rtol=0)


def test_fast_path_with_initial_state_equals_training_path():
    model = random_bilm().double().requires_grad_(False)
    ids = _ids(SENTENCES)
    state = _random_state(model, len(SENTENCES))
    with torch.no_grad():
        fast = model(ids, state)
    slow = _autograd_path(model, ids, state)
    for a, b in zip(fast.layers, slow.layers):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    torch.testing.assert_close(fast.state.h, slow.state.h, atol=1e-10, rtol=0)
    torch.testing.assert_close(fast.state.c, slow.state.c, atol=1e-10, rtol=0)


def test_training_path_still_has_gradients():
    model = random_bilm()
    model.train()
    out = model(_ids(SENTENCES))
    out.layers[-1].sum().backward()
    assert model.forward_layers[0].recurrent_weight.grad is not None
    assert model.token_encoder.convolutions[0].weight.grad is not None


def test_fast_path_under_autocast_runs_in_low_precision():
    """bf16 autocast (CPU here; CUDA the same code): the fast path stays within bf16 error."""
    model = random_bilm().requires_grad_(False)
    ids = _ids(SENTENCES)
    with torch.inference_mode():
        exact = model(ids).layers
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(ids).layers
    assert low[-1].dtype == torch.bfloat16
    for a, b in zip(low, exact):
        torch.testing.assert_close(a.float(), b, atol=0.25, rtol=0)


def test_trimmed_convolution_equals_full_convolution():
    """Any char ids, not only well-formed tokens: padding inside, full rows, all-padding rows."""
    encoder = random_bilm(filters=((1, 3), (3, 5), (7, 8))).double().token_encoder
    ids, _ = odd_char_ids()
    with torch.no_grad():
        expected = torch.cat([step_by_step.pool_conv1d(encoder, chunk) for chunk in ids.split(7)])
        for chunk in (1, 3, 128):
            torch.testing.assert_close(pool_trimmed(encoder, ids, chunk), expected, atol=1e-12, rtol=0)


def test_distinct_rows_matches_unique():
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 4, (300, 6), generator=g)
    distinct, inverse = distinct_rows(rows)
    assert torch.equal(distinct[inverse], rows)
    assert len(distinct) == len(torch.unique(rows, dim=0))
    big = rows * 2**20  # out of the hash's range: falls back to torch.unique
    distinct, inverse = distinct_rows(big)
    assert torch.equal(distinct[inverse], big)


def _whole(model, sentences):
    with torch.no_grad():
        layers = model(_ids(sentences)).layers
    stacked = torch.stack(layers, dim=1).float().numpy()  # (batch, L+1, T, D)
    return [stacked[b, :, 1 : len(s) + 1] for b, s in enumerate(sentences)]


@pytest.mark.parametrize("window", [3, 4, 7, 1024])
@pytest.mark.parametrize("cache", [0, 50])
def test_embedder_windows_and_cache_equal_whole_sentences(window, cache):
    """Long sentences go window by window with carried states: the vectors do not change."""
    model = random_bilm().double()
    embed = SentenceEmbedder(model, window_tokens=window, token_cache_size=cache)
    for sentences in (SENTENCES, SENTENCES[::-1]):
        for got, expected in zip(embed(sentences), _whole(model, sentences)):
            np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    assert not torch.is_inference_mode_enabled()


def test_iter_long_streams_the_same_vectors():
    model = random_bilm().double()
    sentence = [w for s in SENTENCES for w in s] * 3
    pieces = list(SentenceEmbedder(model, window_tokens=8).iter_long(sentence))
    assert len(pieces) == -(-(len(sentence) + 2) // 8)
    assert all(p.shape[1] <= 8 for p in pieces)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), _whole(model, [sentence])[0], atol=1e-6, rtol=0)


def test_stateful_embedder_with_long_sentences_equals_unwindowed():
    model = random_bilm().double()
    windowed = SentenceEmbedder(model, stateful=True, window_tokens=4)
    plain = SentenceEmbedder(model, stateful=True)
    for batch in (SENTENCES, SENTENCES[:2], SENTENCES[::-1], SENTENCES[1:]):
        for a, b in zip(windowed(batch), plain(batch)):
            np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_token_cache_forgets_when_weights_change():
    model = random_bilm()
    embed = SentenceEmbedder(model, token_cache_size=100)
    before = embed(SENTENCES[:1])[0]
    with torch.no_grad():
        model.token_encoder.projection.weight.mul_(2.0)
    after = embed(SENTENCES[:1])[0]
    np.testing.assert_allclose(after, _whole(model, SENTENCES[:1])[0], atol=1e-5, rtol=0)
    assert np.abs(after - before).max() > 1e-3


def test_fixture_stateful_through_windows(tiny_files, tiny_dir, tiny_sentences):
    """The original's stateful outputs, with every sentence split into windows of 4 positions."""
    import h5py

    embed = SentenceEmbedder(load_bilm(*tiny_files), stateful=True, window_tokens=4, token_cache_size=64)
    for i in range(10):
        batch = [tiny_sentences[k][i].split() for k in range(3)]
        for k, vectors in enumerate(embed(batch)):
            with h5py.File(tiny_dir / f"lm_embeddings_{k}.hdf5", "r") as fin:
                both = fin[str(i)][...]
            np.testing.assert_allclose(vectors[-1], np.concatenate([both[0], both[1]], -1), atol=1e-5)


def test_first_layer_gates_per_distinct_token_equal_the_reference(monkeypatch):
    """Repeated tokens: layer 1's input gates come from a table of distinct tokens (checked to be
    used), with the reference's numbers; and the same with the table turned off."""
    from elmo_model.model import packed_lstm

    model = random_bilm().double().requires_grad_(False)
    sentences = [["the", "bank", "the", "bank", "."], ["the", "river", "bank", "."] * 3, ["bank"]]
    ids = _ids(sentences)
    state = _random_state(model, len(sentences))
    expected = ReferenceBiLm(model.options, bilm_arrays(model), dtype=torch.float64)(ids)
    used = []
    monkeypatch.setattr(packed_lstm, "DISTINCT_MIN_WEIGHTS", 1)  # this model is below the size where it pays
    worth_it = packed_lstm.DistinctRows.worth_it
    monkeypatch.setattr(packed_lstm.DistinctRows, "worth_it",
                        lambda self, n, cell: used.append((self.table.shape[0], n)) or worth_it(self, n, cell))
    with torch.inference_mode():
        from_zero, with_table = model(ids), model(ids, state)
        monkeypatch.setattr(packed_lstm, "DISTINCT_MAX_SHARE", 0.0)
        without = model(ids, state)
    assert used[0] == (7, 24)  # <S> </S> the bank . river + the padding row, of 24 positions
    for k, (a, c) in enumerate(zip(from_zero.layers, expected)):
        torch.testing.assert_close(a, c, atol=1e-10, rtol=0, msg=f"layer {k}")
    for k, (a, b) in enumerate(zip(with_table.layers, without.layers)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=f"layer {k}")
    torch.testing.assert_close(with_table.state.c, without.state.c, atol=1e-10, rtol=0)


def test_distinct_rows_of_vectors_is_exact():
    from elmo_model.model.packed_lstm import DistinctRows

    rows = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [0.0, 0.0], [3.0, 4.0], [1.0, 2.0000002]])  # the next float32 after 2
    found = DistinctRows.of(rows, [torch.tensor([0, 2, 5]), torch.tensor([4, 1, 3])])
    assert found.table.shape[0] == 4
    assert torch.equal(found.table[found.index[0]], rows[[0, 2, 5]])
    assert torch.equal(found.table[found.index[1]], rows[[4, 1, 3]])
    assert DistinctRows.of(torch.tensor([[float("nan"), 1.0]] * 2), [torch.tensor([0, 1])]) is None
