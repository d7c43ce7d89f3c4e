import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from elmo_model.model.bilm import BiLm
from elmo_model.errors import ElmoError
from elmo_model.formats.weights import load_bilm, load_weights, read_options, save_options, save_weights


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as fin:
        fin.visititems(lambda name, obj: out.__setitem__(name, obj[...]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_load_save_load_is_bit_identical(tiny_files, tmp_path):
    options_file, weight_file = tiny_files
    model = load_bilm(options_file, weight_file)
    save_weights(model, tmp_path / "weights.hdf5")
    save_options(model.options, tmp_path / "options.json")
    original, written = _datasets(weight_file), _datasets(tmp_path / "weights.hdf5")
    assert original.keys() == written.keys()
    for name in original:
        assert original[name].dtype == written[name].dtype == np.float32
        assert np.array_equal(original[name], written[name]), name
    again = load_bilm(tmp_path / "options.json", tmp_path / "weights.hdf5")
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert read_options(tmp_path / "options.json") == model.options


def test_options_keep_unknown_keys_and_accept_261_characters(tiny_files, tmp_path):
    raw = json.loads(tiny_files[0].read_text())
    raw["char_cnn"]["n_characters"] = 261
    raw["n_tokens_vocab"] = 793471
    (tmp_path / "options.json").write_text(json.dumps(raw))
    options = read_options(tmp_path / "options.json")
    assert options.n_characters == 261 and options.extra == {"n_tokens_vocab": 793471}
    assert options.to_dict()["n_tokens_vocab"] == 793471
    load_bilm(tmp_path / "options.json", tiny_files[1])  # the same weights load under 261


def test_softmax_round_trip(tiny_files, tmp_path):
    model = load_bilm(*tiny_files)
    softmax = (np.random.rand(7, 16).astype(np.float32), np.random.rand(7).astype(np.float32))
    save_weights(model, tmp_path / "w.hdf5", softmax)
    assert load_weights(load_bilm(*tiny_files), tiny_files[1]) is None
    got = load_weights(BiLm(model.options), tmp_path / "w.hdf5")
    assert np.array_equal(got[0], softmax[0]) and np.array_equal(got[1], softmax[1])


def test_shape_mismatch_names_dataset_and_shapes(tiny_files, tmp_path):
    raw = json.loads(tiny_files[0].read_text())
    raw["lstm"]["dim"] = 128
    (tmp_path / "options.json").write_text(json.dumps(raw))
    with pytest.raises(ElmoError, match=r"W_0.*\(32, 256\).*expected \(32, 512\)"):
        load_bilm(tmp_path / "options.json", tiny_files[1])


def test_missing_dataset(tiny_files, tmp_path):
    target = tmp_path / "w.hdf5"
    shutil.copy(tiny_files[1], target)
    with h5py.File(target, "a") as f:
        del f["CNN_proj/W_proj"]
    with pytest.raises(ElmoError, match=r"w.hdf5.*'CNN_proj/W_proj' is missing"):
        load_bilm(tiny_files[0], target)


def test_corrupt_and_missing_files(tiny_files, tmp_path):
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(tiny_files[1].read_bytes()[:5000])
    with pytest.raises(ElmoError, match="truncated.hdf5: not a readable HDF5"):
        load_bilm(tiny_files[0], truncated)
    with pytest.raises(ElmoError, match="weights file not found: .*nope.hdf5"):
        load_bilm(tiny_files[0], tmp_path / "nope.hdf5")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ElmoError, match="bad.json: not valid JSON"):
        read_options(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text('{"lstm": {}}')
    with pytest.raises(ElmoError, match="wrong.json: not a valid ELMo options.json"):
        read_options(tmp_path / "wrong.json")


def test_wrong_options_values(tiny_files, tmp_path):
    raw = json.loads(tiny_files[0].read_text())
    raw["char_cnn"]["activation"] = "gelu"
    (tmp_path / "o.json").write_text(json.dumps(raw))
    with pytest.raises(ElmoError, match="o.json: char_cnn.activation"):
        read_options(tmp_path / "o.json")


def test_nan_weights_rejected(tiny_files, tmp_path):
    target = tmp_path / "w.hdf5"
    shutil.copy(tiny_files[1], target)
    with h5py.File(target, "a") as f:
        f["CNN/b_cnn_0"][0] = np.nan
    with pytest.raises(ElmoError, match="CNN/b_cnn_0.*NaN"):
        load_bilm(tiny_files[0], target)
