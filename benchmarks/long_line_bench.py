"""One very long line (10,000 and 100,000 tokens): time and peak memory of the window-by-window
embedder (:meth:`elmo_model.embedder.SentenceEmbedder.iter_long`).

``stream`` consumes the windows as they come (what a writer to disk does): its working memory
should not grow with the line. ``whole`` calls the embedder, which returns one
``(L+1, n, 2·proj)`` array: that array is the growth. Working memory = peak RSS during the call
minus RSS before it (after handing free heap memory back to the OS).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.corpus import make_sentences
from benchmarks.machine import peak_rss_mb, release_free_memory, reset_peak_rss, rss_mb
from benchmarks.shapes import SHAPES, random_model
from elmo_model.embedder import SentenceEmbedder

PLAN = [("fixture", 10_000, "stream"), ("fixture", 100_000, "stream"), ("fixture", 100_000, "whole"),
        ("small", 10_000, "stream")]
QUICK_PLAN = [("fixture", 2_000, "stream"), ("fixture", 20_000, "stream")]


def measure(shape: str, n_tokens: int, mode: str) -> dict:
    """Embed one ``n_tokens`` line; tokens/s and memory."""
    embedder = SentenceEmbedder(random_model(SHAPES[shape]).requires_grad_(False))
    line = make_sentences(1, n_tokens, n_tokens, seed=7)[0]
    embedder([line[:100]])  # warm-up
    release_free_memory()
    reset_peak_rss()
    before = rss_mb()
    start = time.perf_counter()
    if mode == "stream":
        n_out, checksum = 0, 0.0
        for piece in embedder.iter_long(line):
            n_out += piece.shape[1]
            checksum += float(np.abs(piece[-1, :, 0]).sum())
        output_mb = 0.0
    else:
        vectors = embedder([line])[0]
        n_out, output_mb = vectors.shape[1], vectors.nbytes / 2**20
    seconds = time.perf_counter() - start
    assert n_out == n_tokens
    return {"benchmark": "long line", "shape": shape, "tokens": n_tokens, "mode": mode,
            "window_tokens": embedder.window, "tokens_per_s": n_tokens / seconds,
            "peak_rss_mb": peak_rss_mb(), "working_mb": peak_rss_mb() - before,
            "output_array_mb": output_mb, "threads": torch.get_num_threads()}


def rows(quick: bool = False) -> list[dict]:
    """Rows for the benchmark table."""
    return [measure(*case) for case in (QUICK_PLAN if quick else PLAN)]
