"""A very long line: embedded window by window with the same vectors as the
whole line at once, every LSTM direction running once per position (work linear in the length),
the vectors going to disk as they come (memory bounded by a window). Nothing here is timed
(``elmo dump`` stopped by SIGTERM: tests/pipelines/commands/test_dump_command.py)."""

import json
import tracemalloc

import h5py
import numpy as np
import pytest
import torch

from benchmarks.corpus import make_sentences
from elmo_model.model.chars import batch_char_ids
from elmo_model.infer.dump import write_embeddings
from elmo_model.infer.embedder import WINDOW_TOKENS, SentenceEmbedder
from elmo_model.formats.weights import load_bilm

from support import random_bilm

DIRECTIONS = {"contextualize": 2, "backward_final_state": 1, "contextualize_direction": 1}


def _count_positions(bilm) -> list[int]:
    """Count the positions × directions the biLM's LSTMs run over (its inference entry points)."""
    counter = [0, 0]  # positions × directions, calls
    for name, directions in DIRECTIONS.items():
        method = getattr(bilm, name, None)
        if method is None:
            continue

        def counted(tokens, *args, _method=method, _directions=directions, **kwargs):
            counter[0] += int(tokens.shape[1]) * _directions
            counter[1] += 1
            return _method(tokens, *args, **kwargs)

        setattr(bilm, name, counted)
    return counter


def _whole_line(model, tokens):
    """The reference: the whole line through the biLM at once, no windows."""
    ids = torch.from_numpy(batch_char_ids([tokens], add_boundaries=True)).long()
    with torch.no_grad():
        layers = model(ids).layers
    return torch.stack(layers)[:, 0, 1 : len(tokens) + 1].float().numpy()  # (L+1, n, D)


def test_long_line_has_the_whole_lines_vectors():
    """Windows of 8 positions, double precision: every path equals the unwindowed line, and the
    reference windowing (iter_long)."""
    model = random_bilm().double()
    line = make_sentences(1, 61, 61, seed=3)[0]  # 63 positions: 7 full windows and one of 7
    expected = _whole_line(model, line)
    embedder = SentenceEmbedder(model, window_tokens=8)
    np.testing.assert_allclose(embedder([line])[0], expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.concatenate(list(embedder.iter_long(line)), axis=1), expected, atol=1e-6, rtol=0)
    short = ["a", "b"]  # mixed with short sentences, in any order
    got = embedder([short, line, short[:1]])
    np.testing.assert_allclose(got[1], expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got[0], _whole_line(model, short), atol=1e-6, rtol=0)


def test_stateful_long_lines_carry_the_same_state():
    model = random_bilm().double()
    lines = make_sentences(3, 20, 40, seed=4)
    windowed, plain = SentenceEmbedder(model, stateful=True, window_tokens=8), SentenceEmbedder(model, stateful=True)
    for batch in (lines, lines[:2], lines[::-1]):
        for a, b in zip(windowed(batch), plain(batch)):
            np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["all", "top", "average"])
def test_dump_of_a_long_line_equals_the_whole_line(tiny_files, tmp_path, mode):
    """elmo dump's writer with the default windows (1,024 positions) on a 2,500-token line of the
    fixture model, beside a short line."""
    model = load_bilm(*tiny_files)
    line = make_sentences(1, 2_500, 2_500, seed=5)[0]
    assert len(line) + 2 > 2 * WINDOW_TOKENS
    out = tmp_path / "out.hdf5"
    write_embeddings(["a short line", " ".join(line)], out, model, mode=mode, progress=False)
    layers = _whole_line(model, line)
    expected = {"all": layers, "top": layers[-1], "average": layers.mean(0)}[mode]
    with h5py.File(out, "r") as fin:
        got = fin["1"][...]
        assert json.loads(fin["sentence_to_index"][0])[" ".join(line)] == "1"
        short = fin["0"][...]
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    short_layers = _whole_line(model, "a short line".split())
    np.testing.assert_allclose(short, {"all": short_layers, "top": short_layers[-1],
                                       "average": short_layers.mean(0)}[mode], atol=1e-5, rtol=0)


def test_work_is_linear_and_memory_does_not_grow(tmp_path):
    """For n and 2n tokens: the LSTMs run over exactly 2 × (n + 2) positions (each direction once
    per position, <S> and </S> included), in one call per window and direction; the arrays the
    writer allocates do not grow with the line (tracemalloc traces numpy's)."""
    model = random_bilm()
    seen = {}
    for n in (8_000, 16_000):
        line = " ".join(make_sentences(1, n, n, seed=6)[0])
        counter = _count_positions(model)
        tracemalloc.start()
        try:
            write_embeddings([line], tmp_path / f"{n}.hdf5", model, progress=False)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        for name in DIRECTIONS:  # unwrap
            model.__dict__.pop(name, None)
        windows = -(-(n + 2) // WINDOW_TOKENS)
        assert counter == [2 * (n + 2), 2 * windows], (n, counter)
        seen[n] = peak
        output = 3 * n * 32 * 4  # (L+1, n, 2·proj) float32
        assert peak < output / 2, f"{peak / 2**20:.1f} MiB traced for a {output / 2**20:.1f} MiB output"
    assert seen[16_000] < 1.5 * seen[8_000] + 2**20, seen
