"""Untrusted model files: options.json and weights.hdf5 come from object storage
and the internet. Every option is checked (type, range, memory) before anything is allocated, and
every dataset's declared shape before it is read; an impossible model fails at once with one line
naming the file and the option (or dataset)."""

import copy
import json
import shutil
import time
import tracemalloc

import h5py
import numpy as np
import pytest
import torch

from elmo_model.model.bilm import BiLm
from elmo_model.errors import ElmoError
from elmo_model.model.options import (DEFAULT_MAX_MODEL_BYTES, MAX_MODEL_BYTES_ENV, ElmoOptions, parameter_count)
from elmo_model.train.config import MODEL_PRESETS, TrainConfig
from elmo_model.formats.weights import load_bilm, load_weights, read_options, save_weights


MISSING = object()
BIG_ALLOCATION = 20 * 2**20  # bytes traced while refusing a file: a refusal allocates next to nothing


def _options(tiny_files, path: str, value) -> dict:
    raw = copy.deepcopy(json.loads(tiny_files[0].read_text()))
    *parents, leaf = path.split(".")
    node = raw
    for part in parents:
        node = node[part]
    if value is MISSING:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


# (option, bad value, what the message says); the first four are the reports, ints and
# the JSON floats (1e9) it used.
BAD_OPTIONS = [
    ("char_cnn.max_characters_per_token", 10**9, "must be between 3 and 1024"),
    ("char_cnn.max_characters_per_token", 1e9, "must be an integer, not a float"),
    ("char_cnn.filters", [[1, 10**9]], "parameters would take"),
    ("char_cnn.filters", [[1, 1e9]], "must be an integer, not a float"),
    ("lstm.n_layers", 10**6, "must be between 1 and 64"),
    ("lstm.n_layers", 1e6, "must be an integer, not a float"),
    ("lstm.dim", 10**9, "parameters would take"),
    ("lstm.dim", 1e9, "must be an integer, not a float"),
    ("lstm.dim", "64", "must be an integer, not a string"),
    ("lstm.dim", True, "must be an integer, not a boolean"),
    ("lstm.dim", 64.0, "must be an integer, not a float"),
    ("lstm.dim", -64, "must be at least 1"),
    ("lstm.dim", MISSING, "lstm.dim is missing"),
    ("lstm.projection_dim", 0, "must be at least 1"),
    ("lstm.projection_dim", 128, "must not exceed lstm.dim (64)"),
    ("lstm.cell_clip", "3", "must be a number or null"),
    ("lstm.proj_clip", -1, "must be a finite number"),
    ("lstm.use_skip_connections", "yes", "must be true or false"),
    ("char_cnn.embedding.dim", 10**8, "parameters would take"),
    ("char_cnn.embedding", 4, "must be an object, not a number"),
    ("char_cnn.n_highway", -1, "must be between 0 and 64"),
    ("char_cnn.n_highway", MISSING, "char_cnn.n_highway is missing"),
    ("char_cnn.n_characters", 300, "must be 261 or 262"),
    ("char_cnn.max_characters_per_token", 2, "must be between 3 and 1024"),
    ("char_cnn.filters", [], "must be a non-empty list"),
    ("char_cnn.filters", [[1, 4, 5]], "must be a [width, count] pair"),
    ("char_cnn.filters", [[51, 4]], "wider than char_cnn.max_characters_per_token (50)"),
    ("char_cnn.filters", [[1, 4]], "must be at least lstm.projection_dim (16)"),
    ("char_cnn.activation", "gelu", "must be one of"),
    ("n_tokens_vocab", "793471", "must be an integer, not a string"),
    ("bidirectional", False, "only bidirectional"),
    ("dropout", 1.5, "must be a number in [0, 1)"),
]


@pytest.mark.parametrize("option, value, reason", BAD_OPTIONS,
                         ids=[f"{o}={v if v is not MISSING else 'missing'}" for o, v, _ in BAD_OPTIONS])
