"""``elmo embed``: the job (:mod:`.job`), the Ray Data API (:mod:`.api`: :class:`ElmoEmbedder`,
:func:`embed_dataset`), the job's actor (:mod:`.actor`), the output columns (:mod:`.output`), the
exactly-once manifest (:mod:`.manifest`) and the pool's placement checks (:mod:`.placement`)."""

from pipelines.embed.api import ElmoEmbedder, embed_dataset

__all__ = ["ElmoEmbedder", "embed_dataset"]
