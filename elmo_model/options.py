"""The model shape: the published ``options.json`` as a frozen dataclass.

bilm-tf's format nests ``lstm`` and ``char_cnn``; training runs add top-level keys (``dropout``,
``n_tokens_vocab`` ...). Unknown keys are kept verbatim in ``extra`` so a load → save round trip
writes them back.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from elmo_model.errors import ElmoError

ACTIVATIONS = ("relu", "tanh")


@dataclasses.dataclass(frozen=True)
class ElmoOptions:
    """Shape of an ELMo biLM. Names follow bilm-tf's ``options.json``."""

    filters: tuple[tuple[int, int], ...]  # (width, n_filters) per convolution
    char_embedding_dim: int
    n_highway: int
    lstm_dim: int  # LSTM cell size
    projection_dim: int  # token representation and LSTM output size
    n_layers: int
    cell_clip: float | None = None
    proj_clip: float | None = None
    use_skip_connections: bool = False
    n_characters: int = 262
    max_characters_per_token: int = 50
    activation: str = "relu"
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ElmoError(f"char_cnn.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.n_characters not in (261, 262):
            raise ElmoError(f"char_cnn.n_characters must be 261 or 262, got {self.n_characters}")
        if not self.filters or any(w < 1 or n < 1 for w, n in self.filters):
            raise ElmoError(f"char_cnn.filters must be a non-empty list of [width, count], got {self.filters}")
        if max(w for w, _ in self.filters) > self.max_characters_per_token:
            raise ElmoError("char_cnn.filters: a filter is wider than max_characters_per_token")
        if self.n_layers < 1 or self.lstm_dim < 1 or self.projection_dim < 1:
            raise ElmoError("lstm.n_layers, lstm.dim and lstm.projection_dim must be positive")
        if self.projection_dim > self.lstm_dim:
            raise ElmoError(
                f"lstm.projection_dim ({self.projection_dim}) must not exceed lstm.dim ({self.lstm_dim})"
            )
        if self.n_filters < self.projection_dim:
            raise ElmoError(
                f"total CNN filters ({self.n_filters}) must be >= lstm.projection_dim ({self.projection_dim})"
            )

    @property
    def n_filters(self) -> int:
        """Width of the concatenated CNN output."""
        return sum(n for _, n in self.filters)

    @property
    def has_token_projection(self) -> bool:
        """bilm-tf projects the CNN output only when its width differs from the LSTM input."""
        return self.n_filters != self.projection_dim

    @property
    def has_lstm_projection(self) -> bool:
        """bilm-tf's LSTMCell gets ``num_proj`` only when projection_dim < dim."""
        return self.projection_dim < self.lstm_dim

    @property
    def output_dim(self) -> int:
        """Width of each output layer (forward ‖ backward)."""
        return 2 * self.projection_dim

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "options") -> ElmoOptions:
        """Build from bilm-tf's nested dict; ``source`` names the file in error messages."""
        try:
            lstm, cnn = raw["lstm"], raw["char_cnn"]
            dim = int(lstm["dim"])
            options = cls(
                filters=tuple((int(w), int(n)) for w, n in cnn["filters"]),
                char_embedding_dim=int(cnn["embedding"]["dim"]),
                n_highway=int(cnn["n_highway"]),
                lstm_dim=dim,
                projection_dim=int(lstm.get("projection_dim", dim)),
                n_layers=int(lstm["n_layers"]),
                cell_clip=_optional_float(lstm.get("cell_clip")),
                proj_clip=_optional_float(lstm.get("proj_clip")),
                use_skip_connections=bool(lstm.get("use_skip_connections", False)),
                n_characters=int(cnn.get("n_characters", 262)),
                max_characters_per_token=int(cnn.get("max_characters_per_token", 50)),
                activation=str(cnn.get("activation", "relu")),
                extra={k: v for k, v in raw.items() if k not in ("lstm", "char_cnn")},
            )
        except ElmoError as exc:
            raise ElmoError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ElmoError(f"{source}: not a valid ELMo options.json ({type(exc).__name__}: {exc})") from None
        return options

    def to_dict(self) -> dict[str, Any]:
        """bilm-tf's nested layout, ready for ``json.dump``."""
        lstm: dict[str, Any] = {
            "dim": self.lstm_dim,
            "projection_dim": self.projection_dim,
            "n_layers": self.n_layers,
            "use_skip_connections": self.use_skip_connections,
        }
        if self.cell_clip is not None:
            lstm["cell_clip"] = _json_number(self.cell_clip)
        if self.proj_clip is not None:
            lstm["proj_clip"] = _json_number(self.proj_clip)
        cnn = {
            "embedding": {"dim": self.char_embedding_dim},
            "filters": [list(f) for f in self.filters],
            "n_highway": self.n_highway,
            "n_characters": self.n_characters,
            "max_characters_per_token": self.max_characters_per_token,
            "activation": self.activation,
        }
        return {"lstm": lstm, "char_cnn": cnn, **self.extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _optional_float(value: Any) -> float | None:
    return None if value is None or value == 0 else float(value)


def _json_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
