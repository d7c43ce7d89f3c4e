"""Train a biLM in this process: windows → bucketed batches → :class:`LmTrainer` steps.

The data order is a pure function of ``(seed, epoch)``, so the position in the data is the step
count: resuming from a checkpoint at step s continues with exactly the batch an uninterrupted run
would have trained next.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from elmo_model.batching import Batch, bucketed_batches, collate, make_windows
from elmo_model.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint
from elmo_model.errors import ElmoError
from elmo_model.language_model import BiLmWithSoftmax, initialize_like_bilm_tf
from elmo_model.train_config import TrainConfig
from elmo_model.trainer import LmTrainer
from elmo_model.vocab import Vocabulary

log = logging.getLogger(__name__)


class WindowStream:
    """Endless, deterministic batches over the training windows, addressable by step."""

    def __init__(self, windows: list[list[str]], vocab: Vocabulary, config: TrainConfig) -> None:
        if not windows:
            raise ElmoError("the training corpus is empty (no non-empty sentences)")
        self.windows, self.vocab, self.config = windows, vocab, config
        self.batches_per_epoch = sum(1 for _ in self._epoch_order(0))
        self.max_chars = config.options().max_characters_per_token

    def _epoch_order(self, epoch: int) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.config.seed, epoch])
        return bucketed_batches(self.windows, self.config.batch_size, rng)

    def from_step(self, step: int) -> Iterator[Batch]:
        """Batches starting at global step ``step`` (0-based)."""
        epoch, offset = divmod(step, self.batches_per_epoch)
        while True:
            for k, indices in enumerate(self._epoch_order(epoch)):
                if k >= offset:
                    yield collate([self.windows[i] for i in indices], self.vocab, self.max_chars)
            epoch, offset = epoch + 1, 0


def eval_batches(sentences: Sequence[Sequence[str]], vocab: Vocabulary, config: TrainConfig) -> list[Batch]:
    """Held-out batches in corpus order (no shuffling), for perplexity."""
    windows = make_windows(sentences, config.max_tokens)
    max_chars = config.options().max_characters_per_token
    size = config.batch_size
    return [collate(windows[i : i + size], vocab, max_chars) for i in range(0, len(windows), size)]


def new_model(config: TrainConfig, vocab: Vocabulary) -> BiLmWithSoftmax:
    torch.manual_seed(config.seed)
    model = BiLmWithSoftmax(config.options(), len(vocab), config.dropout)
    initialize_like_bilm_tf(model)
    return model


def train_in_process(
    config: TrainConfig,
    train_sentences: Sequence[Sequence[str]],
    vocab: Vocabulary,
    valid_sentences: Sequence[Sequence[str]] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    model: BiLmWithSoftmax | None = None,
    on_metrics: Callable[[dict[str, float]], None] | None = None,
    stop_after: int | None = None,
) -> LmTrainer:
    """Train for ``config.steps`` steps (resuming from ``checkpoint_path`` if it exists).

    ``model`` (e.g. from :func:`elmo_model.export.load_pretrained_lm`) fine-tunes instead of
    starting from scratch. ``stop_after`` ends early after that many steps of this call (for tests
    of resumption). Returns the trainer (its model is trained).
    """
    stream = WindowStream(make_windows(train_sentences, config.max_tokens), vocab, config)
    trainer = LmTrainer(model or new_model(config, vocab), config)
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        state = load_checkpoint(checkpoint_path)
        trainer.load_state_dict(state)
        restore_rng_state(state["rng"])
        log.info("resumed from %s at step %d", checkpoint_path, trainer.step)
    done_here = 0
    batches = stream.from_step(trainer.step)
    while trainer.step < config.steps and (stop_after is None or done_here < stop_after):
        metrics = trainer.train_step(next(batches))
        done_here += 1
        if on_metrics is not None and (trainer.step % max(config.log_every, 1) == 0 or trainer.step == config.steps):
            on_metrics(metrics)
        if checkpoint_path is not None and config.checkpoint_every and trainer.step % config.checkpoint_every == 0:
            save_checkpoint(checkpoint_path, trainer.state_dict(), config.to_dict(), vocab.tokens)
        if valid_sentences and config.eval_every and trainer.step % config.eval_every == 0:
            log.info("step %d validation %s", trainer.step, trainer.evaluate(eval_batches(valid_sentences, vocab, config)))
    if checkpoint_path is not None:
        save_checkpoint(checkpoint_path, trainer.state_dict(), config.to_dict(), vocab.tokens)
    return trainer
