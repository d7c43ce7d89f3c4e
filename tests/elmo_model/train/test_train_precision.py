"""bf16 training on CPU: a training step's loss and every gradient against float32 (within the
bf16 bound), the products really in bf16 (LSTM recurrence, projection and softmax included),
master weights and optimizer state float32, and ``training.precision`` chosen by capability."""

from collections import Counter

import pytest
import torch

from elmo_model.model import lstm_train
from elmo_model.model import precision as precision_module
from elmo_model.train.batching import collate, make_windows
from elmo_model.errors import ElmoError
from elmo_model.model.precision import Autocast, training_autocast
from elmo_model.train.config import TrainConfig
from elmo_model.train.loop import new_model
from elmo_model.train.trainer import LmTrainer
from elmo_model.formats.vocab import Vocabulary

TEXT = ["the cat sat on the mat", "a dog ran to the river bank", "the dog saw a cat on a mat",
        "we sat on the bank of the river", "rates at the bank rose"]
SENTENCES = [s.split() for s in TEXT]
# bf16 against float32 after one step: loss within 1 % (relative), each parameter's gradient
# with cosine similarity ≥ 0.99 and norm within 5 %.
LOSS_REL, GRAD_COSINE, GRAD_NORM_REL = 1e-2, 0.99, 5e-2


def bf16(module):
    """The forward pass under CPU bf16 autocast, as a CPU training worker with precision bf16 runs it."""
    return Autocast(module, "cpu")


def _step(config, vocab, batch, wrap=None):
    torch.manual_seed(0)
    model = new_model(config, vocab)
    trainer = LmTrainer(model, config, wrap=wrap)
    metrics = trainer.train_step(batch)
    return metrics, model, trainer


@pytest.mark.parametrize("model_name, softmax", [("tiny", "full"), ("tiny", "sampled"), ("small", "full")])
def test_a_bf16_step_has_the_loss_and_gradients_of_fp32(model_name, softmax, monkeypatch):
    vocab = Vocabulary.from_counts(Counter(t for s in SENTENCES for t in s))
    batch = collate(make_windows(SENTENCES, 12), vocab)
    config = TrainConfig(model=model_name, dropout=0.0, batch_size=len(SENTENCES), softmax=softmax,
                         n_negative_samples_batch=8, clip_norm=1e9)
    grads = {}
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: None)  # keep the gradients
    exact, model32, _ = _step(config, vocab, batch)
    grads["fp32"] = {n: p.grad.clone() for n, p in model32.named_parameters() if p.grad is not None}
    low_calls = []
    real_low = lstm_train._low_bmm
    monkeypatch.setattr(lstm_train, "_low_bmm", lambda dtype: low_calls.append(dtype) or real_low(dtype))
    low, model16, trainer = _step(config, vocab, batch, wrap=bf16)
    grads["bf16"] = {n: p.grad.clone() for n, p in model16.named_parameters() if p.grad is not None}
    # the recurrence's backward ran its products in bf16, once per layer (both directions together)
    assert low_calls == [torch.bfloat16] * config.options().n_layers
    assert low["loss"] != exact["loss"] and low["loss"] == pytest.approx(exact["loss"], rel=LOSS_REL)
    assert set(grads["bf16"]) == set(grads["fp32"])
    for name, g32 in grads["fp32"].items():
        g16 = grads["bf16"][name]
        assert g16.dtype == torch.float32  # master weights (and their gradients) stay float32
        if g32.norm() < 1e-6:
            continue
        cosine = torch.nn.functional.cosine_similarity(g16.flatten().double(), g32.flatten().double(), dim=0)
        assert cosine >= GRAD_COSINE, (name, float(cosine))
        assert float(g16.norm()) == pytest.approx(float(g32.norm()), rel=GRAD_NORM_REL), name
    assert all(p.dtype == torch.float32 for p in model16.parameters())


def test_bf16_training_learns(monkeypatch):
    vocab = Vocabulary.from_counts(Counter(t for s in SENTENCES for t in s))
    batch = collate(make_windows(SENTENCES, 12), vocab)
    config = TrainConfig(dropout=0.0, batch_size=len(SENTENCES), steps=30)
    curves = {}
    for name, wrap in (("fp32", None), ("bf16", bf16)):
        torch.manual_seed(0)
        trainer = LmTrainer(new_model(config, vocab), config, wrap=wrap)
        curves[name] = [trainer.train_step(batch)["loss"] for _ in range(30)]
    assert curves["bf16"][-1] < 0.85 * curves["bf16"][0]  # it learns …
    assert curves["bf16"][-1] == pytest.approx(curves["fp32"][-1], rel=0.05)  # … as float32 does
    state = trainer.optimizer.state_dict()["state"]
    assert all(t.dtype == torch.float32 for s in state.values() for t in s.values() if t.dim() > 0)


@pytest.mark.parametrize("has_amx", [True, False])
def test_training_precision_by_capability(monkeypatch, has_amx):
    monkeypatch.setattr(precision_module, "cpu_bf16_isa", lambda: "AMX" if has_amx else None)
    assert training_autocast("auto", "cpu")[0] == (torch.bfloat16 if has_amx else None)
    assert training_autocast(None, "cpu") == (None, "a CPU worker's default")
    assert training_autocast(None, "cuda")[0] == torch.bfloat16  # GPU workers keep their bf16 autocast
    assert training_autocast("fp32", "cuda") == (None, "asked for")
    assert training_autocast("bf16", "cpu") == (torch.bfloat16, "asked for")


def test_a_bad_training_precision_is_refused():
    with pytest.raises(ElmoError, match="precision must be one of"):
        TrainConfig(precision="fp16")
