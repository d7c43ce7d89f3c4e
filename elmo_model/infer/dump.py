"""``elmo dump``: embed a file of sentences into hdf5, in the original ``elmo`` command's format.

Output: one dataset per input line, named ``str(line_index)``, float32 ``(L+1, n_tokens, 2·proj)``
for ``all`` or ``(n_tokens, 2·proj)`` for ``top`` / ``average``; plus ``sentence_to_index``,
a one-element string dataset holding the JSON map ``sentence → str(line_index)``.

A line longer than the embedder's window (1,024 positions) is written window by window as its
vectors come (:meth:`~elmo_model.infer.embedder.SentenceEmbedder.iter_pieces`): time linear in its
length, working memory one window, however long the line (measured at 1M tokens:
``docs/results/long_line.md``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from elmo_model.infer.embedder import ALL_COLUMNS, SentenceEmbedder, default_batch_size
from elmo_model.errors import ElmoError, no_space
from elmo_model.model.bilm import BiLm
from elmo_model.formats.local_files import LocalPath, read_bytes
from elmo_model.formats.weights import load_bilm

DUMP_LAYERS = ("all", "top", "average")


def read_sentence_lines(input_file: LocalPath) -> list[str]:
    """Lines of the local ``input_file``; invalid UTF-8 or an empty line raises an error naming the line."""
    return parse_sentences(read_bytes(input_file, "input file"), str(input_file))


def parse_sentences(raw: bytes, input_file: str) -> list[str]:
    """:func:`read_sentence_lines` on the file's bytes (``input_file`` names it in errors)."""
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    sentences = []
    for number, line in enumerate(lines, start=1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ElmoError(f"{input_file}: line {number} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        if not text:
            raise ElmoError(f"{input_file}: line {number} is empty (one whitespace-tokenized sentence per line)")
        sentences.append(text)
    if not sentences:
        raise ElmoError(f"{input_file}: no sentences")
    return sentences


def _select(layers: np.ndarray, mode: str) -> np.ndarray:
    if mode == "top":
        return layers[-1]
    if mode == "average":
        return layers.mean(axis=0)
    return layers


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def dump_embeddings(
    input_file: LocalPath,
    output_file: LocalPath,
    options_file: LocalPath,
    weight_file: LocalPath,
    mode: str = "all",
    batch_size: int | None = None,
    device: str = "cpu",
    stateful: bool = False,
    progress: bool = True,
    precision: str = "fp32",
    overwrite: bool = False,
) -> int:
    """Embed every line of ``input_file`` into ``output_file``; returns the number of sentences.

    ``batch_size`` None: :func:`~elmo_model.infer.embedder.default_batch_size` of the model, or 64 when
    ``stateful`` (row ``k`` of a batch continues row ``k`` of the previous one, so the batch size
    is part of the result there). ``precision``: ``fp32`` | ``bf16`` | ``int8`` | ``auto``
    (:mod:`elmo_model.model.precision`); the one that ran is the file's ``precision`` attribute. The output is checked first (:func:`check_output_file`: never
    the input, an existing file only with ``overwrite``, a writable directory); it appears only
    when complete (written to a temporary name, then renamed).
    """
    check_output_file(output_file, input_file, overwrite)
    _check(mode, batch_size)
    sentences = read_sentence_lines(input_file)
    return write_embeddings(sentences, output_file, load_bilm(options_file, weight_file), mode, batch_size, device,
                            stateful, progress, precision)


def _check(mode: str, batch_size: int) -> None:
    if mode not in DUMP_LAYERS:
        raise ElmoError(f"mode must be one of {DUMP_LAYERS}, got {mode!r}")
    if batch_size is not None and batch_size < 1:
        raise ElmoError(f"batch size must be positive, got {batch_size}")


def write_embeddings(
    sentences: list[str],
    output_file: LocalPath,
    bilm: BiLm,
    mode: str = "all",
    batch_size: int | None = None,
    device: str = "cpu",
    stateful: bool = False,
    progress: bool = True,
    precision: str = "fp32",
) -> int:
    """:func:`dump_embeddings` for sentences and a biLM already loaded (no input I/O)."""
    _check(mode, batch_size)
    if batch_size is None:
        batch_size = 64 if stateful else default_batch_size(bilm.options)
    try:
        embedder = SentenceEmbedder(bilm, _device(device), stateful, precision=precision)
    except ValueError as exc:
        raise ElmoError(str(exc)) from None
    target = Path(output_file)
    partial = partial_path(target)
    _check_space(sentences, bilm, mode, target)
    try:
        with h5py.File(partial, "w") as fout, tqdm(  # in tokens: a long line shows its progress too
            total=sum(len(s.split()) for s in sentences), unit="tok", unit_scale=True, disable=not progress,
            desc="elmo dump",
        ) as bar:
            fout.attrs["precision"] = embedder.precision  # what the vectors were computed in
            first = 0
            for batch in _batches(sentences, batch_size):
                _write_batch(fout, embedder, [s.split() for s in batch], first, mode, bar)
                first += len(batch)
            mapping = {sentence: str(i) for i, sentence in enumerate(sentences)}
            fout.create_dataset(
                "sentence_to_index", (1,), dtype=h5py.string_dtype(), data=[json.dumps(mapping)]
            )
        os.replace(partial, target)
    except OSError as exc:  # h5py's write errors are OSErrors; a full disk is one line, not 700
        if no_space(exc):
            raise ElmoError(f"{target}: cannot write: no space left on device (nothing was written)") from None
        raise
    finally:
        partial.unlink(missing_ok=True)
    return len(sentences)


def _check_space(sentences: list[str], bilm: BiLm, mode: str, target: Path) -> None:
    """Refuse before writing when the output cannot fit: HDF5 on a full disk fails deep inside its
    library (and h5py's cleanup can then crash the process)."""
    layers = bilm.options.n_layers + 1 if mode == "all" else 1
    need = sum(len(s.split()) for s in sentences) * layers * bilm.options.output_dim * 4 + (1 << 20)
    free = shutil.disk_usage(target.parent).free
    if need > free:
        raise ElmoError(f"{target}: no space left on device for the output: it needs about {need / 2**20:.1f} MiB, "
                        f"{free / 2**20:.1f} MiB are free")




def _write_batch(fout: h5py.File, embedder: SentenceEmbedder, batch: list[list[str]], first: int, mode: str,
                 bar: tqdm) -> None:
    """Write the datasets of ``batch`` (lines ``first``, ...) as the embedder's pieces come: a
    sentence in one piece at once, a long one window by window into its dataset (working memory
    one window, whatever the line's length)."""
    layers, width = embedder.bilm.options.n_layers + 1, embedder.bilm.options.output_dim
    datasets: dict[int, h5py.Dataset] = {}
    for row, start, columns, piece in embedder.iter_pieces(batch):
        n, w = len(batch[row]), piece.shape[1]
        vectors = _select(piece, mode).astype(np.float32, copy=False)
        if row not in datasets and w == n and columns == ALL_COLUMNS:
            fout.create_dataset(str(first + row), data=vectors)
            bar.update(n)
            continue
        if row not in datasets:
            shape = (layers, n, width) if mode == "all" else (n, width)
            datasets[row] = fout.create_dataset(str(first + row), shape=shape, dtype=np.float32)
        if mode == "all":
            datasets[row][:, start : start + w, columns] = vectors
        else:
            datasets[row][start : start + w, columns] = vectors
        bar.update(w * (columns.stop - columns.start) / width if columns != ALL_COLUMNS else w)


def partial_path(output_file: str | os.PathLike) -> Path:
    """Where the output is written until complete: ``_<name>.partial`` beside it."""
    target = Path(output_file)
    return target.with_name(f"_{target.name}.partial")


def check_output_file(output_file: LocalPath, input_file: str | os.PathLike | None = None,
                      overwrite: bool = False) -> None:
    """Fail before any work if ``output_file`` must not or cannot be written; remove its stale
    ``_<name>.partial`` (left by a killed run).

    Refused: the input file itself (under any spelling, symlink or hard link), an existing file
    unless ``overwrite``, a directory, a missing or unwritable parent directory.
    """
    target = Path(output_file).expanduser().absolute()
    text = os.fspath(input_file) if input_file is not None else ""
    if text and ("://" not in text or text.startswith("file://")):  # a URL input cannot be the output
        source = Path(text.removeprefix("file://")).expanduser()
        if source.exists() and target.exists() and os.path.samefile(source, target):
            raise ElmoError(f"output {output_file} is the input file {input_file}; choose another output")
    if target.is_dir():
        raise ElmoError(f"output {output_file} is a directory; give a file name")
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise ElmoError(f"output {output_file} already exists (use --overwrite to replace it)")
    parent = target.parent
    if not parent.exists():
        raise ElmoError(f"output {output_file}: directory {parent} does not exist")
    if not parent.is_dir():
        raise ElmoError(f"output {output_file}: {parent} is not a directory")
    partial = partial_path(target)
    try:
        partial.unlink(missing_ok=True)
        partial.open("wb").close()  # the directory is writable: probe with the staging name itself
        partial.unlink()
    except OSError as exc:
        raise ElmoError(f"output {output_file}: cannot write in {parent} ({exc.strerror or exc})") from None


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ElmoError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ElmoError(f"device {name!r} requested but CUDA is not available")
    return device
