"""The training data on Ray: sentences → ordered items (Ray Data, once) → pools for every worker.

Driver side, :func:`prepare_windows` cuts every sentence into the model's windows
(:func:`elmo_model.train.batching.sentence_windows`; in stream mode each whole sentence is one item),
orders them by :func:`elmo_model.train.batch_plan.order_key`, a seeded hash of their provenance (a
global shuffle that does not depend on how Ray scheduled the reads) and materializes them. Every
worker then reads the whole, un-split dataset in that order as Arrow pools (:func:`arrow_pools`);
what it makes of them — the global batch sequence of sentence mode, the streams of stream mode —
is :mod:`elmo_model.train.batch_plan` and :mod:`elmo_model.train.stream`, the same as in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from elmo_model.train.batch_plan import order_key
from elmo_model.train.batching import sentence_windows

ORDER_COLUMNS = ["key", "source", "line", "sentence_index", "window"]  # unique per window
WINDOW_COLUMNS = ["tokens", "n_tokens"]


def window_table(sentences: pa.Table, max_tokens: int, seed: int) -> pa.Table:
    """Sentence rows → one row per window: ``tokens`` (with ``<S>``/``</S>``), ``n_tokens``, order columns."""
    columns: dict[str, list] = {name: [] for name in ["key", "source", "line", "sentence_index", "window", "tokens"]}
    rows = zip(*(sentences.column(c).to_pylist() for c in ("source", "line", "sentence_index", "tokens")))
    for source, line, sentence, tokens in rows:
        for w, window in enumerate(sentence_windows(tokens, max_tokens)):
            columns["key"].append(order_key(seed, source, line, sentence, w))
            for name, value in (("source", source), ("line", line), ("sentence_index", sentence),
                                ("window", w), ("tokens", window)):
                columns[name].append(value)
    tokens = pa.array(columns["tokens"], pa.list_(pa.string()))
    return pa.table({
        "key": pa.array(columns["key"], pa.int64()),
        "source": pa.array(columns["source"], pa.string()),
        "line": pa.array(columns["line"], pa.int64()),
        "sentence_index": pa.array(columns["sentence_index"], pa.int32()),
        "window": pa.array(columns["window"], pa.int32()),
        "tokens": tokens,
        "n_tokens": pc.list_value_length(tokens).cast(pa.int32()),
    })


class WindowStage:
    """Ray Data stage: a batch of sentence rows → window rows."""

    def __init__(self, max_tokens: int, seed: int) -> None:
        self.max_tokens, self.seed = max_tokens, seed

    def __call__(self, sentences: pa.Table) -> pa.Table:
        return window_table(sentences, self.max_tokens, self.seed)


def prepare_windows(inputs: Any, ingest: Any, max_tokens: int, seed: int, shuffle: bool,
                    options: Any = None) -> tuple[Any, int]:
    """A materialized ``ray.data.Dataset`` of windows (``tokens``, ``n_tokens``) and its row count.

    ``shuffle``: ordered by the seeded provenance hash (training); otherwise in corpus order
    (validation). Either order is the same in every run.
    """
    from pipelines.ingest.reader import DEFAULT_READ_CPUS, READ_TASK_MEMORY, sentence_dataset
    from pipelines.ray_support import preserve_order, quiet_progress

    sentences = preserve_order(sentence_dataset(inputs, ingest, options=options, char_ids=False))
    windows = sentences.map_batches(WindowStage(max_tokens, seed), batch_size=None, batch_format="pyarrow",
                                    zero_copy_batch=True, num_cpus=DEFAULT_READ_CPUS, memory=READ_TASK_MEMORY)
    if shuffle:
        windows = windows.sort(ORDER_COLUMNS)
    windows = windows.select_columns(WINDOW_COLUMNS).materialize()
    quiet_progress(windows)  # iterated once per epoch by every worker: keep the console quiet
    return windows, windows.count()


class ArrowPool:
    """A :class:`elmo_model.train.batch_plan.Pool` over an Arrow table with ``tokens`` and ``n_tokens``."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def lengths(self) -> np.ndarray:
        return self.table.column("n_tokens").to_numpy()

    def take(self, indices: Sequence[int]) -> list[list[str]]:
        return self.table.column("tokens").take(pa.array(indices, pa.int64())).to_pylist()


def arrow_pools(tables: Callable[[], Iterable[pa.Table]]) -> Callable[[], Iterator[ArrowPool]]:
    """A pool reader over one epoch's Arrow tables (a fresh iteration per call)."""
    return lambda: (ArrowPool(t) for t in tables())


def table_windows(tables: Iterable[pa.Table]) -> Iterator[list[list[str]]]:
    """The ``tokens`` of each table (validation batches)."""
    for table in tables:
        yield table.column("tokens").to_pylist()
