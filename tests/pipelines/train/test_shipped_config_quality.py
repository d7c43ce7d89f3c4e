"""The training config shipped in ``pipelines/configs/train_tiny.toml`` learns: trained in one
process on the demo corpus, it beats an add-one unigram on held-out text."""

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from elmo_model.formats.vocab import Vocabulary
from elmo_model.train.loop import eval_batches, train_in_process
from elmo_model.train.trainer import unigram_perplexity
from pipelines.config import load_config
from pipelines.train.job import TrainJobConfig


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_tiny_config_as_shipped_beats_unigram_on_held_out_text():
    """pipelines/configs/train_tiny.toml's training settings on the demo corpus without its last
    1,000 sentences (other sections of its books and addresses), held out: per-sentence perplexity
    below 0.75 × an add-one unigram over the same vocabulary, in both directions. One process with
    the config's global batch (W workers × b windows = one worker × W·b, tested in test_train_ray)."""
    root = Path(__file__).parents[3]
    job = load_config(TrainJobConfig, str(root / "pipelines/configs/train_tiny.toml"), {}, [])
    config = dataclasses.replace(job.training, batch_size=job.training.batch_size * job.num_workers)
    corpus = root / "pipelines" / "data" / "demo_corpus.txt"
    sentences = [line.split() for line in corpus.read_text(encoding="utf-8").split("\n") if line.strip()]
    train, held_out = sentences[:-1000], sentences[-1000:]
    vocab = Vocabulary.from_counts(Counter(t for s in train for t in s), max_size=job.vocab_max_size)
    torch.set_num_threads(1)
    trainer = train_in_process(config, train, vocab)
    result = trainer.evaluate(eval_batches(held_out, vocab, config))
    ids = lambda group: np.concatenate([vocab.encode([*s, "</S>"]) for s in group])  # noqa: E731
    unigram = unigram_perplexity(ids(train), ids(held_out), len(vocab))
    assert result["perplexity_forward"] < 0.75 * unigram
    assert result["perplexity_backward"] < 0.75 * unigram
