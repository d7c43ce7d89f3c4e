"""ELMo vectors for a user's own ``ray.data.Dataset``: the Ray Data API of ``elmo embed``.

    import ray.data
    from pipelines.embed import ElmoEmbedder, embed_dataset

    ds = ray.data.from_items([{"id": 1, "text": "The bank raised its rates ."}])
    vectors = embed_dataset(ds, "s3://models/elmo-small", actors=(1, 4), layers="average")
    # or, in the style of Ray's batch-inference examples:
    vectors = ds.map_batches(ElmoEmbedder, fn_constructor_kwargs={"model_url": "s3://models/elmo-small"},
                             compute=ray.data.ActorPoolStrategy(min_size=1, max_size=4),
                             batch_size=256, batch_format="pyarrow")

Each row needs a ``text`` column (tokenized like ``elmo embed``: whitespace by default) or a
``tokens`` column (a list of strings). The output keeps every input column and adds the vector
column(s) of the layer selection (``embedding``, or ``layer_0 … layer_L`` for ``layers="all"``) and
``model`` (the model's digest): the same vectors as ``elmo embed`` writes for the same sentences.
``layout="token"``: one row per token instead (``position``, ``token``, one vector per row).
``precision``: as :class:`elmo_model.infer.embedder.SentenceEmbedder` (``fp32`` is float32 on a GPU too);
:func:`embed_dataset` resolves ``"auto"`` once, for the device of its actors (as ``elmo embed``
does), so that every actor computes in the same precision; an ``ElmoEmbedder`` given ``"auto"``
directly resolves it on each actor for its own device (pass an explicit one for a pool spread over
machine types).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from elmo_model.errors import ElmoError
from pipelines.embed.output import LAYOUTS, OutputSpec, token_rows, vectors_column
from pipelines.io.storage import StorageOptions


class ElmoEmbedder:
    """A callable class for ``Dataset.map_batches`` on an actor pool: loads the model once per actor,
    then turns each batch of sentences into vectors (``__call__(batch) -> pa.Table``)."""

    def __init__(self, model_url: str, layers: str = "top", pooling: str = "none", dtype: str = "float32",
                 precision: str = "fp32", text_column: str = "text", tokens_column: str = "tokens",
                 tokenizer: str = "whitespace", sub_batch: int | None = None, device: str = "auto",
                 storage: StorageOptions | None = None, model_hash: str | None = None,
                 layout: str = "sentence") -> None:
        import torch

        from elmo_model.infer.embedder import SentenceEmbedder, default_batch_size
        from pipelines.ingest.sentences import TOKENIZERS, resolve_fn
        from pipelines.io.model_store import load_model

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.spec = OutputSpec(layers, pooling, dtype)
        if layout not in LAYOUTS or (layout == "token" and pooling != "none"):
            raise ElmoError(f"layout must be one of {LAYOUTS} (token only with pooling none), got {layout!r}")
        self.layout = layout
        model = load_model(model_url, storage, expected_digest=model_hash)  # a node downloads it once
        try:
            self.embedder = SentenceEmbedder(model.bilm, device, precision=precision)
        except ValueError as exc:
            raise ElmoError(f"ElmoEmbedder: {exc}") from None
        self.precision = self.embedder.precision  # what runs: "auto" resolved on this actor's device
        self.model_hash = model.digest
        self.sub_batch = sub_batch or default_batch_size(model.bilm.options)
        self.dim = model.bilm.options.output_dim
        self.n_layers = model.bilm.options.n_layers + 1
        weights = self.spec.mix_weights()
        if weights is not None and len(weights) != self.n_layers:
            raise ElmoError(f"layers={layers!r} gives {len(weights)} weights; the model at {model_url} has "
                            f"{self.n_layers} layers")
        self.text_column, self.tokens_column = text_column, tokens_column
        self.tokenize = resolve_fn(tokenizer, TOKENIZERS, "tokenizer")

    @property
    def column_names(self) -> list[str]:
        return self.spec.column_names(self.n_layers)

    def vectors(self, tokens: Sequence[Sequence[str]]) -> list[pa.Array]:
        """The vector columns (in :attr:`column_names` order) for ``tokens``, one row per sentence."""
        # Longest first, in sub-batches of similar length: little padding, same vectors regardless.
        order = sorted(range(len(tokens)), key=lambda i: -len(tokens[i]))
        columns: list[list[np.ndarray | None]] = [[None] * len(tokens) for _ in self.column_names]
        for start in range(0, len(order), self.sub_batch):
            chunk = order[start : start + self.sub_batch]
            stacks = self.embedder([list(tokens[i]) for i in chunk])
            for i, stack in zip(chunk, stacks):
                for c, array in enumerate(self.spec.select(stack)):
                    columns[c][i] = array
        return [vectors_column(values, self.spec, self.dim) for values in columns]

    def tokens_of(self, batch: pa.Table) -> list[list[str]]:
        if self.tokens_column in batch.column_names:
            return [list(t or []) for t in batch.column(self.tokens_column).to_pylist()]
        if self.text_column not in batch.column_names:
            raise ElmoError(f"ElmoEmbedder: the dataset has neither a {self.text_column!r} nor a "
                            f"{self.tokens_column!r} column (columns: {', '.join(batch.column_names)})")
        texts = batch.column(self.text_column).to_pylist()
        bad = next((t for t in texts if not isinstance(t, str)), "") if texts else ""
        if not isinstance(bad, str):
            raise ElmoError(f"ElmoEmbedder: column {self.text_column!r} holds {type(bad).__name__}, expected strings")
        return [self.tokenize(t) for t in texts]

    def __call__(self, batch: pa.Table | dict[str, Any]) -> pa.Table:
        table = batch if isinstance(batch, pa.Table) else pa.table({k: list(v) for k, v in batch.items()})
        out = table
        tokens = self.tokens_of(table)
        for name, column in zip(self.column_names, self.vectors(tokens)):
            out = out.append_column(name, column)
        out = out.append_column("model", pa.array([self.model_hash] * table.num_rows, pa.string()))
        if self.layout == "token":
            if "tokens" not in out.column_names:
                out = out.append_column("tokens", pa.array(tokens, pa.list_(pa.string())))
            out = token_rows(out, self.column_names)
        return out


def embed_dataset(ds: Any, model_url: str, *, actors: tuple[int, int] = (1, 2), cpus_per_actor: float = 1.0,
                  gpus_per_actor: float = 0.0, batch_size: int = 256, **embedder_kwargs: Any) -> Any:
    """``ds`` (a ``ray.data.Dataset`` with ``text`` or ``tokens``) with ELMo vectors added, on an
    autoscaling pool of ``actors = (min, max)`` actors; ``embedder_kwargs`` go to :class:`ElmoEmbedder`
    (``precision="auto"`` is resolved here, once, for the actors' device)."""
    import ray.data

    if embedder_kwargs.get("precision") == "auto":
        from pipelines.embed.precision import resolve_pool_precision

        embedder_kwargs = {**embedder_kwargs,
                           "precision": resolve_pool_precision("auto", cpus_per_actor, gpus_per_actor)}

    return ds.map_batches(ElmoEmbedder, fn_constructor_args=(model_url,), fn_constructor_kwargs=embedder_kwargs,
                          compute=ray.data.ActorPoolStrategy(min_size=actors[0], max_size=actors[1]),
                          batch_size=batch_size, batch_format="pyarrow", num_cpus=cpus_per_actor,
                          num_gpus=gpus_per_actor or None)