def test_bad_option_fails_at_once_naming_option_and_file(tiny_files, tmp_path, option, value, reason):
    path = tmp_path / "model" / "options.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_options(tiny_files, option, value)))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ElmoError) as caught:
            read_options(path)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert option in message and reason in message, message
    if value is not MISSING:
        assert f"{option} = " in message or f"{option}[0]" in message, message
    assert elapsed < 1.0
    assert peak < BIG_ALLOCATION


def test_memory_refusal_names_the_limit_and_how_to_raise_it(tiny_files, tmp_path, monkeypatch):
    path = tmp_path / "options.json"
    path.write_text(json.dumps(_options(tiny_files, "lstm.dim", 10**9)))
    with pytest.raises(ElmoError, match=rf"lstm.dim = 1000000000: the model's parameters would take "
                                        rf"[\d,.]+ TiB, over the limit of 16.0 GiB \(set {MAX_MODEL_BYTES_ENV}="):
        read_options(path)
    # A model near the limit: refused under a lower one, accepted when it is raised.
    options = read_options(tiny_files[0])
    assert 0 < options.parameter_bytes < 2**20 < DEFAULT_MAX_MODEL_BYTES
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, str(2**20))  # the fixture's activations for 1024 positions: ~40 MB
    with pytest.raises(ElmoError, match=rf"options.json: .*activations for 1024 token positions, over the limit "
                                        rf"of 1.0 MiB \(set {MAX_MODEL_BYTES_ENV}=BYTES"):
        read_options(tiny_files[0])
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, "1e9")
    assert read_options(tiny_files[0]) == options
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, "lots")
    with pytest.raises(ElmoError, match=f"{MAX_MODEL_BYTES_ENV}='lots': expected a positive number of bytes"):
        read_options(tiny_files[0])


@pytest.mark.parametrize("preset", sorted(MODEL_PRESETS))
def test_parameter_estimate_is_exact(preset):
    options = ElmoOptions(**MODEL_PRESETS[preset])
    with torch.device("meta"):  # shapes only, nothing allocated
        model = BiLm(options)
    assert parameter_count(options) == sum(p.numel() for p in model.parameters())
    assert options.parameter_bytes == 4 * parameter_count(options)


def test_published_and_configured_shapes_still_load(tiny_files, tmp_path):
    # The published ELMo's options.json as bilm-tf wrote it (ints, clip values as ints).
    published = {"lstm": {"use_skip_connections": True, "projection_dim": 512, "cell_clip": 3, "proj_clip": 3,
                          "dim": 4096, "n_layers": 2},
                 "char_cnn": {"activation": "relu", "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256],
                                                                 [6, 512], [7, 1024]],
                              "n_highway": 2, "embedding": {"dim": 16}, "n_characters": 262,
                              "max_characters_per_token": 50},
                 "bidirectional": True, "dropout": 0.1, "n_tokens_vocab": 793471, "all_clip_norm_val": 10.0,
                 "n_epochs": 10, "n_train_tokens": 768648884, "batch_size": 128, "unroll_steps": 20,
                 "n_negative_samples_batch": 8192}
    (tmp_path / "published.json").write_text(json.dumps(published))
    options = read_options(tmp_path / "published.json")
    assert options.lstm_dim == 4096 and options.cell_clip == 3.0
    assert options == ElmoOptions(**MODEL_PRESETS["original"])
    assert options.extra["n_tokens_vocab"] == 793471
    assert read_options(tiny_files[0]).lstm_dim == 64
    load_bilm(*tiny_files)
    for preset in MODEL_PRESETS:
        TrainConfig(model=preset).options()


def test_training_overrides_are_checked_too():
    with pytest.raises(ElmoError, match=r"model 'tiny' with model_overrides .*lstm.dim = \"64\": must be an integer"):
        TrainConfig(model_overrides={"lstm_dim": "64"})
    with pytest.raises(ElmoError, match=r"lstm.n_layers = 1000000: must be between 1 and 64"):
        TrainConfig(model_overrides={"n_layers": 10**6})


