"""Reference vs production on the fixture, small and original shapes, interleaved batch by batch.

Every contender embeds the same batches (64 real sentences of 20–30 tokens from the demo corpus) with the same
random-weight model, one after the other for each batch, so that a busy machine slows them alike:

- ``reference``: :class:`elmo_model.testing.reference.ReferenceBiLm`, the plain oracle (char-CNN over every
  position, one sentence and one time step at a time; skipped on the original shape, where it
  takes minutes a batch);
- ``batched reference``: :class:`elmo_model.testing.batched_reference.BatchedReferenceBiLm`, AllenNLP's
  algorithm written independently (full char-CNN, per LSTM one batched step per time step):
  what a careful user would otherwise run, and the ratio the README states;
- ``plain batched``: ``BiLm.forward`` with autograd on (the training path: batched steps,
  ``torch.cat`` per step, ``Conv1d`` over all 50 chars of each distinct token);
- ``production``: ``BiLm.forward`` under ``torch.inference_mode`` (the packed fast path);
- ``production, gates per row``: the same with the first layer's input gates computed for every
  position instead of once per distinct token (what that table saves, in the same run);
- ``embedder``: ``SentenceEmbedder`` from token strings to numpy arrays (char ids included);
- ``embedder + cache``: the same with the token-vector cache, first filled with the words of
  4 other batches (the steady state of a long run, where frequent words are cached).

Char ids are built outside the timed region for the first three (they take char ids). A shared
machine slows runs at random, so each batch is run a few times by every contender, round robin,
and its best time is kept: tokens/s = tokens / Σ_batches min_rounds(seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from elmo_model.testing.batched_reference import BatchedReferenceBiLm
from benchmarks.corpus import real_batches
from benchmarks.machine import peak_rss_mb, release_free_memory, reset_peak_rss, rss_mb
from benchmarks.shapes import SHAPES, flops_per_position, random_model
from elmo_model.model import packed_lstm
from elmo_model.model.chars import batch_char_ids
from elmo_model.infer.embedder import SentenceEmbedder
from elmo_model.testing.reference import ReferenceBiLm
from elmo_model.formats.weights import bilm_arrays

# (batches, rounds) per shape: every batch is run ``rounds`` times by each contender, round
# robin, and its best time counts (the reference on the original shape takes ~30 s a batch).
PLAN = {"fixture": (6, 3), "small": (3, 2), "original": (2, 2)}
# Contenders left out per shape (the per-step oracle needs minutes a batch on the original shape).
SKIP = {"original": {"reference"}}
QUICK_PLAN = {"fixture": (2, 2), "small": (1, 1)}
QUICK_BATCH_SIZE = 16


@dataclass
class Tally:
    """Accumulated time, tokens, memory and worst difference of one contender."""

    seconds: float = 0.0
    tokens: int = 0
    positions: int = 0
    peak_rss_mb: float = 0.0
    work_mb: float = 0.0
    max_diff: float = 0.0
    runs: list[float] = field(default_factory=list)


def _layers_of(sentences, layers: list[torch.Tensor]) -> list[np.ndarray]:
    """Per sentence ``(L+1, n, D)`` without <S>/</S>, from batch layers."""
    stacked = torch.stack(layers, dim=1).float().numpy()  # (batch, L+1, T, D)
    return [stacked[b, :, 1 : len(s) + 1] for b, s in enumerate(sentences)]


def _contenders(model, reference, batched, warm_batches: list, skip: set[str]) -> dict[str, Callable]:
    embedder = SentenceEmbedder(model)
    cached = SentenceEmbedder(model, token_cache_size=100_000)
    for batch in warm_batches:  # the steady state of a long run: frequent words already cached
        cached.token_vectors(batch)

    def plain(sentences, ids):
        with torch.enable_grad():  # weights do not require grad: no graph, the training code path
            return _layers_of(sentences, model(ids).layers)

    def production(sentences, ids):
        with torch.inference_mode():
            return _layers_of(sentences, model(ids).layers)

    def per_row_gates(sentences, ids):  # production without the first layer's distinct-token table
        share = packed_lstm.DISTINCT_MAX_SHARE
        packed_lstm.DISTINCT_MAX_SHARE = 0.0
        try:
            return production(sentences, ids)
        finally:
            packed_lstm.DISTINCT_MAX_SHARE = share

    contenders = {
        "reference": lambda sentences, ids: _layers_of(sentences, reference(ids)),
        "batched reference": lambda sentences, ids: _layers_of(sentences, batched(ids)),
        "plain batched": plain,
        "production": production,
        "production, gates per row": per_row_gates,
        "embedder": lambda sentences, ids: embedder(sentences),
        "embedder + cache": lambda sentences, ids: cached(sentences),
    }
    return {key: fn for key, fn in contenders.items() if key not in skip}


def bench_shape(name: str, n_batches: int, rounds: int = 1, batch_size: int = 64, seed: int = 0) -> list[dict]:
    """Rows for one shape: every contender over the same ``n_batches`` batches, interleaved."""
    model = random_model(SHAPES[name], seed).requires_grad_(False)
    arrays = bilm_arrays(model)
    reference, batched = ReferenceBiLm(model.options, arrays), BatchedReferenceBiLm(model.options, arrays)
    warm_batches, timed = _split(real_batches(4 + n_batches, batch_size, seed=seed), 4)
    contenders = _contenders(model, reference, batched, warm_batches, SKIP.get(name, set()))
    warm = warm_batches[0][:2]  # warm-up: allocator, MKL kernels
    warm_ids = torch.from_numpy(batch_char_ids(warm, add_boundaries=True)).long()
    for fn in contenders.values():
        fn(warm, warm_ids)
    tallies = {key: Tally() for key in contenders}
    for sentences in timed:
        ids = torch.from_numpy(batch_char_ids(sentences, add_boundaries=True)).long()
        best = {key: float("inf") for key in contenders}
        expected = None
        for _ in range(rounds):
            for key, fn in contenders.items():
                release_free_memory()
                reset_peak_rss()
                before = rss_mb()
                start = time.perf_counter()
                got = fn(sentences, ids)
                best[key] = min(best[key], time.perf_counter() - start)
                tally = tallies[key]
                tally.peak_rss_mb = max(tally.peak_rss_mb, peak_rss_mb())
                tally.work_mb = max(tally.work_mb, peak_rss_mb() - before)
                expected = got if expected is None else expected
                tally.max_diff = max(tally.max_diff, max(float(np.abs(a - b).max()) for a, b in zip(got, expected)))
                del got
        for key, tally in tallies.items():
            tally.seconds += best[key]
            tally.runs.append(best[key])
            tally.tokens += sum(len(s) for s in sentences)
            tally.positions += sum(len(s) + 2 for s in sentences)
    return _rows(name, tallies, flops_per_position(model.options)["total"])


def _split(items: list, n: int) -> tuple[list, list]:
    return items[:n], items[n:]


def _rows(shape: str, tallies: dict[str, Tally], flops: float) -> list[dict]:
    reference = tallies.get("reference")
    batched = tallies["batched reference"]
    plain = tallies["plain batched"]
    rows = []
    for key, t in tallies.items():
        rows.append({
            "benchmark": "inference", "shape": shape, "path": key,
            "tokens_per_s": t.tokens / t.seconds,
            "x_batched_reference": batched.seconds / t.seconds,
            "x_reference": reference.seconds / t.seconds if reference else None,
            "x_plain_batched": plain.seconds / t.seconds,
            "gflop_per_s_equiv": t.positions * flops / t.seconds / 1e9,
            "max_abs_diff": t.max_diff,
            "peak_rss_mb": t.peak_rss_mb, "work_mb": t.work_mb,
            "batches": len(t.runs), "tokens": t.tokens,
            "s_per_batch_min": min(t.runs), "s_per_batch_max": max(t.runs),
        })
    return rows


def rows(quick: bool = False) -> list[dict]:
    """Rows for the benchmark table (``quick``: fewer, smaller batches, no original shape)."""
    out = []
    for name, (n_batches, rounds) in (QUICK_PLAN if quick else PLAN).items():
        out += bench_shape(name, n_batches, rounds, QUICK_BATCH_SIZE if quick else 64)
    return out
