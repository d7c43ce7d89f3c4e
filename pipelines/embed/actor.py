"""The actor of ``elmo embed``: :class:`pipelines.embed.api.ElmoEmbedder` on the job's sentence rows.

Ray Data calls :class:`EmbedActor` on an actor pool (``map_batches(EmbedActor, ...)``); it is plain
Python and can be tested on ``ds.take_batch(n)`` without a cluster. Input columns: ``source``,
``line``, ``doc_id``, ``sentence_index``, ``tokens``, ``output_key``; output: the same plus the
vector column(s) and ``model``.
"""

from __future__ import annotations

import pyarrow as pa

from pipelines import fault_injection
from pipelines.embed.api import ElmoEmbedder
from pipelines.embed.output import OutputSpec
from pipelines.io.storage import StorageOptions

JOB_COLUMNS = ["source", "line", "doc_id", "sentence_index", "tokens", "output_key"]


class EmbedActor(ElmoEmbedder):
    """``__call__(batch: pa.Table) -> pa.Table``; one row per sentence, stateless."""

    def __init__(self, model_url: str, spec: OutputSpec, model_hash: str, sub_batch: int | None = None,
                 device: str = "auto", storage: StorageOptions | None = None,
                 faults: fault_injection.Faults = fault_injection.NONE, precision: str = "fp32",
                 layout: str = "sentence") -> None:
        # The driver loaded this model and computed its digest: a node downloads it once (cache by digest).
        super().__init__(model_url, spec.layers, spec.pooling, spec.dtype, precision=precision, sub_batch=sub_batch,
                         device=device, storage=storage, model_hash=model_hash, layout=layout)
        self.faults = faults  # test-only (pipelines.fault_injection)

    def __call__(self, batch: pa.Table) -> pa.Table:
        fault_injection.exit_embed_actor_once(self.faults)
        fault_injection.trace_embed_actor(self.faults, batch.num_rows)
        return super().__call__(batch.select(JOB_COLUMNS))
