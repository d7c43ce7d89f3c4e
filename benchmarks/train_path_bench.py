"""Training tokens/s: the fast training path vs the step-by-step path it replaced, in one run.

``python -m benchmarks.train_path_bench [--quick]``. Two trainers start from the same weights;
each batch is trained by one and then the other (alternating which goes first), so a busy shared
machine slows both alike. ``current`` is the step-by-step path (the oracle of
:mod:`elmo_model.testing.step_by_step`: ``Conv1d`` over all 50 chars, one autograd LSTM step at a
time, ``F.cross_entropy``), ``fast`` the production path. Both see the same batches and the same
dropout masks, so their losses must agree step after step (``max_loss_diff``: float32 drift).

Shapes: ``small`` (the preset: char-CNN of 2048 filters, LSTM 1024 → 128; sampled softmax,
8192 negatives of a 30 k vocabulary, Adagrad, 32 sentences × 20–30 tokens) and ``ptb``
(the model of ``pipelines/configs/train_ptb_cpu.toml``, read from it: Kim-small char-CNN, LSTM 512 → 256; full softmax
over 10 k words, AdamW, 32 sentences × 10–35 tokens, windows of 40), and ``ptb-stream``, the same
model in the PTB config's stream mode (32 streams × 20 positions per direction, state carried;
without dropout, see ``SHAPES``). Tokens are training targets per direction.
"""

from __future__ import annotations

import time
import tomllib
from collections import Counter
from pathlib import Path

import torch

from benchmarks.corpus import make_sentences, make_vocabulary
from benchmarks.report import print_rows_main
from elmo_model.train.batching import collate, make_windows
from elmo_model.model.chars import BOS_TOKEN, EOS_TOKEN
from elmo_model.testing.step_by_step import StepByStepLm, StepByStepStreamLm
from elmo_model.train.stream import TokenStreams
from elmo_model.train.config import TrainConfig
from elmo_model.train.loop import new_model
from elmo_model.train.trainer import LmTrainer
from elmo_model.formats.vocab import Vocabulary

PTB_CONFIG = Path(__file__).resolve().parent.parent / "pipelines" / "configs" / "train_ptb_cpu.toml"
PTB_MODEL = tomllib.loads(PTB_CONFIG.read_text())["training"]["model_overrides"]
SHAPES = {
    # name: (config, vocabulary size, sentence lengths)
    "small": (TrainConfig(model="small", batch_size=32, softmax="sampled"), 30_000, (20, 30)),
    "ptb": (TrainConfig(model="small", model_overrides=PTB_MODEL, optimizer="adamw", learning_rate=0.004,
                        batch_size=32, max_tokens=40, softmax="full"), 10_000, (10, 35)),
    # the PTB config's own mode: 32 streams × 20 positions per direction; no dropout, because the
    # fast path draws its masks over the 32 windows each direction reads, the current one over 64
    "ptb-stream": (TrainConfig(model="small", model_overrides=PTB_MODEL, optimizer="adamw", learning_rate=0.004,
                               mode="stream", batch_size=32, max_tokens=20, softmax="full", dropout=0.0),
                   10_000, (10, 35)),
}


def measure(shape: str, steps: int, seed: int = 0) -> dict:
    """One row: both paths over the same ``steps`` batches (after one warm-up batch each)."""
    config, n_vocab, (shortest, longest) = SHAPES[shape]
    words = make_vocabulary(n_vocab, seed)
    vocab = Vocabulary.from_counts(Counter({w: len(words) - i for i, w in enumerate(words)}))
    sentences = make_sentences(config.batch_size * (steps + 1), shortest, longest, seed=seed, vocab=words)
    size = config.batch_size
    if config.mode == "stream":
        streams = TokenStreams([[BOS_TOKEN, *s, EOS_TOKEN] for s in sentences], vocab, config.max_tokens, size,
                               range(size), max_chars=50)
        batches = [streams.batch(k) for k in range(steps + 1)]
    else:
        windows = make_windows(sentences, config.max_tokens)
        batches = [collate(windows[i : i + size], vocab) for i in range(0, len(windows), size)][: steps + 1]
    trainers = {}
    for name in ("current", "fast"):
        model = new_model(config, vocab)
        oracle = StepByStepStreamLm if config.mode == "stream" else StepByStepLm
        wrap = (lambda inner, model=model: oracle(model)) if name == "current" else None
        trainers[name] = LmTrainer(model, config, wrap=wrap)
    seconds = {name: 0.0 for name in trainers}
    tokens, max_loss_diff = 0, 0.0
    for k, batch in enumerate(batches):
        losses = {}
        for name in (list(trainers) if k % 2 == 0 else list(trainers)[::-1]):
            start = time.perf_counter()
            metrics = trainers[name].train_step(batch)
            if k > 0:  # batch 0 warms up (allocator, MKL kernels)
                seconds[name] += time.perf_counter() - start
            losses[name] = metrics["loss"]
        max_loss_diff = max(max_loss_diff, abs(losses["current"] - losses["fast"]))
        tokens += metrics["n_targets"] if k > 0 else 0
    return {
        "benchmark": "training path", "shape": shape, "steps": len(batches) - 1, "batch": size,
        "tokens_per_s_current": tokens / seconds["current"], "tokens_per_s_fast": tokens / seconds["fast"],
        "x_current": seconds["current"] / seconds["fast"], "max_loss_diff": max_loss_diff,
        "threads": torch.get_num_threads(),
    }


def rows(quick: bool = False) -> list[dict]:
    """Rows for the benchmark table."""
    return [measure("small", 1 if quick else 4), measure("ptb", 2 if quick else 10),
            measure("ptb-stream", 2 if quick else 10)]


def main() -> None:
    print_rows_main(rows, __doc__)


if __name__ == "__main__":
    main()
