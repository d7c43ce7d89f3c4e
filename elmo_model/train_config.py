"""The training configuration: one frozen dataclass, plain data, serialisable to a dict."""

from __future__ import annotations

import dataclasses
from typing import Any

from elmo_model.errors import ElmoError
from elmo_model.options import ElmoOptions

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
OPTIMIZERS = ("adagrad", "adamw")
SOFTMAX_MODES = ("auto", "full", "sampled")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything the in-process biLM training loop needs. Defaults are bilm-tf's."""

    model: str = "tiny"  # a MODEL_PRESETS name, refined by model_overrides
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    optimizer: str = "adagrad"
    learning_rate: float = 0.2
    adagrad_initial_accumulator: float = 1.0
    weight_decay: float = 0.0  # AdamW only
    clip_norm: float = 10.0  # global gradient norm (bilm-tf's all_clip_norm_val)
    dropout: float = 0.1
    batch_size: int = 64  # windows per batch (per worker when distributed)
    max_tokens: int = 100  # window length in tokens, <S>/</S> included
    softmax: str = "auto"  # auto: sampled when the vocabulary exceeds n_negative_samples_batch
    n_negative_samples_batch: int = 8192
    steps: int = 1000
    seed: int = 0
    log_every: int = 50
    eval_every: int = 0  # 0: only at the end
    checkpoint_every: int = 0  # 0: never (the Ray job sets it)

    def __post_init__(self) -> None:
        if self.model not in MODEL_PRESETS:
            raise ElmoError(f"model must be one of {sorted(MODEL_PRESETS)}, got {self.model!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ElmoError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.softmax not in SOFTMAX_MODES:
            raise ElmoError(f"softmax must be one of {SOFTMAX_MODES}, got {self.softmax!r}")
        if self.batch_size < 1 or self.steps < 0 or self.max_tokens < 3:
            raise ElmoError("batch_size must be ≥ 1, steps ≥ 0 and max_tokens ≥ 3")
        self.options()  # validate the shape early

    def options(self) -> ElmoOptions:
        """The model shape as :class:`ElmoOptions`."""
        shape = {**MODEL_PRESETS[self.model], **self.model_overrides}
        if "filters" in shape:
            shape["filters"] = tuple(tuple(f) for f in shape["filters"])
        try:
            return ElmoOptions(**shape)
        except TypeError as exc:
            raise ElmoError(f"model_overrides: {exc}") from None

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
