"""The training run's random numbers, one generator per purpose, saved in checkpoints.

- ``sampling``: the sampled softmax's negatives. Seeded by ``seed`` alone and advanced by the
  same draws on every worker, so all workers use the same negatives at every step.
- ``dropout``: this worker's dropout masks, seeded by ``(seed, rank)``. The model's dropout calls
  draw from torch's default generator, so :meth:`TrainRng.dropout_scope` puts this generator's
  state there for the step and takes it back afterwards: the default generator is left exactly as
  it was, and nothing else that draws from it disturbs (or is disturbed by) training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def _seed(*parts: int) -> int:
    value = 0x5EED
    for part in parts:
        value = (value * 1_000_003 + int(part)) & 0x7FFF_FFFF_FFFF_FFFF
    return value


class TrainRng:
    """Generators for one worker (``rank``) on ``device``."""

    def __init__(self, seed: int, rank: int = 0, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.sampling = torch.Generator().manual_seed(_seed(seed, 1))
        self.dropout = torch.Generator(self.device).manual_seed(_seed(seed, 2, rank))

    @contextlib.contextmanager
    def dropout_scope(self) -> Iterator[None]:
        """Run the block with the dropout generator's state as the default generator of ``device``."""
        cuda = self.device.type == "cuda"
        devices = [self.device.index or 0] if cuda else []
        with torch.random.fork_rng(devices=devices, enabled=True):
            if cuda:
                torch.cuda.set_rng_state(self.dropout.get_state(), self.device)
            else:
                torch.set_rng_state(self.dropout.get_state())
            try:
                yield
            finally:
                state = torch.cuda.get_rng_state(self.device) if cuda else torch.get_rng_state()
                self.dropout.set_state(state)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"sampling": self.sampling.get_state(), "dropout": self.dropout.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.sampling.set_state(state["sampling"])
        if "dropout" in state:
            self.dropout.set_state(state["dropout"])
