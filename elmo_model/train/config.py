"""The training configuration: one frozen dataclass, plain data, serialisable to a dict."""

from __future__ import annotations

import dataclasses
from typing import Any

from elmo_model.errors import ElmoError
from elmo_model.train.schedule import SCHEDULES, lr_multiplier
from elmo_model.model.options import ElmoOptions
from elmo_model.precision_modes import TRAINING_PRECISIONS

# Model shapes by name. "original" is the published ELMo (93.6 M parameters + softmax).
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(filters=((1, 4), (2, 8), (3, 16), (4, 32), (5, 64)), char_embedding_dim=4, n_highway=2,
                 lstm_dim=64, projection_dim=16, n_layers=2, cell_clip=3.0, proj_clip=3.0,
                 use_skip_connections=True),
    "small": dict(filters=((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024)),
                  char_embedding_dim=16, n_highway=1, lstm_dim=1024, projection_dim=128, n_layers=2,
                  cell_clip=3.0, proj_clip=3.0, use_skip_connections=True),
    "original": dict(filters=((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024)),
                     char_embedding_dim=16, n_highway=2, lstm_dim=4096, projection_dim=512, n_layers=2,
                     cell_clip=3.0, proj_clip=3.0, use_skip_connections=True),
}
OPTIMIZERS = ("adamw", "adagrad")
SOFTMAX_MODES = ("auto", "full", "sampled")
TRAINING_MODES = ("stream", "sentence")
# What an unset learning_rate / clip_norm / schedule / warm-up means, per optimizer. "adamw" is this
# project's default (measured: README "Training defaults"); "adagrad" is bilm-tf's recipe as it was.
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "adamw": dict(learning_rate=2e-3, clip_norm=1.0, schedule="cosine", warmup=True),
    "adagrad": dict(learning_rate=0.2, clip_norm=10.0, schedule="constant", warmup=False),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything the biLM training loop needs. Unset (``None``) optimizer settings take the
    chosen optimizer's defaults (:data:`OPTIMIZER_DEFAULTS`; read them through the ``resolved_*``
    properties)."""

    model: str = "tiny"  # a MODEL_PRESETS name, refined by model_overrides
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    optimizer: str = "adamw"  # or "adagrad" (bilm-tf's: lr 0.2, accumulator 1.0, clip 10, constant lr)
    learning_rate: float | None = None  # None: the optimizer's (OPTIMIZER_DEFAULTS)
    schedule: str | None = None  # cosine | inverse_sqrt | constant; None: the optimizer's
    warmup_steps: int | None = None  # linear warm-up; None: min(steps // 10, 1000) for adamw, 0 for adagrad
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of the learning rate
    adagrad_initial_accumulator: float = 1.0
    weight_decay: float = 0.0  # AdamW only
    clip_norm: float | None = None  # global gradient norm; None: the optimizer's (adamw 1.0, adagrad 10)
    dropout: float = 0.1
    mode: str = "sentence"  # sentence: shuffled windows from a zero state; stream: carried state (bilm-tf's)
    batch_size: int = 64  # windows per batch (per worker when distributed); streams per direction in stream mode
    max_tokens: int = 100  # window length in tokens, <S>/</S> included (stream mode: positions per window)
    softmax: str = "auto"  # auto: sampled when the vocabulary exceeds n_negative_samples_batch
    n_negative_samples_batch: int = 8192
    steps: int = 1000
    seed: int = 0
    log_every: int = 50
    eval_every: int = 0  # 0: only at the end
    checkpoint_every: int = 0  # 0: never (the Ray job sets it)
    # fp32 | bf16 | auto (bf16 where the device has bf16 matrix units); None: bf16 autocast on GPU
    # workers, float32 on CPU ones (elmo_model.model.precision.training_autocast)
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_PRESETS:
            raise ElmoError(f"model must be one of {sorted(MODEL_PRESETS)}, got {self.model!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ElmoError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.mode not in TRAINING_MODES:
            raise ElmoError(f"mode must be one of {TRAINING_MODES}, got {self.mode!r}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ElmoError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if (self.learning_rate is not None and self.learning_rate <= 0) or (
                self.clip_norm is not None and self.clip_norm <= 0) or (
                self.warmup_steps is not None and self.warmup_steps < 0) or not 0 <= self.min_lr_ratio <= 1:
            raise ElmoError("learning_rate and clip_norm must be > 0, warmup_steps ≥ 0, min_lr_ratio in [0, 1]")
        if self.softmax not in SOFTMAX_MODES:
            raise ElmoError(f"softmax must be one of {SOFTMAX_MODES}, got {self.softmax!r}")
        if self.batch_size < 1 or self.steps < 0 or self.max_tokens < 3:
            raise ElmoError("batch_size must be ≥ 1, steps ≥ 0 and max_tokens ≥ 3")
        if self.precision is not None and self.precision not in TRAINING_PRECISIONS:
            raise ElmoError(f"precision must be one of {TRAINING_PRECISIONS}, got {self.precision!r}")
        self.options()  # validate the shape early

    @property
    def resolved_learning_rate(self) -> float:
        return self.learning_rate if self.learning_rate is not None else OPTIMIZER_DEFAULTS[self.optimizer]["learning_rate"]

    @property
    def resolved_clip_norm(self) -> float:
        return self.clip_norm if self.clip_norm is not None else OPTIMIZER_DEFAULTS[self.optimizer]["clip_norm"]

    @property
    def resolved_schedule(self) -> str:
        return self.schedule if self.schedule is not None else OPTIMIZER_DEFAULTS[self.optimizer]["schedule"]

    @property
    def resolved_warmup_steps(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(self.steps // 10, 1000) if OPTIMIZER_DEFAULTS[self.optimizer]["warmup"] else 0

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (1-based): base rate × schedule."""
        return self.resolved_learning_rate * lr_multiplier(step, self.resolved_schedule, self.resolved_warmup_steps,
                                                           self.steps, self.min_lr_ratio)

    def options(self) -> ElmoOptions:
        """The model shape as :class:`ElmoOptions`."""
        shape = {**MODEL_PRESETS[self.model], **self.model_overrides}
        if "filters" in shape:
            shape["filters"] = tuple(tuple(f) for f in shape["filters"])
        try:
            return ElmoOptions(**shape)
        except TypeError as exc:
            raise ElmoError(f"model_overrides: {exc}") from None
        except ElmoError as exc:  # names the option as options.json does (lstm.dim for lstm_dim)
            raise ElmoError(f"model {self.model!r} with model_overrides {self.model_overrides}: {exc}") from None

    def uses_sampled_softmax(self, n_vocab: int) -> bool:
        if self.softmax == "auto":
            return n_vocab > self.n_negative_samples_batch
        return self.softmax == "sampled"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ElmoError(f"unknown training config keys: {unknown}")
        return cls(**raw)
