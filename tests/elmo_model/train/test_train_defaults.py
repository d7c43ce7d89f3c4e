"""Training defaults per optimizer and the learning-rate schedule, against direct formulas."""

import math
from collections import Counter

import pytest
import torch

from elmo_model.errors import ElmoError
from elmo_model.train.schedule import lr_multiplier
from elmo_model.train.config import TrainConfig
from elmo_model.train.loop import new_model
from elmo_model.train.trainer import LmTrainer
from elmo_model.formats.vocab import Vocabulary


def test_defaults_per_optimizer():
    adamw = TrainConfig(steps=5000)
    assert adamw.optimizer == "adamw"
    assert (adamw.resolved_learning_rate, adamw.resolved_clip_norm, adamw.resolved_schedule,
            adamw.resolved_warmup_steps) == (2e-3, 1.0, "cosine", 500)
    assert TrainConfig(steps=50_000).resolved_warmup_steps == 1000  # capped
    adagrad = TrainConfig(optimizer="adagrad", steps=5000)  # bilm-tf's recipe
    assert (adagrad.resolved_learning_rate, adagrad.resolved_clip_norm, adagrad.resolved_schedule,
            adagrad.resolved_warmup_steps) == (0.2, 10.0, "constant", 0)
    assert all(adagrad.learning_rate_at(s) == 0.2 for s in (1, 7, 5000))
    set_explicitly = TrainConfig(optimizer="adagrad", learning_rate=0.1, clip_norm=2.0, schedule="inverse_sqrt",
                                 warmup_steps=10)
    assert (set_explicitly.resolved_learning_rate, set_explicitly.resolved_clip_norm,
            set_explicitly.resolved_schedule, set_explicitly.resolved_warmup_steps) == (0.1, 2.0, "inverse_sqrt", 10)
    with pytest.raises(ElmoError, match="schedule must be one of"):
        TrainConfig(schedule="linear")
    with pytest.raises(ElmoError, match="learning_rate and clip_norm must be > 0"):
        TrainConfig(learning_rate=0.0)


def test_the_optimizer_gets_the_resolved_settings():
    vocab = Vocabulary.from_counts(Counter("a b c".split()))
    for config, kind in ((TrainConfig(steps=100), torch.optim.AdamW),
                         (TrainConfig(steps=100, optimizer="adagrad"), torch.optim.Adagrad)):
        trainer = LmTrainer(new_model(config, vocab), config)
        assert isinstance(trainer.optimizer, kind)
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(config.learning_rate_at(1))


@pytest.mark.parametrize("step", [1, 5, 10, 11, 40, 99, 100, 150])
def test_schedule_shapes(step):
    warm, total, low = 10, 100, 0.1
    expected_warm = step / warm
    p = min(1.0, (step - warm) / (total - warm))
    cosine = low + (1 - low) * (1 + math.cos(math.pi * p)) / 2
    inverse_sqrt = (warm / step) ** 0.5
    if step <= warm:
        for schedule in ("cosine", "inverse_sqrt", "constant"):
            assert lr_multiplier(step, schedule, warm, total, low) == pytest.approx(expected_warm)
    else:
        assert lr_multiplier(step, "cosine", warm, total, low) == pytest.approx(cosine)
        assert lr_multiplier(step, "inverse_sqrt", warm, total, low) == pytest.approx(inverse_sqrt)
        assert lr_multiplier(step, "constant", warm, total, low) == 1.0
    assert lr_multiplier(100, "cosine", warm, total, low) == pytest.approx(low)
    assert lr_multiplier(10, "cosine", warm, total, low) == 1.0


def test_trainer_sets_the_scheduled_rate_each_step():
    from elmo_model.train.batching import collate, make_windows

    vocab = Vocabulary.from_counts(Counter("the cat sat on a mat".split()))
    config = TrainConfig(steps=6, warmup_steps=2, dropout=0.0)
    trainer = LmTrainer(new_model(config, vocab), config)
    batch = collate(make_windows([["the", "cat", "sat"], ["a", "mat"]], 10), vocab)
    rates = [trainer.train_step(batch)["learning_rate"] for _ in range(6)]
    assert rates == pytest.approx([config.learning_rate_at(s) for s in range(1, 7)])
    assert rates[0] == pytest.approx(1e-3) and rates[1] == pytest.approx(2e-3) and rates[-1] == pytest.approx(2e-4)
