"""Ray Data ingestion: files under URLs → records → sentences with char ids (and token ids).

    plan = plan_inputs(["s3://corpus/train/"], IngestConfig())      # lists files (driver)
    ds = read_sentences(plan, IngestConfig(max_tokens=100), vocab)     # a lazy ray.data.Dataset

Input files are listed on the driver (so an empty prefix, a missing bucket or missing
credentials fail at once, naming the URL); each file is then read by one Ray task, streamed in
chunks, so parallelism is over files and provenance (``source``, ``line``) is exact.

Sentence rows: ``source`` string, ``line`` int64, ``doc_id`` string|null, ``sentence_index``
int32, ``text`` string, ``tokens`` list<string>, ``n_tokens`` int32, ``char_ids``
list<fixed_size_list<int16, 50>> (no ``<S>``/``</S>`` added), and with a vocabulary ``token_ids``
list<int32>. :func:`pipelines.ingest.sentences.pad_char_ids` turns a batch's ``char_ids`` into the
``batch_to_ids`` array. Consume inside :func:`pipelines.ray_support.clean_errors` so that errors
raised in workers (corrupt gzip, invalid UTF-8 under ``fail``) arrive as one :class:`ElmoError`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from elmo_model.chars import MAX_CHARS
from elmo_model.errors import ElmoError
from elmo_model.vocab import Vocabulary
from pipelines.ingest import sentences as stages
from pipelines.ingest import text_sources
from pipelines.io.storage import FileEntry, StorageOptions, list_files, resolve


@dataclass(frozen=True)
class IngestConfig:
    """How input files become sentences (the ``ingest`` table of every job's config)."""

    format: Literal["auto", "txt", "jsonl", "parquet"] = "auto"
    text_field: str = "text"  # JSONL field / Parquet column holding the text
    id_field: str | Literal[False] | None = "id"  # JSONL field / Parquet column kept as doc_id (if present);
    # "" (or false / None) = no id column: doc_id stays null
    sentence_split: str = "line"  # "line", "none" or "module:function"
    tokenizer: str = "whitespace"  # "whitespace" or "module:function"
    max_tokens: int | None = None  # cap on tokens per sentence (the rest is cut off)
    invalid_utf8: Literal["replace", "skip", "fail"] = "replace"
    max_characters_per_token: int = MAX_CHARS

    def __post_init__(self) -> None:
        if not self.id_field:  # one spelling of "none" ("") so the resolved config.toml reloads the same
            object.__setattr__(self, "id_field", "")


@dataclass(frozen=True)
class InputFile:
    url: str
    path: str
    size: int
    format: str
    filesystem: int  # index into InputPlan.filesystems


@dataclass(frozen=True)
class InputPlan:
    """The files to read (in URL order) and the pyarrow filesystems that read them."""

    files: tuple[InputFile, ...]
    filesystems: tuple[Any, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def plan_inputs(urls: str | Sequence[str], config: IngestConfig = IngestConfig(),
                options: StorageOptions | None = None) -> InputPlan:
    """List every input file under ``urls``; errors (empty prefix, no bucket, …) name the URL."""
    return list_inputs(urls, config, options)[1]


def list_inputs(urls: str | Sequence[str], config: IngestConfig = IngestConfig(),
                options: StorageOptions | None = None) -> tuple[list[FileEntry], InputPlan]:
    """:func:`plan_inputs`, with every file's listing entry (its fingerprint, for ``elmo embed``)."""
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ElmoError("no input given")
    entries, files, filesystems = [], [], []
    for url in urls:
        filesystems.append(resolve(url, options).arrow_fs)
        for entry in list_files(url, options):
            entries.append(entry)
            fmt = text_sources.detect_format(entry.path, config.format)
            files.append(InputFile(entry.url, entry.path, entry.size, fmt, len(filesystems) - 1))
    check_sentences({e.url: e.size for e in entries}, "the file is empty")
    return entries, InputPlan(tuple(files), tuple(filesystems))


def check_sentences(counts: dict[str, int], why: str = "every line is empty or blank") -> None:
    """One error naming the first input file whose count is zero: an input without sentences is bad
    input. Every command checks bytes when it lists its inputs; ``elmo vocab`` and ``elmo embed``
    also check sentences per file once they have read them."""
    empty = [url for url, count in counts.items() if not count]
    if empty:
        more = f" (and {len(empty) - 1} more input file(s) without sentences)" if len(empty) > 1 else ""
        raise ElmoError(f"{empty[0]}: no sentences ({why}){more}")


def read_file_records(file: dict, filesystems: Sequence[Any], config: IngestConfig) -> Iterator[pa.Table]:
    """Record tables of one input file (a row of the plan's file table)."""
    fs, path, url = filesystems[file["filesystem"]], file["path"], file["url"]
    if file["format"] == "parquet":
        return text_sources.read_parquet_file(fs, path, url, config.text_field, config.id_field)
    if file["format"] == "jsonl":
        return text_sources.read_jsonl_file(fs, path, url, config.text_field, config.id_field, config.invalid_utf8)
    return text_sources.read_text_file(fs, path, url, config.invalid_utf8)


def _read_batch(files: pa.Table, filesystems: Sequence[Any], config: IngestConfig) -> Iterator[pa.Table]:
    for file in files.to_pylist():
        yield from read_file_records(file, filesystems, config)


def _as_plan(inputs: InputPlan | str | Sequence[str], config: IngestConfig, options: StorageOptions | None) -> InputPlan:
    return inputs if isinstance(inputs, InputPlan) else plan_inputs(inputs, config, options)


def read_records(inputs: InputPlan | str | Sequence[str], config: IngestConfig = IngestConfig(),
                 options: StorageOptions | None = None) -> Any:
    """A ``ray.data.Dataset`` of records (see :mod:`pipelines.ingest.text_sources`), one task per file."""
    from pipelines.ray_support import items_dataset

    plan = _as_plan(inputs, config, options)
    rows = [{"url": f.url, "path": f.path, "format": f.format, "filesystem": f.filesystem} for f in plan.files]
    files = items_dataset(rows)  # one block (and so one read task) per file
    read = functools.partial(_read_batch, filesystems=plan.filesystems, config=config)
    return files.map_batches(read, batch_size=1, batch_format="pyarrow")


class SentenceStage:
    """Records → sentences (+ char ids, + token ids given a vocabulary): one pyarrow batch at a time."""

    def __init__(self, config: IngestConfig, vocab: Vocabulary | None = None, char_ids: bool = True) -> None:
        self.split = stages.resolve_fn(config.sentence_split, stages.SPLITTERS, "sentence splitter")
        self.tokenize = stages.resolve_fn(config.tokenizer, stages.TOKENIZERS, "tokenizer")
        self.config, self.vocab, self.char_ids = config, vocab, char_ids

    def __call__(self, records: pa.Table) -> pa.Table:
        table = stages.sentence_table(records, self.split, self.tokenize, self.config.max_tokens)
        if self.char_ids:
            table = stages.add_char_ids(table, self.config.max_characters_per_token)
        if self.vocab is not None:
            table = stages.add_token_ids(table, self.vocab)
        return table


def read_sentences(inputs: InputPlan | str | Sequence[str], config: IngestConfig = IngestConfig(),
                   vocab: Vocabulary | None = None, options: StorageOptions | None = None,
                   char_ids: bool = True) -> Any:
    """A ``ray.data.Dataset`` of sentences with char ids (and token ids given ``vocab``)."""
    stage = SentenceStage(config, vocab, char_ids)  # checks the splitter and tokenizer names now
    records = read_records(inputs, config, options)
    return records.map_batches(stage, batch_size=None, batch_format="pyarrow", zero_copy_batch=True)