@pytest.mark.parametrize("content, message", [
    (b"[" * 200_000, "not valid JSON"),  # nesting: RecursionError inside json
    (b'{"lstm": {"dim": ' + b"9" * 5000 + b"}}", "not valid JSON"),  # an int past Python's digit limit
    (b'{"lstm": ' + b" " * (2 << 20) + b"{}}", "larger than 1,048,576 bytes"),
    (b"[1, 2]", "options must be a JSON object"),
])
def test_malformed_options_files(tmp_path, content, message):
    path = tmp_path / "options.json"
    path.write_bytes(content)
    with pytest.raises(ElmoError, match=message) as caught:
        read_options(path)
    assert str(caught.value).startswith(f"{path}: ")


def _weights_copy(tiny_files, tmp_path, edit) -> str:
    target = tmp_path / "weights.hdf5"
    shutil.copy(tiny_files[1], target)
    with h5py.File(target, "a") as f:
        edit(f)
    return target


def _refused(options_file, weights_file) -> str:
    tracemalloc.start()
    try:
        with pytest.raises(ElmoError) as caught:
            load_bilm(options_file, weights_file)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < BIG_ALLOCATION, f"{peak / 2**20:.0f} MiB traced while refusing the file"
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_weights_shape_disagreeing_with_options_named_before_reading(tiny_files, tmp_path):
    """A dataset may declare any shape (chunked, unwritten: nothing on disk): it is refused from its
    declared shape, not read first (this one would be 256 MiB)."""
    def huge_embedding(f):
        del f["char_embed"]
        f.create_dataset("char_embed", shape=(2**24, 4), dtype="float32", chunks=(4096, 4))

    target = _weights_copy(tiny_files, tmp_path, huge_embedding)
    message = _refused(tiny_files[0], target)
    assert message == (f"{target}: dataset 'char_embed' has shape (16777216, 4), expected (261, 4) "
                       "from the options")


def test_weights_with_the_wrong_width_name_dataset_and_file(tiny_files, tmp_path):
    def narrower(f):
        kernel = f["RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_0"][...]
        del f["RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_0"]
        f["RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_0"] = kernel[:, :128]

    target = _weights_copy(tiny_files, tmp_path, narrower)
    assert _refused(tiny_files[0], target) == (
        f"{target}: dataset 'RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_0' has shape (32, 128), expected (32, 256) "
        "from the options")


def test_weights_of_the_wrong_type_refused(tiny_files, tmp_path):
    def ints(f):
        del f["CNN/b_cnn_0"]
        f["CNN/b_cnn_0"] = np.zeros(4, dtype=np.int32)

    assert "dataset 'CNN/b_cnn_0' holds int32, expected floats" in _refused(
        tiny_files[0], _weights_copy(tiny_files, tmp_path, ints))


def test_softmax_rows_bounded_and_checked(tiny_files, tmp_path, monkeypatch):
    model = load_bilm(*tiny_files)

    def huge_softmax(f):
        f.create_dataset("softmax/W", shape=(2**40, 16), dtype="float32", chunks=(1024, 16))
        f.create_dataset("softmax/b", shape=(2**40,), dtype="float32", chunks=(1024,))

    target = _weights_copy(tiny_files, tmp_path, huge_softmax)
    message = _refused(tiny_files[0], target)
    assert message.startswith(f"{target}: dataset 'softmax/W' has shape (1099511627776, 16): with the model it "
                              "would take 68.0 TiB, over the limit of 16.0 GiB")
    assert f"over the limit of 16.0 GiB (set {MAX_MODEL_BYTES_ENV}=BYTES to raise it)" in message

    save_weights(model, tmp_path / "lm.hdf5", (np.zeros((7, 16), np.float32), np.zeros(7, np.float32)))
    options = _options(tiny_files, "n_tokens_vocab", 8)
    (tmp_path / "options.json").write_text(json.dumps(options))
    with pytest.raises(ElmoError, match=r"lm.hdf5: dataset 'softmax/W' has 7 rows but the options say "
                                        r"n_tokens_vocab = 8"):
        load_bilm(tmp_path / "options.json", tmp_path / "lm.hdf5")
    softmax = load_weights(BiLm(read_options(tiny_files[0])), tmp_path / "lm.hdf5")
    assert softmax[0].shape == (7, 16)
