"""Every inference fast path against a reference: the packed LSTM with directions on threads of
their own, the prepared-weight cache, the AllenNLP-style batched reference of the benchmarks, the
opt-in low precisions (within their stated bounds) and the default batch sizes."""

import numpy as np
import pytest
import torch

from elmo_model.testing.batched_reference import BatchedReferenceBiLm
from benchmarks.shapes import SHAPES, random_model
from elmo_model.model import packed_lstm
from elmo_model.model.chars import batch_char_ids
from elmo_model.infer.embedder import SentenceEmbedder, default_batch_size
from elmo_model.model.precision import PRECISION_BOUNDS, layer_errors
from elmo_model.testing.reference import ReferenceBiLm
from elmo_model.formats.weights import bilm_arrays, load_bilm

from support import random_bilm

SENTENCES = [
    ["The", "bank", "raised", "rates", "."],
    ["They", "sat", "on", "the", "river", "bank", "all", "afternoon", "long", "."],
    ["x" * 47, "y" * 48, "z" * 60, "Ünïcödé", "a"],
    ["one"],
    ["a", "b", "c", "d", "e", "f", "g"],
]


def _ids(sentences):
    return torch.from_numpy(batch_char_ids(sentences, add_boundaries=True)).long()


@pytest.fixture
def two_threads(monkeypatch):
    """Directions on threads of their own even for test-sized weights."""
    monkeypatch.setattr(packed_lstm, "PARALLEL_MIN_WEIGHTS", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_directions_on_threads_equal_reference(two_threads, dtype, atol):
    # float64: any weights; float32: the benchmarks' non-chaotic random weights (fixture shape)
    model = random_bilm(lstm_dim=48).double() if dtype == torch.float64 else random_model(SHAPES["fixture"])
    model.requires_grad_(True)  # as loaded from a file
    ids = _ids(SENTENCES)
    with torch.inference_mode():
        fast = model(ids).layers
    assert torch.get_num_threads() == 2  # restored after the threaded layer
    expected = ReferenceBiLm(model.options, bilm_arrays(model), dtype=dtype)(ids)
    for k, (a, b) in enumerate(zip(fast, expected)):
        torch.testing.assert_close(a, b, atol=atol, rtol=0, msg=f"layer {k}")


def test_threaded_directions_under_no_grad_keep_no_graph(two_threads):
    model = random_bilm()
    with torch.no_grad():
        layers = model(_ids(SENTENCES)).layers
    assert not any(layer.requires_grad for layer in layers)


def test_prepared_weights_follow_parameter_changes():
    model = random_bilm().double()
    ids = _ids(SENTENCES)
    with torch.inference_mode():
        model(ids)  # prepares (caches) the LSTM weights
    with torch.no_grad():
        model.forward_layers[1].recurrent_weight.mul_(1.5)
        model.backward_layers[0].bias.add_(0.25)
    with torch.inference_mode():
        fast = model(ids).layers
    expected = ReferenceBiLm(model.options, bilm_arrays(model), dtype=torch.float64)(ids)
    for a, b in zip(fast, expected):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def _agree(model, ids, atol, dtype=torch.float32):
    arrays = bilm_arrays(model)
    batched = BatchedReferenceBiLm(model.options, arrays, dtype)(ids)
    oracle = ReferenceBiLm(model.options, arrays, dtype)(ids)
    with torch.inference_mode():
        production = model(ids).layers
    for k, (a, b, c) in enumerate(zip(batched, oracle, production)):
        torch.testing.assert_close(a, b, atol=atol, rtol=0, msg=f"layer {k} vs oracle")
        torch.testing.assert_close(a, c, atol=atol, rtol=0, msg=f"layer {k} vs production")


def test_batched_reference_equals_oracle_and_production_on_fixture(tiny_files):
    _agree(load_bilm(*tiny_files).eval(), _ids(SENTENCES), 1e-5)


@pytest.mark.parametrize("overrides", [{}, {"cell_clip": None, "proj_clip": None, "use_skip_connections": False},
                                       {"n_layers": 3, "activation": "tanh", "n_highway": 0}])
def test_batched_reference_equals_oracle_on_random_models(overrides):
    # float64: random_bilm's weights are chaotic enough to amplify float32 rounding past 1e-5
    _agree(random_bilm(**overrides).double().requires_grad_(False), _ids(SENTENCES), 1e-10, torch.float64)


def test_batched_reference_equals_production_on_small_shape():
    _agree(random_model(SHAPES["small"]).requires_grad_(False), _ids(SENTENCES[:2]), 1e-5)


@pytest.mark.slow
def test_batched_reference_equals_production_on_original_shape():
    _agree(random_model(SHAPES["original"]).requires_grad_(False), _ids(SENTENCES[:3]), 1e-5)


def _corpus_sentences(n):
    from benchmarks.corpus import real_sentences

    return real_sentences(n, seed=5)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("model_name", ["fixture", "small"])
def test_low_precision_within_stated_bounds(precision, model_name, tiny_files):
    if model_name == "fixture":
        model = load_bilm(*tiny_files)
        sentences = _corpus_sentences(12)
    else:
        model = random_model(SHAPES["small"]).requires_grad_(False)
        sentences = _corpus_sentences(4)
    exact = SentenceEmbedder(model)(sentences)
    low = SentenceEmbedder(model, precision=precision)(sentences)
    errors = layer_errors(exact, low)
    max_diff, min_cosine = PRECISION_BOUNDS[precision]
    for k, (diff, cosine) in enumerate(errors):
        assert diff <= max_diff and cosine >= min_cosine, (precision, k, diff, cosine)
    if precision == "int8":
        assert errors[0] == (0.0, pytest.approx(1.0))  # the char-CNN stays float32
        assert errors[-1][0] > 0  # really quantized


def test_fp32_precision_is_the_default_and_bad_precision_is_refused():
    model = random_bilm()
    a = SentenceEmbedder(model)(SENTENCES)
    b = SentenceEmbedder(model, precision="fp32")(SENTENCES)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="precision must be one of"):
        SentenceEmbedder(model, precision="fp8")


def test_default_batch_size_is_bounded_and_grows_with_the_model():
    sizes = {name: default_batch_size(options) for name, options in SHAPES.items()}
    assert all(isinstance(v, int) and v >= 1 for v in sizes.values())
    assert sizes["fixture"] <= sizes["small"] <= sizes["original"]
