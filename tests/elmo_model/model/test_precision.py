"""``precision="auto"``: bf16 where the device has bf16 matrix units, fp32 elsewhere (the capability
check patched both ways: correctness does not depend on the machine the tests run on), and bf16
weights converted once per version of the weights, not on every call."""

import h5py
import numpy as np
import pytest
import torch

from elmo_model.model import precision as precision_module
from elmo_model.model import token_encoder
from elmo_model.infer.dump import write_embeddings
from elmo_model.infer.embedder import SentenceEmbedder
from elmo_model.model.precision import PRECISION_BOUNDS, bf16_matrix_units, layer_errors, resolve_precision
from elmo_model.formats.weights import load_bilm

SENTENCES = [["The", "bank", "raised", "rates", "."], ["They", "sat", "on", "the", "river", "bank", "."]]


@pytest.fixture
def amx(monkeypatch):
    """Make this CPU report AMX (True) or no bf16 instructions at all (False)."""
    def set_amx(value: bool) -> None:
        monkeypatch.setattr(precision_module, "cpu_bf16_isa", lambda: "AMX" if value else None)
    return set_amx


@pytest.mark.parametrize("isa, expected", [("AMX", "bf16"), ("AVX512-BF16", "bf16"), (None, "fp32")])
def test_auto_chooses_by_the_cpus_matrix_units(monkeypatch, isa, expected, tiny_files, caplog):
    monkeypatch.setattr(precision_module, "cpu_bf16_isa", lambda: isa)
    assert bf16_matrix_units("cpu")[0] is (isa is not None)
    chosen, why = resolve_precision("auto", "cpu")
    assert chosen == expected
    assert why == (f"auto: a CPU with {isa}" if isa else "auto: a CPU without AMX or AVX512-BF16")
    model = load_bilm(*tiny_files)
    with caplog.at_level("INFO", logger="elmo_model.infer.embedder"):
        embedder = SentenceEmbedder(model, precision="auto")
    assert embedder.precision == expected
    assert f"precision {expected} (auto: a CPU" in caplog.text
    explicit = SentenceEmbedder(model, precision=expected)(SENTENCES)
    for a, b in zip(embedder(SENTENCES), explicit):  # auto runs exactly what it chose
        np.testing.assert_array_equal(a, b)


def test_auto_on_a_gpu_follows_the_compute_capability(monkeypatch):
    for capability, expected in (((8, 0), "bf16"), ((7, 5), "fp32"), ((9, 0), "bf16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        chosen, why = resolve_precision("auto", "cuda")
        assert chosen == expected and f"compute capability {capability[0]}.{capability[1]}" in why


def test_explicit_precisions_are_themselves_and_bad_ones_name_the_choices(amx):
    amx(True)
    assert resolve_precision("fp32", "cpu") == ("fp32", "asked for")  # auto only changes auto
    assert resolve_precision("int8", "cpu")[0] == "int8"
    with pytest.raises(ValueError, match="auto"):
        resolve_precision("fp8", "cpu")


def test_bf16_token_encoder_converts_its_weights_once_per_version(tiny_files, monkeypatch):
    model = load_bilm(*tiny_files)
    built = []
    real = token_encoder.PreparedEncoder

    class Counting(real):
        def __init__(self, *args):
            built.append(1)
            super().__init__(*args)

    monkeypatch.setattr(token_encoder, "PreparedEncoder", Counting)
    embedder = SentenceEmbedder(model, precision="bf16")
    first = embedder(SENTENCES)
    embedder(SENTENCES)
    embedder([["more", "words"]])
    assert len(built) == 1  # three calls, one conversion
    exact = SentenceEmbedder(model)(SENTENCES)
    max_diff, min_cosine = PRECISION_BOUNDS["bf16"]
    assert all(d <= max_diff and c >= min_cosine for d, c in layer_errors(exact, first))
    with torch.no_grad():
        model.token_encoder.highways[0].transform.weight.mul_(0.5)  # new weights: converted again
    changed = embedder(SENTENCES)
    assert len(built) == 2
    assert not np.allclose(changed[0][0], first[0][0], atol=1e-3)


def test_bf16_matrix_products_run_in_bf16_and_the_cells_in_fp32(tiny_files, monkeypatch):
    """The prepared path really multiplies in bf16 (not float32 with a cast at the end)."""
    model = load_bilm(*tiny_files)
    seen = []
    real_mm = torch.mm

    def spy(a, b, *args, **kwargs):
        seen.append((a.dtype, b.dtype))
        return real_mm(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "mm", spy)
    SentenceEmbedder(model, precision="bf16")(SENTENCES)
    assert seen and all(dtypes == (torch.bfloat16, torch.bfloat16) for dtypes in seen)


def test_dump_records_the_precision_that_ran(tiny_files, tmp_path, amx):
    amx(False)
    out = tmp_path / "auto.hdf5"
    write_embeddings([" ".join(s) for s in SENTENCES], out, load_bilm(*tiny_files), precision="auto",
                     progress=False)
    with h5py.File(out) as f:
        assert f.attrs["precision"] == "fp32"
        assert f["0"].shape == (3, 5, 32)
