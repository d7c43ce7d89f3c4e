"""One training step, evaluation and the optimizer: the pieces both training loops share.

The in-process loop (:mod:`elmo_model.train_loop`) and the Ray Train job call the same
:class:`LmTrainer`; the Ray job only passes a DDP-wrapped module and the global target count.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from elmo_model.batching import Batch
from elmo_model.language_model import BiLmWithSoftmax, LmLoss
from elmo_model.train_config import TrainConfig


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    return torch.optim.Adagrad(
        params, lr=config.learning_rate, initial_accumulator_value=config.adagrad_initial_accumulator
    )


def to_tensors(batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    char_ids = torch.as_tensor(batch["char_ids"]).long().to(device)
    token_ids = torch.as_tensor(batch["token_ids"]).long().to(device)
    return char_ids, token_ids


class LmTrainer:
    """Owns the model, the optimizer and the step counter."""

    def __init__(self, model: BiLmWithSoftmax, config: TrainConfig, device: str | torch.device = "cpu",
                 forward_module: nn.Module | None = None, rank: int = 0) -> None:
        self.model = model.to(device)
        self.forward_module = forward_module or self.model  # e.g. the DDP wrapper
        self.config = config
        self.device = torch.device(device)
        self.optimizer = make_optimizer(self.model, config)
        self.step = 0
        self.rank = rank
        self.sampled = config.uses_sampled_softmax(model.softmax.n_vocab)

    def _negatives(self):
        """The step's negative classes: seeded by (seed, step), so every worker draws the same."""
        if not self.sampled:
            return None
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step)
        return self.model.softmax.sample(self.config.n_negative_samples_batch, generator)

    def train_step(self, batch: Batch, loss_scale: float = 1.0) -> dict[str, float]:
        """One optimizer step on ``batch``. ``loss_scale`` lets DDP turn per-worker means into the
        global mean (world_size · local_targets / global_targets)."""
        self.forward_module.train()
        # Dropout masks from (seed, rank, step): a resumed run draws exactly what it would have.
        torch.manual_seed(hash((self.config.seed, self.rank, self.step)) & 0x7FFF_FFFF_FFFF)
        char_ids, token_ids = to_tensors(batch, self.device)
        loss: LmLoss = self.forward_module(char_ids, token_ids, self._negatives())
        self.optimizer.zero_grad(set_to_none=True)
        (loss.loss * loss_scale).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()
        self.step += 1
        metrics = loss.metrics()
        metrics.update(step=self.step, grad_norm=float(grad_norm), learning_rate=self.learning_rate)
        return metrics

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch]) -> dict[str, float]:
        """Perplexity per direction with the full softmax, pooled over all targets."""
        self.model.eval()
        forward_nll = backward_nll = 0.0
        n_targets = 0
        for batch in batches:
            loss = self.model(*to_tensors(batch, self.device))
            forward_nll += float(loss.forward_nll)
            backward_nll += float(loss.backward_nll)
            n_targets += loss.n_targets
        return LmLoss(torch.tensor(forward_nll), torch.tensor(backward_nll), n_targets).metrics()

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])


def unigram_perplexity(train_ids: np.ndarray, eval_ids: np.ndarray, n_vocab: int) -> float:
    """Perplexity of ``eval_ids`` under add-one-smoothed unigram frequencies of ``train_ids``."""
    counts = np.bincount(train_ids, minlength=n_vocab).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(np.exp(-log_p[eval_ids].mean()))
