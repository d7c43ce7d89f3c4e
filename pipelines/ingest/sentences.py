"""Records → sentences → ids, as pure functions on pyarrow tables (the Ray Data stages call these).

:func:`sentence_table` splits each record's text into sentences, tokenizes them, drops empty ones
and caps their length. :func:`add_char_ids` and :func:`add_token_ids` add the model's inputs as
Arrow list columns, using :mod:`elmo_model.model.chars` and :class:`elmo_model.formats.vocab.Vocabulary`
(each distinct token of a batch is encoded once). :func:`pad_char_ids` / :func:`pad_token_ids`
turn those columns into the padded arrays the model takes — equal to ``batch_to_ids``.

Splitters and tokenizers are named (``line`` / ``none``, ``whitespace``) or given as
``"package.module:function"``; any callable ``str -> list[str]`` works from Python.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from elmo_model.model.chars import MAX_CHARS, token_char_ids
from elmo_model.errors import ElmoError
from elmo_model.formats.vocab import Vocabulary

TextFn = Callable[[str], list[str]]
CHAR_ID_TYPE = pa.int16()  # ids are 1..261
SPLITTERS: dict[str, TextFn] = {"line": lambda text: text.split("\n"), "none": lambda text: [text]}
TOKENIZERS: dict[str, TextFn] = {"whitespace": str.split}


def resolve_fn(spec: str | TextFn, named: dict[str, TextFn], what: str) -> TextFn:
    """A callable from a registered name, ``"module:function"`` or the callable itself."""
    if callable(spec):
        return spec
    if spec in named:
        return named[spec]
    module, sep, attr = spec.partition(":")
    if sep:
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ElmoError(f"{what} {spec!r}: cannot import it ({exc})") from None
    raise ElmoError(f"unknown {what} {spec!r} (known: {', '.join(named)}, or 'module:function')")


def text_slices(records: pa.Table, max_bytes: int) -> Iterator[pa.Table]:
    """``records`` in consecutive row slices of at most ``max_bytes`` of ``text`` each (a record
    longer than that is a slice of its own); one slice, zero-copy, when the whole fits."""
    sizes = pc.binary_length(records.column("text")).fill_null(0).to_numpy(zero_copy_only=False)
    if records.num_rows == 0 or int(sizes.sum()) <= max_bytes:
        yield records
        return
    start, size = 0, 0
    for row, n in enumerate(sizes.tolist()):
        if size and size + n > max_bytes:
            yield records.slice(start, row - start)
            start, size = row, 0
        size += n
    yield records.slice(start)


def sentence_table(records: pa.Table, split: TextFn, tokenize: TextFn, max_tokens: int | None = None) -> pa.Table:
    """One row per non-empty sentence: provenance, ``sentence_index``, ``text``, ``tokens``, ``n_tokens``.

    ``sentence_index`` numbers the sentences of one record (0-based, counting only kept ones);
    ``tokens`` is cut to ``max_tokens`` when given. Records with null text are skipped.
    """
    keep, index, texts, tokens = [], [], [], []
    for row, text in enumerate(records.column("text").to_pylist()):
        if text is None:
            continue
        n = 0
        for sentence in split(text):
            words = tokenize(sentence)
            if not words:
                continue
            keep.append(row)
            index.append(n)
            texts.append(sentence)
            tokens.append(words[:max_tokens] if max_tokens else words)
            n += 1
    picked = records.select(["source", "line", "doc_id"]).take(pa.array(keep, pa.int64()))
    token_array = pa.array(tokens, pa.list_(pa.string()))
    return picked.append_column("sentence_index", pa.array(index, pa.int32())) \
        .append_column("text", pa.array(texts, pa.string())) \
        .append_column("tokens", token_array) \
        .append_column("n_tokens", pc.list_value_length(token_array).cast(pa.int32()))


def _flat_tokens(tokens: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Flattened token strings and list offsets ``(n_rows + 1,)`` int32 of a list<string> column."""
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks() if tokens.num_chunks else pa.array([], pa.list_(pa.string()))
    lengths = pc.list_value_length(tokens).fill_null(0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return tokens.flatten(), offsets


def char_ids_column(tokens: pa.Array | pa.ChunkedArray, max_chars: int = MAX_CHARS) -> pa.ListArray:
    """list<fixed_size_list<int16, max_chars>>: each token's ids from ``token_char_ids``."""
    flat, offsets = _flat_tokens(tokens)
    encoded = pc.dictionary_encode(flat)  # each distinct token encoded once
    unique = encoded.dictionary.to_pylist()
    table = np.stack([token_char_ids(t, max_chars) for t in unique]) if unique else np.zeros((0, max_chars), np.int32)
    rows = table.astype(np.int16)[encoded.indices.to_numpy(zero_copy_only=False)]  # (n_tokens, max_chars)
    chars = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1), CHAR_ID_TYPE), max_chars)
    return pa.ListArray.from_arrays(pa.array(offsets), chars)


def token_ids_column(tokens: pa.Array | pa.ChunkedArray, vocab: Vocabulary) -> pa.ListArray:
    """list<int32>: each token's vocabulary id (``<UNK>`` for unknown tokens)."""
    flat, offsets = _flat_tokens(tokens)
    encoded = pc.dictionary_encode(flat)
    ids = vocab.encode(encoded.dictionary.to_pylist()).astype(np.int32)
    values = ids[encoded.indices.to_numpy(zero_copy_only=False)] if len(ids) else np.zeros(0, np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int32()))


def add_char_ids(sentences: pa.Table, max_chars: int = MAX_CHARS) -> pa.Table:
    return sentences.append_column("char_ids", char_ids_column(sentences.column("tokens"), max_chars))


def add_token_ids(sentences: pa.Table, vocab: Vocabulary) -> pa.Table:
    return sentences.append_column("token_ids", token_ids_column(sentences.column("tokens"), vocab))


def _as_list_array(column: Any) -> pa.Array | None:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column if isinstance(column, pa.Array) else None


def pad_char_ids(column: Any, max_chars: int = MAX_CHARS) -> np.ndarray:
    """``(batch, max_tokens, max_chars)`` int32 char ids, 0 = padding — what ``batch_to_ids`` gives.

    ``column`` is the ``char_ids`` column of a pyarrow batch, or of a numpy batch (an object array
    of per-sentence arrays).
    """
    arrow = _as_list_array(column)
    if arrow is not None:
        lengths = pc.list_value_length(arrow).to_numpy(zero_copy_only=False)
        flat = arrow.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, max_chars)
    else:
        rows = [np.asarray([np.asarray(t) for t in s]).reshape(-1, max_chars) for s in column]
        lengths = np.array([len(r) for r in rows], np.int64)
        flat = np.concatenate(rows) if rows else np.zeros((0, max_chars), np.int16)
    out = np.zeros((len(lengths), int(lengths.max(initial=0)), max_chars), np.int32)
    positions = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[np.repeat(np.arange(len(lengths)), lengths), positions] = flat
    return out


def pad_token_ids(column: Any, pad: int = 0) -> np.ndarray:
    """``(batch, max_tokens)`` int64 token ids, ``pad`` after each sentence's end."""
    arrow = _as_list_array(column)
    rows = [np.asarray(r, np.int64) for r in (arrow.to_pylist() if arrow is not None else column)]
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), pad, np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
