"""GPU throughput of the original shape (random weights), against the README's projections.

``python -m benchmarks.gpu_bench``: inference (``SentenceEmbedder``, bf16 autocast, batches of
256 real sentences of 20–30 tokens) and training (``LmTrainer`` one process, bf16 autocast,
sampled softmax, batches of 128 windows) in tokens/s per GPU. Prints one JSON line per row and
a table; exits 0 with a message when no CUDA GPU is present.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import torch

from benchmarks.corpus import real_batches
from benchmarks.shapes import SHAPES, random_model

# The README's projections per H100-class GPU (tokens/s).
PROJECTED = {"inference": 300_000, "training": 100_000}


def inference_row(n_batches: int = 8, batch_size: int = 256) -> dict:
    from elmo_model.infer.embedder import SentenceEmbedder

    model = random_model(SHAPES["original"]).requires_grad_(False)
    embedder = SentenceEmbedder(model, "cuda", precision="bf16", token_cache_size=100_000)
    batches = real_batches(n_batches + 1, batch_size, seed=3)
    embedder(batches[0])
    torch.cuda.synchronize()
    start = time.perf_counter()
    tokens = 0
    for batch in batches[1:]:
        embedder(batch)
        tokens += sum(len(s) for s in batch)
    torch.cuda.synchronize()
    return {"benchmark": "gpu", "what": "inference", "tokens_per_s": tokens / (time.perf_counter() - start)}


def training_row(steps: int = 10, batch_size: int = 128) -> dict:
    from elmo_model.train.batching import collate, make_windows
    from elmo_model.train.config import TrainConfig
    from elmo_model.train.loop import new_model
    from elmo_model.train.trainer import LmTrainer
    from elmo_model.formats.vocab import Vocabulary

    sentences = [s for b in real_batches(steps + 2, batch_size, seed=4) for s in b]
    counts = Counter(w for s in sentences for w in s)
    vocab = Vocabulary.from_counts(counts)
    config = TrainConfig(model="original", batch_size=batch_size, softmax="sampled", steps=steps)
    trainer = LmTrainer(new_model(config, vocab), config, "cuda")
    windows = make_windows(sentences, config.max_tokens)
    batches = [collate(windows[i : i + batch_size], vocab) for i in range(0, len(windows), batch_size)]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        trainer.train_step(batches[0])
        torch.cuda.synchronize()
        start, tokens = time.perf_counter(), 0
        for batch in batches[1 : steps + 1]:
            tokens += trainer.train_step(batch)["n_targets"]
        torch.cuda.synchronize()
    return {"benchmark": "gpu", "what": "training", "tokens_per_s": tokens / (time.perf_counter() - start)}


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU on this machine; nothing measured (skipped).")
        return 0
    name = torch.cuda.get_device_name(0)
    rows = [inference_row(), training_row()]
    print(f"GPU: {name}; original shape, random weights, bf16 autocast")
    print("| what | tokens/s | README projection (H100-class) | ratio |\n|---|---|---|---|")
    for row in rows:
        row["device"] = name
        goal = PROJECTED[row["what"]]
        print(f"| {row['what']} | {row['tokens_per_s']:,.0f} | ≥ {goal:,} | {row['tokens_per_s'] / goal:.2f} |")
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
