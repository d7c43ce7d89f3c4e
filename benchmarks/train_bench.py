"""Training throughput of the in-process biLM loop (tokens/s), fixture-sized and "small" shapes.

``python -m benchmarks.train_bench [--steps N]``. Tokens are training targets per direction
(every input position but the last of each window). Sampled softmax (8192 negatives over a 30 k
vocabulary), Adagrad, batches of 32 sentences × 20–30 tokens.
"""

from __future__ import annotations

import time
from collections import Counter

import torch

from benchmarks.corpus import make_sentences, make_vocabulary
from benchmarks.report import print_rows_main
from elmo_model.train.batching import collate, make_windows
from elmo_model.train.config import TrainConfig
from elmo_model.train.loop import new_model
from elmo_model.train.trainer import LmTrainer
from elmo_model.formats.vocab import Vocabulary


def measure(preset: str, steps: int, batch_size: int = 32, seed: int = 0) -> dict:
    words = make_vocabulary(30_000, seed)
    sentences = make_sentences(batch_size * (steps + 2), seed=seed, vocab=words)
    vocab = Vocabulary.from_counts(Counter({w: len(words) - i for i, w in enumerate(words)}))
    config = TrainConfig(model=preset, batch_size=batch_size, softmax="sampled", steps=steps,
                         optimizer="adagrad")  # as measured in the README table
    trainer = LmTrainer(new_model(config, vocab), config)
    windows = make_windows(sentences, config.max_tokens)
    batches = [collate(windows[i : i + batch_size], vocab) for i in range(0, len(windows), batch_size)]
    trainer.train_step(batches[0])  # warm-up
    tokens, start = 0, time.perf_counter()
    for batch in batches[1 : steps + 1]:
        tokens += trainer.train_step(batch)["n_targets"]
    elapsed = time.perf_counter() - start
    return {"benchmark": "train in-process", "shape": preset, "steps": steps, "batch": batch_size,
            "tokens_per_s": tokens / elapsed, "s_per_step": elapsed / steps,
            "threads": torch.get_num_threads()}


def rows(quick: bool = False) -> list[dict]:
    """Rows for the benchmark table."""
    return [measure("tiny", 5 if quick else 30), measure("small", 2 if quick else 6)]


def main() -> None:
    print_rows_main(rows, __doc__)


if __name__ == "__main__":
    main()
