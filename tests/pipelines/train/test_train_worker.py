"""Pieces of the Ray Train worker that need no Ray: autocast wrapper, the single-process collective, resume checks."""

from collections import Counter

import pytest
import torch

from elmo_model.train.batching import collate, make_windows
from elmo_model.errors import ElmoError
from elmo_model.train.config import TrainConfig
from elmo_model.train.loop import new_model
from elmo_model.train.trainer import LmTrainer
from elmo_model.formats.vocab import Vocabulary
from pipelines.train.resume import check_resume_key
from elmo_model.train.loop import SingleProcess
from elmo_model.model.precision import Autocast

SENTENCES = [s.split() for s in ["the cat sat on the mat", "a dog ran", "the dog saw a cat on a mat"]]


def test_autocast_wrapper_trains_like_the_plain_model():
    """The GPU path's bf16 wrapper (checked here with CPU autocast): same loss to bf16 precision."""
    vocab = Vocabulary.from_counts(Counter(t for s in SENTENCES for t in s))
    batch = collate(make_windows(SENTENCES, 10), vocab)
    config = TrainConfig(dropout=0.0, batch_size=3)
    plain = LmTrainer(new_model(config, vocab), config).train_step(batch)
    model = new_model(config, vocab)
    wrapped = LmTrainer(model, config, wrap=lambda m: Autocast(m, device_type="cpu")).train_step(batch)
    assert wrapped["n_targets"] == plain["n_targets"]
    assert wrapped["loss"] == pytest.approx(plain["loss"], rel=2e-2)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_collective_of_one_process_is_the_identity():
    one = SingleProcess()
    assert (one.rank, one.world_size) == (0, 1)
    assert one.all_reduce_sum([1.5, 2.0, 3]) == [1.5, 2.0, 3]
    t = torch.arange(3)
    assert one.all_gather(t)[0] is t


def test_resume_key_mismatch_lists_every_change():
    check_resume_key({"a": 1, "b": [1]}, {"a": 1, "b": [1]}, "run 'x'")
    with pytest.raises(ElmoError, match=r"^run 'x' already has a checkpoint made with other settings "
                                        r"\(a: 1 → 2; c: None → 'new'\); use a new name"):
        check_resume_key({"a": 1, "b": [1]}, {"a": 2, "b": [1], "c": "new"}, "run 'x'")
