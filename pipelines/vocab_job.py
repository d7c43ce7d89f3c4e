"""``elmo vocab``: count tokens over a corpus with Ray Data and write a bilm-tf vocabulary.

Each block of records is split and tokenized exactly as for training (the same
:class:`pipelines.ingest.IngestConfig`), its tokens counted with Arrow's ``value_counts``; the
driver merges the per-block counts. Under the output URL it writes ``counts.tsv`` (every
distinct token, ``token<TAB>count``, by descending count then token), ``config.toml`` (the
resolved config) and, last, ``vocab.txt`` (``<S>``, ``</S>``, ``<UNK>``, then the top tokens);
each file is written under a ``_`` staging name and then moved into place.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from elmo_model.errors import ElmoError
from elmo_model.formats.vocab import SPECIAL_TOKENS, Vocabulary
from pipelines.config import write_config
from pipelines.ingest.reader import DEFAULT_READ_CPUS, READ_TASK_MEMORY, IngestConfig, InputPlan, check_sentences, plan_inputs, read_records
from pipelines.ingest.sentences import SPLITTERS, TOKENIZERS, resolve_fn, sentence_table
from pipelines.io.storage import StorageOptions, check_output, resolve, write_text

STAT_NAMES = ("records", "invalid_utf8", "sentences", "tokens")


@dataclass(frozen=True)
class VocabConfig:
    """``elmo vocab`` settings (TOML tables: top level and ``[ingest]``)."""

    inputs: tuple[str, ...] = ()
    output: str = ""
    max_size: int | None = None  # vocabulary size including <S>, </S>, <UNK>
    min_count: int = 1
    ingest: IngestConfig = field(default_factory=IngestConfig)

    def validate(self) -> None:
        if not self.inputs or not self.output:
            raise ElmoError("elmo vocab needs at least one --input and an --output")
        if self.max_size is not None and self.max_size < len(SPECIAL_TOKENS) + 1:
            raise ElmoError(f"max_size must be at least {len(SPECIAL_TOKENS) + 1} (it counts "
                            f"{', '.join(SPECIAL_TOKENS)}), got {self.max_size}")
        if self.min_count < 1:
            raise ElmoError(f"min_count must be at least 1, got {self.min_count}")


@dataclass
class VocabResult:
    counts: Counter
    stats: dict[str, int]
    vocab: Vocabulary
    output_url: str


class CountStage:
    """Records → one row: this block's distinct tokens, their counts, and record/sentence/token totals."""

    def __init__(self, config: IngestConfig) -> None:
        self.split = resolve_fn(config.sentence_split, SPLITTERS, "sentence splitter")
        self.tokenize = resolve_fn(config.tokenizer, TOKENIZERS, "tokenizer")
        self.max_tokens = config.max_tokens

    def __call__(self, records: pa.Table) -> pa.Table:
        sentences = sentence_table(records, self.split, self.tokenize, self.max_tokens)
        flat = sentences.column("tokens").combine_chunks().flatten() if sentences.num_rows else pa.array([], pa.string())
        counted = pc.value_counts(flat)
        stats = {"records": records.num_rows, "invalid_utf8": pc.sum(records.column("bad_utf8")).as_py() or 0,
                 "sentences": sentences.num_rows, "tokens": len(flat)}
        per_file = pc.value_counts(sentences.column("source").combine_chunks()) if sentences.num_rows else None
        return pa.table({"token": pa.array([counted.field("values")], pa.list_(pa.string())),
                         "count": pa.array([counted.field("counts")], pa.list_(pa.int64())),
                         "file": pa.array([per_file.field("values") if per_file else []], pa.list_(pa.string())),
                         "file_sentences": pa.array([per_file.field("counts") if per_file else []], pa.list_(pa.int64())),
                         **{name: pa.array([value], pa.int64()) for name, value in stats.items()}})


def count_tokens(plan: InputPlan, config: IngestConfig) -> tuple[Counter, dict[str, int]]:
    """Token counts and totals over the files of ``plan`` (starts Ray if needed); an input file
    without sentences is an error naming it."""
    from pipelines.ray_support import clean_errors, ensure_ray

    ensure_ray()
    counts: Counter = Counter()
    stats = dict.fromkeys(STAT_NAMES, 0)
    per_file = dict.fromkeys((f.url for f in plan.files), 0)
    blocks = read_records(plan, config).map_batches(  # fused into the read tasks (same remote arguments)
        CountStage(config), batch_size=None, batch_format="pyarrow", zero_copy_batch=True,
        num_cpus=DEFAULT_READ_CPUS, memory=READ_TASK_MEMORY)
    with clean_errors():
        for batch in blocks.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                counts.update(dict(zip(row["token"], row["count"])))
                for name in STAT_NAMES:
                    stats[name] += row[name]
                for url, n in zip(row["file"], row["file_sentences"]):
                    per_file[url] = per_file.get(url, 0) + n
    check_sentences(per_file)
    return counts, stats


def counts_tsv(counts: Counter) -> str:
    bad = next((t for t in counts if any(c in t for c in "\t\n\r")), None)
    if bad is not None:
        raise ElmoError(f"token {bad!r} contains a tab or newline; the tokenizer must not produce those")
    ranked = sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))
    return "".join(f"{token}\t{count}\n" for token, count in ranked)


def build_vocab(config: VocabConfig, options: StorageOptions | None = None) -> VocabResult:
    """Count, then write ``counts.tsv``, ``config.toml`` and ``vocab.txt`` under ``config.output``."""
    config.validate()
    plan = plan_inputs(config.inputs, config.ingest, options)  # input errors first, then the output's
    out = resolve(config.output, options)
    check_output(out.url, options)
    counts, stats = count_tokens(plan, config.ingest)
    if not counts:
        raise ElmoError(f"{', '.join(config.inputs)}: no tokens found in the input")
    vocab = Vocabulary.from_counts(counts, config.max_size, config.min_count)
    write_text(out.join("counts.tsv").url, counts_tsv(counts), options)
    write_config(config, out.join("config.toml").url, options)
    write_text(out.join("vocab.txt").url, vocab.to_text(), options)
    return VocabResult(counts, stats, vocab, out.url)
