"""The training data plan: sentences → windows (Ray Data, once) → the same batch sequence on every worker.

Driver side, :func:`prepare_windows` cuts every sentence into the model's windows
(:func:`elmo_model.batching.sentence_windows`), orders them by a seeded hash of their provenance
(a global shuffle that does not depend on how Ray scheduled the reads) and materializes them.
Every worker then reads the whole, un-split dataset in that order.

Worker side, the windows are taken ``pool = batch_size · POOL_BATCHES`` at a time (pool k is
windows ``[k·pool, (k+1)·pool)``); inside a pool they are shuffled, sorted by length, cut into
batches and the batches shuffled, all seeded by ``(seed, epoch, k)`` (:class:`BatchPlan`). This
gives one endless sequence of *global batches* ``0, 1, 2, …`` over the epochs, identical on every
worker and in every run. With ``W`` workers, global step ``s`` (0-based) trains global batches
``p + s·W … p + s·W + W − 1`` (``p`` = the position where this world size started, 0 for a fresh
run); the worker of rank ``r`` takes the ``r``-th of them. A resumed run therefore continues with
exactly the batches an uninterrupted run would have trained next: no batch twice, none skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from elmo_model.batching import bucketed_batches_by_length, sentence_windows
from elmo_model.errors import ElmoError

POOL_BATCHES = 50  # batches per length-sorting pool (bilm-tf-like bucketing)
ORDER_COLUMNS = ["key", "source", "line", "sentence_index", "window"]  # unique per window
WINDOW_COLUMNS = ["tokens", "n_tokens"]


def _order_key(seed: int, source: str, line: int, sentence: int, window: int) -> int:
    """A seeded 63-bit hash of a window's provenance: sorting by it is a reproducible shuffle."""
    digest = hashlib.blake2b(f"{seed}\0{source}\0{line}\0{sentence}\0{window}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def window_table(sentences: pa.Table, max_tokens: int, seed: int) -> pa.Table:
    """Sentence rows → one row per window: ``tokens`` (with ``<S>``/``</S>``), ``n_tokens``, order columns."""
    columns: dict[str, list] = {name: [] for name in ["key", "source", "line", "sentence_index", "window", "tokens"]}
    rows = zip(*(sentences.column(c).to_pylist() for c in ("source", "line", "sentence_index", "tokens")))
    for source, line, sentence, tokens in rows:
        for w, window in enumerate(sentence_windows(tokens, max_tokens)):
            columns["key"].append(_order_key(seed, source, line, sentence, w))
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
    from pipelines.ingest.reader import read_sentences
    from pipelines.ray_support import preserve_order, quiet_progress

    sentences = preserve_order(read_sentences(inputs, ingest, options=options, char_ids=False))
    windows = sentences.map_batches(WindowStage(max_tokens, seed), batch_size=None, batch_format="pyarrow",
                                    zero_copy_batch=True)
    if shuffle:
        windows = windows.sort(ORDER_COLUMNS)
    windows = windows.select_columns(WINDOW_COLUMNS).materialize()
    quiet_progress(windows)  # iterated once per epoch by every worker: keep the console quiet
    return windows, windows.count()


@dataclass(frozen=True)
class BatchPlan:
    """The deterministic global batch sequence over ``n_windows`` windows (see the module docstring)."""

    n_windows: int
    batch_size: int
    seed: int

    @property
    def pool_size(self) -> int:
        return self.batch_size * POOL_BATCHES

    def pool_rows(self, k: int) -> int:
        return max(0, min(self.pool_size, self.n_windows - k * self.pool_size))

    def pool_batches(self, k: int) -> int:
        return -(-self.pool_rows(k) // self.batch_size)

    @property
    def n_pools(self) -> int:
        return -(-self.n_windows // self.pool_size)

    @property
    def batches_per_epoch(self) -> int:
        return sum(self.pool_batches(k) for k in range(self.n_pools))

    def pool_order(self, lengths: np.ndarray, epoch: int, k: int) -> Iterator[list[int]]:
        """Row indices of pool ``k``'s batches in epoch ``epoch``: length-bucketed, shuffled."""
        rng = np.random.default_rng([self.seed, epoch, k])
        return bucketed_batches_by_length(lengths, self.batch_size, rng, POOL_BATCHES)


PoolReader = Callable[[], Iterable[pa.Table]]  # one epoch's pools, in dataset order


def global_batches(plan: BatchPlan, read_epoch: PoolReader, start: int) -> Iterator[tuple[int, pa.Table, list[int]]]:
    """``(g, pool, row indices)`` for global batches ``g = start, start + 1, …`` (endless, over epochs).

    Pools wholly before ``start`` are read but not sorted; nothing before ``start`` is collated.
    """
    if plan.n_windows == 0:
        raise ElmoError("the training corpus has no windows")
    epoch = start // plan.batches_per_epoch
    g = epoch * plan.batches_per_epoch
    while True:
        for k, pool in enumerate(read_epoch()):
            if pool.num_rows != plan.pool_rows(k):
                raise ElmoError(f"training data changed: pool {k} has {pool.num_rows} windows, "
                                f"expected {plan.pool_rows(k)} of {plan.n_windows}")
            if g + plan.pool_batches(k) <= start:
                g += plan.pool_batches(k)
                continue
            lengths = pool.column("n_tokens").to_numpy()
            for indices in plan.pool_order(lengths, epoch, k):
                if g >= start:
                    yield g, pool, indices
                g += 1
        epoch += 1


def rank_batches(plan: BatchPlan, read_epoch: PoolReader, start: int, world_size: int,
                 rank: int) -> Iterator[list[list[str]]]:
    """This worker's batch (window token lists) for each step, starting at global batch ``start``."""
    for g, pool, indices in global_batches(plan, read_epoch, start):
        if (g - start) % world_size == rank:
            yield pool.column("tokens").take(pa.array(indices, pa.int64())).to_pylist()


def rank_eval_batches(tables: Iterable[pa.Table], world_size: int, rank: int) -> Iterator[list[list[str]]]:
    """Validation batches ``j`` with ``j % world_size == rank`` (each batch evaluated by one worker)."""
    for j, table in enumerate(tables):
        if j % world_size == rank:
            yield table.column("tokens").to_pylist()
