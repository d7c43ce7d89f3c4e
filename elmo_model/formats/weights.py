"""bilm-tf / AllenNLP weight files: ``options.json`` + ``weights.hdf5``, in and out.

The hdf5 layout (all float32)::

    char_embed                  (n_chars=261, char_dim)   model row r+1 (row 0 = padding)
    CNN/W_cnn_{i}, CNN/b_cnn_{i}  (1, width, char_dim, n_filters), (n_filters,)
    CNN_high_{k}/{W,b}_{carry,transform}  (n_filters, n_filters), (n_filters,)   x @ W + b
    CNN_proj/W_proj, b_proj     (n_filters, proj), (proj,)   (only if n_filters != proj)
    RNN_{d}/RNN/MultiRNNCell/Cell{k}/LSTMCell/W_0  (in + out, 4·cell)   [x, h] @ W_0, gates i,j,f,o
                                              /B    (4·cell,)
                                              /W_P_0 (cell, proj)   (only with a projection)
    softmax/W, softmax/b        (n_vocab, proj), (n_vocab,)   optional; training only

``d`` is 0 for the forward LM, 1 for the backward LM. Conversion is transposes and slices only,
so load → save → load is bit-identical.

Reading takes local paths, bytes (``options.json``) or open binary files (``weights.hdf5``);
``source`` names the file in error messages when it came from elsewhere (a URL).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import h5py
import numpy as np
import torch

from elmo_model.model.bilm import BiLm
from elmo_model.errors import ElmoError
from elmo_model.formats.local_files import LocalPath, local_path, read_bytes, write_atomically
from elmo_model.model.options import MAX_MODEL_BYTES_ENV, ElmoOptions, format_bytes, max_model_bytes

SOFTMAX_GROUP = "softmax"
MAX_OPTIONS_BYTES = 1 << 20  # an options.json is a few hundred bytes


WeightSource = LocalPath | BinaryIO  # a local path or an open, seekable binary file


def read_options(path: LocalPath | bytes, source: str | None = None) -> ElmoOptions:
    """Parse an ``options.json`` (a local path, or its bytes; ``source`` names it in errors).

    Every value is checked, and the model's memory estimated, before anything is built
    (:class:`~elmo_model.model.options.ElmoOptions`): a bad or impossible file fails at once with one
    line naming the file and the option.
    """
    name = source or ("options.json" if isinstance(path, bytes) else str(path))
    raw = path if isinstance(path, bytes) else read_bytes(path, "options file", MAX_OPTIONS_BYTES)
    if len(raw) > MAX_OPTIONS_BYTES:
        raise ElmoError(f"{name}: larger than {MAX_OPTIONS_BYTES:,} bytes; not an options file")
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ElmoError(f"{name}: not valid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:  # a 5,000-digit integer, nesting 100,000 deep
        raise ElmoError(f"{name}: not valid JSON ({type(exc).__name__}: {str(exc)[:100]})") from None
    if not isinstance(parsed, dict):
        raise ElmoError(f"{name}: options must be a JSON object")
    return ElmoOptions.from_dict(parsed, source=name)


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One hdf5 dataset and how it maps onto model parameters."""

    name: str
    to_file: Callable[[], np.ndarray]  # model → file layout
    from_file: Callable[[np.ndarray], None]  # file layout → model (shape already checked)
    shape: tuple[int, ...] | None = None  # the file's shape (None: that of to_file(), a view)

    def file_shape(self) -> tuple[int, ...]:
        return self.shape if self.shape is not None else tuple(self.to_file().shape)


def _param(name: str, tensor: torch.Tensor, to_file, from_file) -> _Entry:
    def store(data: np.ndarray) -> None:
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(from_file(data))))

    return _Entry(name, lambda: to_file(tensor.detach().cpu().numpy()), store)


def _plain(name: str, tensor: torch.Tensor) -> _Entry:
    return _param(name, tensor, lambda a: a, lambda d: d)


def _transposed(name: str, tensor: torch.Tensor) -> _Entry:
    return _param(name, tensor, lambda a: a.T, lambda d: d.T)


