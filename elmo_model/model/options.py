"""The model shape: the published ``options.json`` as a frozen dataclass.

bilm-tf's format nests ``lstm`` and ``char_cnn``; training runs add top-level keys (``dropout``,
``n_tokens_vocab`` ...). Unknown keys are kept verbatim in ``extra`` so a load → save round trip
writes them back.

``options.json`` files come from object storage and the internet, so every value is checked
before anything is built: its type (an integer is a JSON integer, never a string, a float or a
boolean), its range, how the values fit together, and what the model would cost —
:func:`parameter_bytes` (float32 parameters) and :func:`activation_bytes_per_token` (a rough
inference working set per token position), estimated from the options alone. A model whose
parameters, or whose activations over one window of :data:`ESTIMATE_POSITIONS` positions, exceed
:func:`max_model_bytes` (``$ELMO_MAX_MODEL_BYTES``, default 16 GiB) is refused. Every refusal is
one :class:`ElmoError` line, ``<file>: <option> = <value>: <what is wrong>``, raised in
microseconds: nothing of the model's size is allocated first.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from typing import Any

from elmo_model.errors import ElmoError

ACTIVATIONS = ("relu", "tanh")

MAX_MODEL_BYTES_ENV = "ELMO_MAX_MODEL_BYTES"
DEFAULT_MAX_MODEL_BYTES = 16 * 2**30
# Positions whose activations must fit under the limit too: one window of the embedder
# (elmo_model.infer.embedder.WINDOW_TOKENS), the most it holds of any sentence at once.
ESTIMATE_POSITIONS = 1024
# Ranges beyond which no ELMo has ever been (bilm-tf: 50 characters, 7 filters, 2 highways, 2
# layers); the widths of dimensions have no fixed bound: the memory estimate decides.
MAX_CHARACTERS_LIMIT = 1024
MAX_FILTER_KINDS = 64
MAX_HIGHWAY = 64
MAX_LAYERS = 64

# The JSON name of each field, for messages.
OPTION_NAMES = {
    "filters": "char_cnn.filters",
    "char_embedding_dim": "char_cnn.embedding.dim",
    "n_highway": "char_cnn.n_highway",
    "lstm_dim": "lstm.dim",
    "projection_dim": "lstm.projection_dim",
    "n_layers": "lstm.n_layers",
    "cell_clip": "lstm.cell_clip",
    "proj_clip": "lstm.proj_clip",
    "use_skip_connections": "lstm.use_skip_connections",
    "n_characters": "char_cnn.n_characters",
    "max_characters_per_token": "char_cnn.max_characters_per_token",
    "activation": "char_cnn.activation",
}

# bilm-tf's top-level keys (training settings, unused here but checked): key → (kind, minimum).
KNOWN_EXTRA = {
    "n_tokens_vocab": ("int", 1),
    "batch_size": ("int", 0),
    "n_epochs": ("int", 0),
    "n_train_tokens": ("int", 0),
    "unroll_steps": ("int", 0),
    "n_negative_samples_batch": ("int", 0),
    "dropout": ("fraction", None),
    "all_clip_norm_val": ("clip", None),
    "bidirectional": ("bool", None),
}

# The published 5.5B-token ELMo's shape: what the memory message compares an option against to
# find the one that makes a model too big.
_REFERENCE = dict(filters=((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024)),
                  char_embedding_dim=16, n_highway=2, lstm_dim=4096, projection_dim=512, n_layers=2,
                  max_characters_per_token=50)


def _fail(name: str, value: Any, reason: str) -> ElmoError:
    return ElmoError(f"{name} = {_show(value)}: {reason}")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        value = [list(v) if isinstance(v, tuple) else v for v in value]
    text = json.dumps(value) if isinstance(value, (str, bool, list, type(None), int, float)) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if not _is_int(value):
        raise _fail(name, value, f"must be an integer, not {_kind(value)}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _fail(name, value, f"must be {bound}")
    return int(value)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if _is_int(value):
        return "a number"
    if isinstance(value, numbers.Real):
        return "a float"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    return "a list" if isinstance(value, (list, tuple)) else f"a {type(value).__name__}"


def _check_clip(name: str, value: Any) -> float | None:
    """A clip value: ``None`` or a finite number ≥ 0 (0: no clipping, as bilm-tf)."""
    if value is None:
        return None
    if not _is_number(value):
        raise _fail(name, value, f"must be a number or null, not {_kind(value)}")
    if not math.isfinite(value) or value < 0:
        raise _fail(name, value, "must be a finite number ≥ 0 (0 or null: no clipping)")
    return None if value == 0 else float(value)


def max_model_bytes() -> int:
    """The most bytes a model may need (``$ELMO_MAX_MODEL_BYTES``, default 16 GiB)."""
    raw = os.environ.get(MAX_MODEL_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_MODEL_BYTES
    try:
        value = float(raw)  # 17179869184, or 16e9
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1:
        raise ElmoError(f"{MAX_MODEL_BYTES_ENV}={raw!r}: expected a positive number of bytes, e.g. 34359738368 or 32e9")
    return int(value)


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units: ``16.0 GiB``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 2**10:,.1f} KiB"


def parameter_count(o: Any) -> int:
    """Parameters of the biLM built from shape ``o`` (an :class:`ElmoOptions` or anything with its
    attributes), exactly as :class:`~elmo_model.model.bilm.BiLm` allocates them (softmax excluded)."""
    n_filters = sum(n for _, n in o.filters)
    count = 262 * o.char_embedding_dim  # the model's embedding has 262 rows whatever n_characters says
    count += sum(w * o.char_embedding_dim * n + n for w, n in o.filters)
    count += o.n_highway * 2 * (n_filters * n_filters + n_filters)
    if n_filters != o.projection_dim:
        count += n_filters * o.projection_dim + o.projection_dim
    per_layer = 4 * o.lstm_dim * o.projection_dim * 2 + 4 * o.lstm_dim  # input + recurrent kernels, bias
    if o.projection_dim < o.lstm_dim:
        per_layer += o.projection_dim * o.lstm_dim
    return count + 2 * o.n_layers * per_layer


def parameter_bytes(o: Any) -> int:
    """float32 bytes of :func:`parameter_count`."""
    return 4 * parameter_count(o)


def activation_bytes_per_token(o: Any) -> int:
    """A rough upper estimate of inference working memory per token position (float32): char ids,
    the char-CNN's windows and outputs, the highways, both directions' gates and states for every
    layer, and the output layers (stacked and copied to numpy)."""
    n_filters = sum(n for _, n in o.filters)
    max_width = max(w for w, _ in o.filters)
    chars = o.max_characters_per_token
    cnn = chars * (max_width * o.char_embedding_dim + o.char_embedding_dim + n_filters) + 4 * n_filters
    lstm = o.n_layers * 2 * (4 * o.lstm_dim + 2 * o.lstm_dim + 2 * o.projection_dim)
    outputs = 2 * (o.n_layers + 1) * 2 * o.projection_dim
    return 4 * (cnn + lstm + outputs + o.projection_dim) + 16 * chars


def _estimate(o: Any) -> tuple[int, int]:
    return parameter_bytes(o), ESTIMATE_POSITIONS * activation_bytes_per_token(o)


@dataclasses.dataclass(frozen=True)
class _Shape:
    filters: tuple[tuple[int, int], ...]
    char_embedding_dim: int
    n_highway: int
    lstm_dim: int
    projection_dim: int
    n_layers: int
    max_characters_per_token: int


def _culprit(o: Any, over: Any) -> str:
    """The field whose value, brought down to the published ELMo's, shrinks ``over(shape)`` most
    (``lstm.dim`` stands for ``projection_dim`` too when they are equal, as when it defaults)."""
    shape = _Shape(o.filters, o.char_embedding_dim, o.n_highway, o.lstm_dim, o.projection_dim, o.n_layers,
                   o.max_characters_per_token)
    best, best_value = "lstm_dim", None
    for field in ("lstm_dim", "projection_dim", "n_layers", "filters", "n_highway", "char_embedding_dim",
                  "max_characters_per_token"):
        ref = _REFERENCE[field]
        if field == "filters":
            if sum(n for _, n in o.filters) <= sum(n for _, n in ref) and len(o.filters) <= len(ref):
                continue
            changes = {"filters": ref}
        elif getattr(o, field) <= ref:
            continue
        elif field == "lstm_dim" and o.projection_dim == o.lstm_dim:
            changes = {"lstm_dim": ref, "projection_dim": min(o.projection_dim, ref)}
        elif field == "projection_dim" and o.projection_dim == o.lstm_dim:
            continue
        else:
            changes = {field: ref}
        value = over(dataclasses.replace(shape, **changes))
        if best_value is None or value < best_value:
            best, best_value = field, value
    return best


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
        self._check_values()
        self._check_relations()
        self._check_memory()

    def _check_values(self) -> None:
        """Every field: its type and range (messages use the JSON names)."""
        set_ = lambda field, value: object.__setattr__(self, field, value)  # noqa: E731 (frozen)
        n = OPTION_NAMES
        set_("max_characters_per_token", _check_int(n["max_characters_per_token"], self.max_characters_per_token,
                                                    3, MAX_CHARACTERS_LIMIT))
        set_("filters", self._checked_filters())
        set_("char_embedding_dim", _check_int(n["char_embedding_dim"], self.char_embedding_dim, 1))
        set_("n_highway", _check_int(n["n_highway"], self.n_highway, 0, MAX_HIGHWAY))
        set_("lstm_dim", _check_int(n["lstm_dim"], self.lstm_dim, 1))
        set_("projection_dim", _check_int(n["projection_dim"], self.projection_dim, 1))
        set_("n_layers", _check_int(n["n_layers"], self.n_layers, 1, MAX_LAYERS))
        for field in ("cell_clip", "proj_clip"):
            set_(field, _check_clip(n[field], getattr(self, field)))
        if not isinstance(self.use_skip_connections, bool):
            raise _fail(n["use_skip_connections"], self.use_skip_connections,
                        f"must be true or false, not {_kind(self.use_skip_connections)}")
        if not _is_int(self.n_characters) or self.n_characters not in (261, 262):
            raise _fail(n["n_characters"], self.n_characters, "must be 261 or 262")
        set_("n_characters", int(self.n_characters))
        if self.activation not in ACTIVATIONS:
            raise _fail(n["activation"], self.activation, f"must be one of {list(ACTIVATIONS)}")
        if not isinstance(self.extra, dict):
            raise ElmoError(f"extra must be a dict, got {_kind(self.extra)}")
        for key, (kind, low) in KNOWN_EXTRA.items():
            if key in self.extra:
                _check_extra(key, self.extra[key], kind, low)

    def _checked_filters(self) -> tuple[tuple[int, int], ...]:
        name, filters = OPTION_NAMES["filters"], self.filters
        if isinstance(filters, (str, bytes, dict)) or not hasattr(filters, "__len__") or not filters:
            raise _fail(name, filters, "must be a non-empty list of [width, count] pairs")
        if len(filters) > MAX_FILTER_KINDS:
            raise _fail(name, filters, f"has {len(filters)} filters; at most {MAX_FILTER_KINDS}")
        checked = []
        for i, pair in enumerate(filters):
            if isinstance(pair, (str, bytes, dict)) or not hasattr(pair, "__len__") or len(pair) != 2:
                raise _fail(f"{name}[{i}]", pair, "must be a [width, count] pair")
            width = _check_int(f"{name}[{i}][0] (width)", pair[0], 1)
            if width > self.max_characters_per_token:
                raise _fail(f"{name}[{i}][0] (width)", width, "is wider than char_cnn.max_characters_per_token "
                            f"({self.max_characters_per_token})")
            count = _check_int(f"{name}[{i}][1] (count)", pair[1], 1)
            checked.append((width, count))
        return tuple(checked)

    def _check_relations(self) -> None:
        if self.projection_dim > self.lstm_dim:
            raise _fail(OPTION_NAMES["projection_dim"], self.projection_dim,
                        f"must not exceed lstm.dim ({self.lstm_dim})")
        if self.n_filters < self.projection_dim:
            raise _fail(OPTION_NAMES["filters"], self.filters,
                        f"{self.n_filters} filters in all; must be at least lstm.projection_dim "
                        f"({self.projection_dim})")

    def _check_memory(self) -> None:
        """Refuse a model that would not fit, before anything of its size exists."""
        limit = max_model_bytes()
        params, activations = _estimate(self)
        if params <= limit and activations <= limit:
            return
        if params > limit:
            field = _culprit(self, parameter_bytes)
            what = f"the model's parameters would take {format_bytes(params)}"
        else:
            field = _culprit(self, lambda o: ESTIMATE_POSITIONS * activation_bytes_per_token(o))
            what = (f"the model would need about {format_bytes(activations)} of activations for "
                    f"{ESTIMATE_POSITIONS} token positions")
        raise _fail(OPTION_NAMES[field], getattr(self, field),
                    f"{what}, over the limit of {format_bytes(limit)} (set {MAX_MODEL_BYTES_ENV}=BYTES to raise it)")

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

    @property
    def parameter_bytes(self) -> int:
        """float32 bytes of the biLM's parameters (softmax excluded)."""
        return parameter_bytes(self)

    @property
    def activation_bytes_per_token(self) -> int:
        """Rough inference working memory per token position (:func:`activation_bytes_per_token`)."""
        return activation_bytes_per_token(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "options") -> ElmoOptions:
        """Build from bilm-tf's nested dict; ``source`` names the file in error messages."""
        try:
            if not isinstance(raw, dict):
                raise ElmoError(f"options must be a JSON object, not {_kind(raw)}")
            lstm, cnn = _table(raw, "lstm", "lstm"), _table(raw, "char_cnn", "char_cnn")
            embedding = _table(cnn, "embedding", "char_cnn.embedding")
            filters = _required(cnn, "filters", "char_cnn.filters")
            if isinstance(filters, list) and all(isinstance(f, list) for f in filters):
                filters = tuple(tuple(f) for f in filters)
            dim = _required(lstm, "dim", "lstm.dim")
            options = cls(
                filters=filters,
                char_embedding_dim=_required(embedding, "dim", "char_cnn.embedding.dim"),
                n_highway=_required(cnn, "n_highway", "char_cnn.n_highway"),
                lstm_dim=dim,
                projection_dim=lstm.get("projection_dim", dim),
                n_layers=_required(lstm, "n_layers", "lstm.n_layers"),
                cell_clip=lstm.get("cell_clip"),
                proj_clip=lstm.get("proj_clip"),
                use_skip_connections=lstm.get("use_skip_connections", False),
                n_characters=cnn.get("n_characters", 262),
                max_characters_per_token=cnn.get("max_characters_per_token", 50),
                activation=cnn.get("activation", "relu"),
                extra={k: v for k, v in raw.items() if k not in ("lstm", "char_cnn")},
            )
        except ElmoError as exc:
            raise ElmoError(f"{source}: {exc}") from None
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


def _table(parent: dict, key: str, name: str) -> dict:
    value = _required(parent, key, name)
    if not isinstance(value, dict):
        raise _fail(name, value, f"must be an object, not {_kind(value)} (not a valid ELMo options.json)")
    return value


def _required(table: dict, key: str, name: str) -> Any:
    if key not in table:
        raise ElmoError(f"not a valid ELMo options.json: {name} is missing")
    return table[key]


def _check_extra(key: str, value: Any, kind: str, low: int | None) -> None:
    if kind == "int":
        _check_int(key, value, low)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise _fail(key, value, f"must be true or false, not {_kind(value)}")
        if key == "bidirectional" and not value:
            raise _fail(key, value, "only bidirectional LMs (bilm-tf's default) are supported")
    elif kind == "fraction":
        if not _is_number(value) or not 0 <= value < 1:
            raise _fail(key, value, "must be a number in [0, 1)")
    elif kind == "clip" and value is not None:
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise _fail(key, value, "must be a finite number ≥ 0 or null")


def _json_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
