"""The embedding actor: loads the model once, then turns batches of sentences into vector rows.

Ray Data calls :class:`EmbedActor` on an actor pool (``map_batches(EmbedActor, ...)``); it is plain
Python and can be tested on ``ds.take_batch(n)`` without a cluster. Input columns: ``source``,
``line``, ``doc_id``, ``sentence_index``, ``tokens``, ``output_key``; output: the same plus the
vector column(s) and ``model``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from elmo_model.embedder import SentenceEmbedder, default_batch_size
from pipelines import fault_injection
from pipelines.embed.output import OutputSpec, vectors_column
from pipelines.io.model_store import load_model
from pipelines.io.storage import StorageOptions


class EmbedActor:
    """``__call__(batch: pa.Table) -> pa.Table``; one row per sentence, stateless."""

    def __init__(self, model_url: str, spec: OutputSpec, model_hash: str, sub_batch: int | None = None,
                 device: str = "auto", storage: StorageOptions | None = None,
                 faults: fault_injection.Faults = fault_injection.NONE, precision: str = "fp32") -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        # The driver loaded this model and computed its digest: a node downloads it once (cache by digest).
        model = load_model(model_url, storage, expected_digest=model_hash)
        self.embedder = SentenceEmbedder(model.bilm, device, precision=precision)
        # GPU actors in fp32 mode keep their bf16 matrix products (as before); CPU fp32 is exact.
        self.autocast = torch.device(device).type == "cuda" and precision == "fp32"
        self.spec, self.model_hash = spec, model_hash
        self.sub_batch = sub_batch or default_batch_size(model.bilm.options)
        self.dim = self.embedder.bilm.options.output_dim
        self.n_layers = self.embedder.bilm.options.n_layers + 1
        self.faults = faults  # test-only (pipelines.fault_injection)

    def __call__(self, batch: pa.Table) -> pa.Table:
        fault_injection.exit_embed_actor_once(self.faults)
        tokens = batch.column("tokens").to_pylist()
        # Longest first, in sub-batches of similar length: little padding, same vectors regardless.
        order = sorted(range(len(tokens)), key=lambda i: -len(tokens[i]))
        columns: list[list[np.ndarray | None]] = [[None] * len(tokens) for _ in self.spec.column_names(self.n_layers)]
        for start in range(0, len(order), self.sub_batch):
            chunk = order[start : start + self.sub_batch]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
                stacks = self.embedder([tokens[i] for i in chunk])
            for i, stack in zip(chunk, stacks):
                for c, array in enumerate(self.spec.select(stack)):
                    columns[c][i] = array
        out = batch.select(["source", "line", "doc_id", "sentence_index", "tokens", "output_key"])
        for name, values in zip(self.spec.column_names(self.n_layers), columns):
            out = out.append_column(name, vectors_column(values, self.spec, self.dim))
        return out.append_column("model", pa.array([self.model_hash] * len(tokens), pa.string()))
