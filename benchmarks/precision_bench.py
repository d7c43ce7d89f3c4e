"""Opt-in low precision: speed and error of ``SentenceEmbedder(precision=...)`` against fp32.

Rows for fp32, bf16, int8 and auto (``runs``: what auto chose on this machine: bf16 where the
CPU has AMX, else fp32).

Per shape, the same batches of 64 real sentences (20–30 tokens, demo corpus) go through an
embedder per precision (token cache warm, as in a long run), round robin; tokens/s counts each
batch's best round. Error per layer against fp32 on the same sentences: max |diff| and the mean
cosine similarity of the token vectors (:func:`elmo_model.model.precision.layer_errors`).
"""

from __future__ import annotations

import time

import torch

from benchmarks.corpus import real_batches
from benchmarks.report import print_rows_main
from benchmarks.shapes import SHAPES, random_model
from elmo_model.infer.embedder import SentenceEmbedder
from elmo_model.model.precision import PRECISION_BOUNDS, PRECISION_CHOICES, layer_errors

PLAN = {"fixture": (3, 2), "small": (2, 2), "original": (1, 2)}  # (batches, rounds)
QUICK_PLAN = {"fixture": (1, 1)}


def bench_shape(name: str, n_batches: int, rounds: int, batch_size: int = 64, seed: int = 0) -> list[dict]:
    model = random_model(SHAPES[name], seed).requires_grad_(False)
    batches = real_batches(2 + n_batches, batch_size, seed=seed)
    warm, timed = batches[:2], batches[2:]
    embedders = {p: SentenceEmbedder(model, token_cache_size=100_000, precision=p) for p in PRECISION_CHOICES}
    for embedder in embedders.values():
        for batch in warm:
            embedder(batch)
    seconds = dict.fromkeys(PRECISION_CHOICES, 0.0)
    outputs: dict[str, list] = {p: [] for p in PRECISION_CHOICES}
    for sentences in timed:
        best = dict.fromkeys(PRECISION_CHOICES, float("inf"))
        for _ in range(rounds):
            for p, embedder in embedders.items():
                start = time.perf_counter()
                embedder(sentences)
                best[p] = min(best[p], time.perf_counter() - start)
        for p in PRECISION_CHOICES:
            seconds[p] += best[p]
            outputs[p] += embedders[p](sentences)
    tokens = sum(len(s) for batch in timed for s in batch)
    rows = []
    for p in PRECISION_CHOICES:
        errors = layer_errors(outputs["fp32"], outputs[p])
        runs = embedders[p].precision  # "auto": what it chose on this machine
        rows.append({
            "benchmark": "precision", "shape": name, "precision": p, "runs": runs,
            "tokens_per_s": tokens / seconds[p], "x_fp32": seconds["fp32"] / seconds[p],
            "max_abs_diff_per_layer": [round(d, 4) for d, _ in errors],
            "mean_cosine_per_layer": [round(c, 6) for _, c in errors],
            "stated_bound": list(PRECISION_BOUNDS[runs]), "tokens": tokens,
        })
    return rows


def rows(quick: bool = False) -> list[dict]:
    out = []
    for name, (n_batches, rounds) in (QUICK_PLAN if quick else PLAN).items():
        out += bench_shape(name, n_batches, rounds, 16 if quick else 64)
    return out


if __name__ == "__main__":
    torch.set_num_threads(2)
    print_rows_main(rows, __doc__.split("\n")[0])
