"""The training data order of sentence mode: the same global batch sequence in every run and on every worker.

The windows (or, in stream mode, whole sentences) are ordered once by :func:`order_key`, a
seeded hash of their provenance — a global shuffle that does not depend on how they were read.
They are then taken ``pool = batch_size · POOL_BATCHES`` at a time (pool k is items
``[k·pool, (k+1)·pool)``); inside a pool they are shuffled, sorted by length, cut into batches and
the batches shuffled, all seeded by ``(seed, epoch, k)`` (:class:`BatchPlan`). This gives one
endless sequence of *global batches* ``0, 1, 2, …`` over the epochs. With ``W`` workers, global
step ``s`` (0-based) trains global batches ``p + s·W … p + s·W + W − 1`` (``p`` = the position
where this world size started, 0 for a fresh run); rank ``r`` takes the ``r``-th of them. A
resumed run therefore continues with exactly the batches an uninterrupted run would have trained
next: no batch twice, none skipped. Pools come from a :data:`PoolReader`: a list in this process,
Arrow tables of a Ray dataset on a Ray Train worker (:mod:`pipelines.train.data`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from elmo_model.train.batching import bucketed_batches_by_length, sentence_windows
from elmo_model.errors import ElmoError

POOL_BATCHES = 50  # batches per length-sorting pool (bilm-tf-like bucketing)
NO_TOKEN_LIMIT = 1 << 30  # "max_tokens" that keeps every sentence in one window (stream mode's items)


def order_key(seed: int, source: str, line: int, sentence: int, window: int) -> int:
    """A seeded 63-bit hash of an item's provenance: sorting by it is a reproducible shuffle."""
    digest = hashlib.blake2b(f"{seed}\0{source}\0{line}\0{sentence}\0{window}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def ordered_items(sentences: Sequence[Sequence[str]], max_tokens: int, seed: int, source: str = "") -> list[list[str]]:
    """Every sentence's windows (``<S> … </S>``) in the training order: sorted by provenance key,
    with sentence ``i`` at line ``i`` of ``source`` (as the Ray job orders the lines of a file)."""
    keyed = [((order_key(seed, source, line, 0, w), source, line, 0, w), window)
             for line, tokens in enumerate(sentences) if tokens
             for w, window in enumerate(sentence_windows(tokens, max_tokens))]
    keyed.sort(key=lambda item: item[0])
    return [window for _, window in keyed]


class Pool(Protocol):
    """A run of consecutive items (token lists) of the ordered data."""

    def __len__(self) -> int: ...
    def lengths(self) -> np.ndarray: ...
    def take(self, indices: Sequence[int]) -> list[list[str]]: ...


PoolReader = Callable[[], Iterable[Pool]]  # one epoch's pools (or any chunks), in order


class ListPool:
    """A :class:`Pool` over a list of token lists."""

    def __init__(self, items: Sequence[Sequence[str]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(w) for w in self.items), dtype=np.int64, count=len(self.items))

    def take(self, indices: Sequence[int]) -> list[list[str]]:
        return [list(self.items[i]) for i in indices]


def list_pools(items: Sequence[Sequence[str]], pool_size: int) -> PoolReader:
    """A :data:`PoolReader` over an in-memory item list."""
    return lambda: (ListPool(items[k : k + pool_size]) for k in range(0, len(items), pool_size))


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


def global_batches(plan: BatchPlan, read_epoch: PoolReader, start: int) -> Iterator[tuple[int, Pool, list[int]]]:
    """``(g, pool, row indices)`` for global batches ``g = start, start + 1, …`` (endless, over epochs).

    Pools wholly before ``start`` are read but not sorted; nothing before ``start`` is collated.
    """
    if plan.n_windows == 0:
        raise ElmoError("the training corpus has no windows")
    epoch = start // plan.batches_per_epoch
    g = epoch * plan.batches_per_epoch
    while True:
        for k, pool in enumerate(read_epoch()):
            if len(pool) != plan.pool_rows(k):
                raise ElmoError(f"training data changed: pool {k} has {len(pool)} windows, "
                                f"expected {plan.pool_rows(k)} of {plan.n_windows}")
            if g + plan.pool_batches(k) <= start:
                g += plan.pool_batches(k)
                continue
            lengths = pool.lengths()
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
            yield pool.take(indices)


def rank_eval_batches(batches: Iterable[Sequence[Sequence[str]]], world_size: int,
                      rank: int) -> Iterator[list[list[str]]]:
    """Validation batches ``j`` with ``j % world_size == rank`` (each batch evaluated by one worker)."""
    for j, windows in enumerate(batches):
        if j % world_size == rank:
            yield [list(w) for w in windows]
