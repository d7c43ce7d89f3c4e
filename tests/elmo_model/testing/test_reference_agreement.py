"""The production biLM equals the plain reference implementation across model shapes."""

import pytest
import torch

from elmo_model.model.chars import batch_char_ids
from elmo_model.testing.reference import ReferenceBiLm
from elmo_model.testing import step_by_step
from elmo_model.formats.weights import bilm_arrays

from support import random_bilm

SENTENCES = [
    ["The", "bank", "raised", "rates", "."],
    ["They", "sat", "on", "the", "river", "bank", "all", "afternoon", "long"],
    ["Ünïcödé", "𝔘", "x" * 70],
    ["one"],
]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"activation": "tanh", "use_skip_connections": False},
        {"n_layers": 3},
        {"projection_dim": 32},  # no LSTM projection (dim == projection_dim)
        {"filters": ((1, 8), (2, 8)), "projection_dim": 16, "lstm_dim": 24},  # no token projection
        {"cell_clip": None, "proj_clip": None, "n_highway": 0},
    ],
)
def test_model_equals_reference(overrides):
    """In float64, so that any difference is a real one and not rounding amplified by the LSTM."""
    model = random_bilm(**overrides).double()
    reference = ReferenceBiLm(model.options, bilm_arrays(model), dtype=torch.float64)
    ids = torch.from_numpy(batch_char_ids(SENTENCES, add_boundaries=True)).long()
    with torch.no_grad():
        got = model(ids).layers
    expected = reference(ids)
    assert len(got) == model.options.n_layers + 1
    for layer, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=f"layer {layer}")


def test_clipping_is_exercised():
    """With the random weights used above the cell and projection clips are really active."""
    model = random_bilm()
    lstm = model.forward_layers[0]
    x = torch.randn(8, 30, 16)
    inputs = torch.nn.functional.linear(x, lstm.input_weight, lstm.bias)
    c_unclipped = torch.sigmoid(inputs[..., :32]) * torch.tanh(inputs[..., 32:64])
    assert (c_unclipped.abs() > 0.5).any()
    out, _ = step_by_step.lstm_steps(lstm, x, [8] * 30)
    assert (out.abs() >= 3.0 - 1e-6).any(), "proj_clip never reached: the test weights are too small"


def test_float32_model_within_1e5_of_reference():
    model = random_bilm()
    reference = ReferenceBiLm(model.options, bilm_arrays(model))
    ids = torch.from_numpy(batch_char_ids(SENTENCES[:2], add_boundaries=True)).long()
    with torch.no_grad():
        for a, b in zip(model(ids).layers, reference(ids)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
