"""One training step, evaluation and the optimizer: what the training loop (:mod:`elmo_model.train.loop`)
does per step, in this process or as one of W data-parallel workers.

The trainer owns everything a checkpoint must restore besides the data position: model,
optimizer, step, the random generators (:class:`elmo_model.train.rng.TrainRng`) and, in stream
mode, the LSTM state carried into the next batch. The learning rate is a function of the step
(:meth:`TrainConfig.learning_rate_at`), set before each optimizer step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from elmo_model.train.batching import Batch
from elmo_model.model.bilm import BiLmState
from elmo_model.model.language_model import BiLmWithSoftmax, LmLoss, perplexity_from_loss
from elmo_model.train.stream import StreamLm, stream_tensors, target_counts
from elmo_model.train.config import TrainConfig
from elmo_model.train.rng import TrainRng


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    lr = config.learning_rate_at(1)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.Adagrad(params, lr=lr, initial_accumulator_value=config.adagrad_initial_accumulator)


def to_tensors(batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    char_ids = torch.as_tensor(batch["char_ids"]).long().to(device)
    token_ids = torch.as_tensor(batch["token_ids"]).long().to(device)
    return char_ids, token_ids


def local_counts(batch: Batch) -> tuple[int, int]:
    """Targets per direction in a batch (sentence or stream), known before the forward pass."""
    if "forward_mask" in batch:
        return target_counts(batch)
    n = int((batch["char_ids"][:, 1:, 0] > 0).sum())
    return n, n


def direction_metrics(forward_nll: float, backward_nll: float, n_forward: int, n_backward: int,
                      prefix: str = "") -> dict[str, float]:
    """Mean loss and perplexity per direction and their mean."""
    fwd, bwd = forward_nll / max(n_forward, 1), backward_nll / max(n_backward, 1)
    mean = 0.5 * (fwd + bwd)
    return {f"{prefix}loss_forward": fwd, f"{prefix}loss_backward": bwd, f"{prefix}loss": mean,
            f"{prefix}perplexity_forward": perplexity_from_loss(fwd),
            f"{prefix}perplexity_backward": perplexity_from_loss(bwd), f"{prefix}perplexity": perplexity_from_loss(mean)}


class LmTrainer:
    """Owns the model, the optimizer, the step counter, the generators and the carried stream state.

    ``wrap`` wraps the module the forward pass goes through (DDP, autocast); gradients and the
    optimizer act on ``model``'s parameters.
    """

    def __init__(self, model: BiLmWithSoftmax, config: TrainConfig, device: str | torch.device = "cpu",
                 wrap: Callable[[nn.Module], nn.Module] | None = None, rank: int = 0) -> None:
        self.model = model.to(device)
        self.config = config
        self.device = torch.device(device)
        inner = StreamLm(self.model) if config.mode == "stream" else self.model
        self.forward_module = wrap(inner) if wrap is not None else inner
        self.optimizer = make_optimizer(self.model, config)
        self.step = 0
        self.rank = rank
        self.rng = TrainRng(config.seed, rank, self.device)
        self.stream_state: BiLmState | None = None
        self.sampled = config.uses_sampled_softmax(model.softmax.n_vocab)

    def _negatives(self):
        """The step's negative classes, from the sampling generator (the same on every worker)."""
        if not self.sampled:
            return None
        return self.model.softmax.sample(self.config.n_negative_samples_batch, self.rng.sampling)

    def _forward(self, batch: Batch, sampled) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.mode != "stream":
            loss: LmLoss = self.forward_module(*to_tensors(batch, self.device), sampled)
            return loss.forward_nll, loss.backward_nll
        out = self.forward_module(*stream_tensors(batch, self.device), self.stream_state, sampled)
        self.stream_state = out.state
        return out.forward_nll, out.backward_nll

    def train_step(self, batch: Batch, world_size: int = 1,
                   global_counts: tuple[int, int] | None = None) -> dict[str, float]:
        """One optimizer step on this worker's ``batch``.

        The objective is the mean over every target of the step in each direction, averaged over
        the two directions: with ``global_counts`` (targets per direction summed over the
        ``world_size`` workers) each worker scales its sums so that DDP's averaged gradient is
        exactly that of one worker holding every batch of the step.
        """
        self.forward_module.train()
        n_forward, n_backward = local_counts(batch)
        total_forward, total_backward = global_counts or (n_forward, n_backward)
        lr = self.config.learning_rate_at(self.step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.rng.dropout_scope():
            forward_nll, backward_nll = self._forward(batch, self._negatives())
            objective = 0.5 * world_size * (forward_nll / max(total_forward, 1) + backward_nll / max(total_backward, 1))
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.resolved_clip_norm)
        self.optimizer.step()
        self.step += 1
        metrics = direction_metrics(float(forward_nll.detach()), float(backward_nll.detach()), n_forward, n_backward)
        metrics.update(n_targets=n_forward, n_targets_backward=n_backward, step=self.step,
                       grad_norm=float(grad_norm), learning_rate=lr)
        return metrics

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch]) -> dict[str, float]:
        """Perplexity per direction with the full softmax, pooled over all targets (sentence windows)."""
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
        """Model, optimizer, step and this worker's generators and carried state."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                 "rng": self.rng.state_dict()}
        if self.stream_state is not None:
            state["stream_state"] = {"h": self.stream_state.h.cpu(), "c": self.stream_state.c.cpu()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        if "rng" in state:
            self.rng.load_state_dict(state["rng"])
        stream = state.get("stream_state")
        self.stream_state = None if stream is None else BiLmState(stream["h"].to(self.device),
                                                                 stream["c"].to(self.device))


def unigram_perplexity(train_ids: np.ndarray, eval_ids: np.ndarray, n_vocab: int) -> float:
    """Perplexity of ``eval_ids`` under add-one-smoothed unigram frequencies of ``train_ids``."""
    counts = np.bincount(train_ids, minlength=n_vocab).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(np.exp(-log_p[eval_ids].mean()))
