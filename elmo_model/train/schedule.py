"""Learning-rate schedules: linear warm-up, then cosine decay, inverse-square-root decay or constant.

A schedule is a pure function of the step, so a resumed run needs no scheduler state and a rerun
with more ``steps`` simply continues on the schedule the new total defines.
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "inverse_sqrt", "constant")


def lr_multiplier(step: int, schedule: str, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """The factor on the base learning rate for optimizer step ``step`` (1-based).

    - warm-up: ``step / warmup_steps`` for ``step ≤ warmup_steps``;
    - ``cosine``: ``min_ratio + (1 − min_ratio) · ½(1 + cos(π·p))``, ``p`` the fraction of the steps
      after warm-up done (1 at ``total_steps`` and beyond);
    - ``inverse_sqrt``: ``√(warmup_steps / step)`` (``√(1 / step)`` without warm-up);
    - ``constant``: 1.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    step = max(step, 1)
    if step <= warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "inverse_sqrt":
        return math.sqrt(max(warmup_steps, 1) / step)
    progress = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