def _lstm_kernel(name: str, lstm) -> _Entry:
    """``W_0`` stacks the input rows over the recurrent rows: ``[x, h] @ W_0``."""
    n_input = lstm.input_weight.shape[1]

    def to_file() -> np.ndarray:
        parts = (lstm.input_weight, lstm.recurrent_weight)
        return np.concatenate([p.detach().cpu().numpy().T for p in parts])

    def from_file(data: np.ndarray) -> None:
        lstm.input_weight.copy_(torch.from_numpy(np.ascontiguousarray(data[:n_input].T)))
        lstm.recurrent_weight.copy_(torch.from_numpy(np.ascontiguousarray(data[n_input:].T)))

    shape = (n_input + lstm.recurrent_weight.shape[1], lstm.input_weight.shape[0])
    return _Entry(name, to_file, from_file, shape)


def _entries(model: BiLm) -> Iterator[_Entry]:
    """Every dataset of the file, in a fixed order."""
    enc = model.token_encoder
    yield _param(  # the model's row 0 is the padding id, absent from the file
        "char_embed",
        enc.char_embedding.weight,
        lambda a: a[1:],
        lambda d: np.concatenate([np.zeros((1, d.shape[1]), d.dtype), d]),
    )
    for i, conv in enumerate(enc.convolutions):  # (n, char_dim, width) ↔ (1, width, char_dim, n)
        yield _param(f"CNN/W_cnn_{i}", conv.weight, lambda a: a.transpose(2, 1, 0)[None],
                     lambda d: d[0].transpose(2, 1, 0))
        yield _plain(f"CNN/b_cnn_{i}", conv.bias)
    for k, highway in enumerate(enc.highways):
        for part, linear in (("carry", highway.carry), ("transform", highway.transform)):
            yield _transposed(f"CNN_high_{k}/W_{part}", linear.weight)
            yield _plain(f"CNN_high_{k}/b_{part}", linear.bias)
    if enc.projection is not None:
        yield _transposed("CNN_proj/W_proj", enc.projection.weight)
        yield _plain("CNN_proj/b_proj", enc.projection.bias)
    for direction, stack in enumerate((model.forward_layers, model.backward_layers)):
        for k, lstm in enumerate(stack):
            prefix = f"RNN_{direction}/RNN/MultiRNNCell/Cell{k}/LSTMCell"
            yield _lstm_kernel(f"{prefix}/W_0", lstm)
            yield _plain(f"{prefix}/B", lstm.bias)
            if lstm.projection is not None:
                yield _transposed(f"{prefix}/W_P_0", lstm.projection)


def bilm_arrays(model: BiLm) -> dict[str, np.ndarray]:
    """The model's parameters as the file's datasets (name → array in bilm-tf layout)."""
    return {entry.name: entry.to_file() for entry in _entries(model)}


