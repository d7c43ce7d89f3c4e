"""What ``elmo embed`` writes: the layer selection, pooling and the Arrow columns.

Per sentence the biLM gives ``(L+1, n_tokens, D)``. ``--layers`` picks ``top``, ``average``,
``mix:w0,…,wL`` (Σ w_j · layer_j with the given weights, as-is) or ``all``; ``--pooling`` keeps one
vector per token (``none``) or reduces over the tokens (``mean`` / ``max``).

Columns: ``embedding`` (or ``layer_0 … layer_L`` for ``all``) as ``list<fixed_size_list<f, D>>``
per token, or ``fixed_size_list<f, D>`` when pooled; ``f`` is float32 or float16.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from elmo_model.errors import ElmoError

POOLINGS = ("none", "mean", "max")
DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """How per-sentence layer stacks become columns."""

    layers: str = "top"  # all | top | average | mix:w0,w1,...
    pooling: str = "none"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ElmoError(f"--pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.dtype not in DTYPES:
            raise ElmoError(f"--dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.layers not in ("all", "top", "average"):
            self.mix_weights()  # validates

    def mix_weights(self) -> np.ndarray | None:
        if not self.layers.startswith("mix:"):
            if self.layers in ("all", "top", "average"):
                return None
            raise ElmoError(f"--layers must be all, top, average or mix:w0,w1,..., got {self.layers!r}")
        try:
            return np.array([float(w) for w in self.layers[4:].split(",")], dtype=np.float32)
        except ValueError:
            raise ElmoError(f"--layers {self.layers!r}: weights must be numbers, e.g. mix:0.2,0.3,0.5") from None

    def column_names(self, n_layers: int) -> list[str]:
        """Names of the vector columns for a model with ``n_layers`` = L+1 layers."""
        return [f"layer_{j}" for j in range(n_layers)] if self.layers == "all" else ["embedding"]

    def select(self, stack: np.ndarray) -> list[np.ndarray]:
        """``(L+1, n, D)`` → one ``(n, D)`` (or ``(D,)`` pooled) array per output column."""
        weights = self.mix_weights()
        if weights is not None and len(weights) != stack.shape[0]:
            raise ElmoError(f"--layers {self.layers!r} gives {len(weights)} weights; the model has {stack.shape[0]} layers")
        if self.layers == "all":
            chosen = list(stack)
        elif self.layers == "top":
            chosen = [stack[-1]]
        elif self.layers == "average":
            chosen = [stack.mean(axis=0)]
        else:
            chosen = [np.tensordot(weights, stack, axes=1)]
        return [self._pool(x).astype(DTYPES[self.dtype]) for x in chosen]

    def _pool(self, x: np.ndarray) -> np.ndarray:
        if self.pooling == "mean":
            return x.mean(axis=0)
        if self.pooling == "max":
            return x.max(axis=0)
        return x

    def arrow_type(self, dim: int) -> pa.DataType:
        value = pa.float16() if self.dtype == "float16" else pa.float32()
        vector = pa.list_(value, dim)  # fixed_size_list<value, dim>
        return vector if self.pooling != "none" else pa.list_(vector)


def vectors_column(per_sentence: Sequence[np.ndarray], spec: OutputSpec, dim: int) -> pa.Array:
    """One Arrow column from per-sentence arrays (``(n_i, D)`` per token, or ``(D,)`` pooled)."""
    value_type = pa.float16() if spec.dtype == "float16" else pa.float32()
    if not per_sentence:
        return pa.array([], type=spec.arrow_type(dim))
    flat = np.concatenate([a.reshape(-1) for a in per_sentence]) if per_sentence else np.zeros(0)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=value_type), dim)  # (Σ n_i, D)
    if spec.pooling != "none":
        return vectors
    offsets = np.concatenate([[0], np.cumsum([a.shape[0] for a in per_sentence])]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), vectors)


LAYOUTS = ("sentence", "token")


def token_rows(table: pa.Table, vector_columns: Sequence[str]) -> pa.Table:
    """The per-token layout of per-sentence rows (``--layout token``): one row per token with
    ``position`` (int32, 0-based in its sentence) and ``token`` (string); every other column is
    repeated from its sentence and each vector column becomes one ``fixed_size_list<f, D>`` per row,
    so a vector store or ``duckdb`` loads vectors without unnesting."""
    import pyarrow.compute as pc

    tokens = table.column("tokens").combine_chunks()
    parents = pc.list_parent_indices(tokens)
    offsets = tokens.offsets.to_numpy()
    starts = np.repeat(offsets[:-1] - offsets[0], np.diff(offsets))
    positions = np.arange(len(parents), dtype=np.int32) - starts.astype(np.int32)
    columns, names = [], []
    for name in table.column_names:
        if name == "tokens":
            names += ["position", "token"]
            columns += [pa.array(positions, pa.int32()), pc.list_flatten(tokens)]
        elif name in vector_columns:
            names.append(name)
            columns.append(pc.list_flatten(table.column(name).combine_chunks()))
        else:
            names.append(name)
            columns.append(table.column(name).combine_chunks().take(parents))
    return pa.Table.from_arrays(columns, names=names)
