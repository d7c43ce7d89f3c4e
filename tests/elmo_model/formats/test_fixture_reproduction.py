"""The model reproduces the original bilm-tf outputs stored in the fixture.

The fixture's lm_embeddings_k.hdf5 holds batch row k: dataset "i" is the top layer of
sentences[k][i] in batch i = (sentences[0][i], sentences[1][i], sentences[2][i]), shaped
(2 directions, n_tokens, proj) without <S>/</S>. The original carried LSTM state from batch i to
batch i+1, so only batch 0 is reproducible statelessly.
"""

import h5py
import numpy as np
import pytest
import torch

from elmo_model.model.chars import batch_char_ids
from elmo_model.infer.elmo import Elmo, batch_to_ids
from elmo_model.formats.weights import load_bilm

ATOL = 1e-5


def _expected(tiny_dir, row: int, batch: int) -> np.ndarray:
    with h5py.File(tiny_dir / f"lm_embeddings_{row}.hdf5", "r") as fin:
        both = fin[str(batch)][...]
    return np.concatenate([both[0], both[1]], axis=-1)  # (n_tokens, 2·proj)


def _batch(tiny_sentences, i: int) -> list[list[str]]:
    return [tiny_sentences[k][i].split() for k in range(3)]


@pytest.fixture(scope="module")
def bilm(tiny_files):
    return load_bilm(*tiny_files).eval()


def test_first_batch_stateless(bilm, tiny_dir, tiny_sentences):
    tokens = _batch(tiny_sentences, 0)
    ids = torch.from_numpy(batch_char_ids(tokens, add_boundaries=True)).long()
    with torch.no_grad():
        top = bilm(ids).layers[-1].numpy()
    for k, sentence in enumerate(tokens):
        np.testing.assert_allclose(top[k, 1 : len(sentence) + 1], _expected(tiny_dir, k, 0), atol=ATOL)


def test_all_batches_stateful(bilm, tiny_dir, tiny_sentences):
    state = None
    for i in range(10):
        tokens = _batch(tiny_sentences, i)
        ids = torch.from_numpy(batch_char_ids(tokens, add_boundaries=True)).long()
        with torch.no_grad():
            output = bilm(ids, state)
        state = output.state
        for k, sentence in enumerate(tokens):
            got = output.layers[-1][k, 1 : len(sentence) + 1].numpy()
            np.testing.assert_allclose(got, _expected(tiny_dir, k, i), atol=ATOL, err_msg=f"batch {i} row {k}")


def test_later_batches_differ_when_stateless(bilm, tiny_dir, tiny_sentences):
    """Guards the test above: the state really matters for batches after the first."""
    tokens = _batch(tiny_sentences, 1)
    ids = torch.from_numpy(batch_char_ids(tokens, add_boundaries=True)).long()
    with torch.no_grad():
        top = bilm(ids).layers[-1].numpy()
    assert np.abs(top[0, 1 : len(tokens[0]) + 1] - _expected(tiny_dir, 0, 1)).max() > 0.1


def test_elmo_module_stateful_matches_fixture(tiny_files, tiny_dir, tiny_sentences):
    """The public module's stateful mode with a top-layer-only mix gives the original's numbers."""
    elmo = Elmo(*tiny_files, 1, dropout=0.0, scalar_mix_parameters=[-1e9, -1e9, 1e9], stateful=True)
    for i in range(10):
        tokens = _batch(tiny_sentences, i)
        with torch.no_grad():
            rep = elmo(batch_to_ids(tokens))["elmo_representations"][0].numpy()
        for k, sentence in enumerate(tokens):
            np.testing.assert_allclose(rep[k, : len(sentence)], _expected(tiny_dir, k, i), atol=ATOL)


def test_token_encoder_matches_precomputed_token_embeddings(bilm, tiny_dir):
    words = (tiny_dir / "vocab_test.txt").read_text().strip().split("\n")
    with h5py.File(tiny_dir / "elmo_token_embeddings.hdf5", "r") as fin:
        expected = fin["embedding"][...]
    assert expected.shape[0] == len(words)
    ids = torch.from_numpy(batch_char_ids([words])).long()
    with torch.no_grad():
        got = bilm.token_encoder(ids)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=ATOL)