def load_weights(model: BiLm, weight_file: WeightSource, source: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """Copy a bilm-tf hdf5 file into ``model``; returns the softmax ``(W, b)`` if the file has one.

    Every dataset's shape and type are checked against the model built from the options before
    it is read (a file may declare any shape): a mismatch names the dataset (and ``source``,
    else the path), the expected and the actual shape. The softmax, whose rows the options need
    not give, must fit with the model under :func:`~elmo_model.model.options.max_model_bytes`.
    """
    name = source or (str(weight_file) if isinstance(weight_file, (str, os.PathLike)) else "weights.hdf5")
    with _open_hdf5(weight_file, name) as fin, torch.no_grad():
        for entry in _entries(model):
            entry.from_file(_dataset(fin, entry.name, name, entry.file_shape()))
        if SOFTMAX_GROUP not in fin:
            return None
        return _softmax(fin, model.options, name)


def _softmax(fin: h5py.File, options: ElmoOptions, source: str) -> tuple[np.ndarray, np.ndarray]:
    weight_name, bias_name = f"{SOFTMAX_GROUP}/W", f"{SOFTMAX_GROUP}/b"
    shape = _declared(fin, weight_name, source).shape
    proj = options.projection_dim
    if len(shape) != 2 or shape[1] != proj:
        _check_shape(weight_name, shape, ("n_vocab", proj), source)
    n_vocab = int(shape[0])
    declared = options.extra.get("n_tokens_vocab")
    if declared is not None and declared != n_vocab:
        raise ElmoError(f"{source}: dataset {weight_name!r} has {n_vocab} rows but the options say "
                        f"n_tokens_vocab = {declared}")
    needed, limit = 4 * n_vocab * (proj + 1) + options.parameter_bytes, max_model_bytes()
    if needed > limit:
        raise ElmoError(f"{source}: dataset {weight_name!r} has shape {tuple(shape)}: with the model it would "
                        f"take {format_bytes(needed)}, over the limit of {format_bytes(limit)} "
                        f"(set {MAX_MODEL_BYTES_ENV}=BYTES to raise it)")
    return _dataset(fin, weight_name, source, (n_vocab, proj)), _dataset(fin, bias_name, source, (n_vocab,))


def _declared(fin: h5py.File, name: str, source: str) -> h5py.Dataset:
    try:
        dataset = fin[name] if name in fin else None
    except (KeyError, TypeError, ValueError):  # a path through a dataset, a broken link
        dataset = None
    if not isinstance(dataset, h5py.Dataset):
        raise ElmoError(f"{source}: dataset {name!r} is missing (options and weights do not match?)")
    return dataset


def _dataset(fin: h5py.File, name: str, source: str, expected: tuple[int, ...]) -> np.ndarray:
    """The dataset ``name``, read only once its declared type and shape are the expected ones."""
    dataset = _declared(fin, name, source)
    if not np.issubdtype(dataset.dtype, np.floating):
        raise ElmoError(f"{source}: dataset {name!r} holds {dataset.dtype}, expected floats")
    _check_shape(name, dataset.shape, expected, source)
    try:
        data = dataset[...]
    except (OSError, ValueError) as exc:
        raise ElmoError(f"{source}: dataset {name!r} cannot be read (corrupt or truncated file?): {exc}") from None
    if not np.isfinite(data).all():
        raise ElmoError(f"{source}: dataset {name!r} holds NaN or infinite values")
    return data.astype(np.float32, copy=False)


def _check_shape(name: str, actual: tuple, expected: tuple, source: str) -> None:
    if tuple(actual) != tuple(expected):
        raise ElmoError(
            f"{source}: dataset {name!r} has shape {tuple(actual)}, expected {tuple(expected)} "
            "from the options"
        )


def _open_hdf5(weight_file: WeightSource, name: str) -> h5py.File:
    if isinstance(weight_file, (str, os.PathLike)):
        weight_file = local_path(weight_file, "weights file")
        if not weight_file.is_file():
            raise ElmoError(f"weights file not found: {weight_file}")
    try:
        return h5py.File(weight_file, "r")
    except OSError:
        raise ElmoError(f"{name}: not a readable HDF5 weights file (corrupt or truncated?)") from None


def save_weights(
    model: BiLm, weight_file: str | os.PathLike, softmax: tuple[np.ndarray, np.ndarray] | None = None
) -> None:
    """Write ``model`` (and optionally a softmax) in bilm-tf's layout; atomic on local disk."""
    arrays = bilm_arrays(model)
    if softmax is not None:
        arrays[f"{SOFTMAX_GROUP}/W"], arrays[f"{SOFTMAX_GROUP}/b"] = softmax
    write_atomically(Path(weight_file), lambda f: _write_hdf5(f, arrays))


def _write_hdf5(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w") as fout:
        for name, array in arrays.items():
            fout.create_dataset(name, data=np.asarray(array, dtype=np.float32))


def save_options(options: ElmoOptions, options_file: str | os.PathLike) -> None:
    write_atomically(Path(options_file), lambda f: f.write_text(options.to_json() + "\n"))


def load_bilm(options_file: LocalPath, weight_file: WeightSource) -> BiLm:
    """Build a :class:`BiLm` from ``options.json`` and load ``weights.hdf5`` into it (local files)."""
    model = BiLm(read_options(options_file))
    load_weights(model, weight_file)
    return model
