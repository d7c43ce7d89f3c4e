"""Ray Data ingestion: files under URLs → records → sentences with char ids (and token ids).

    plan = plan_inputs(["s3://corpus/train/"], IngestConfig())      # lists files (driver)
    ds = sentence_dataset(plan, IngestConfig(max_tokens=100), vocab)     # a lazy ray.data.Dataset

Input files are listed on the driver (so an empty prefix, a missing bucket or missing
credentials fail at once, naming the URL), then cut into bounded read blocks
(:mod:`pipelines.ingest.blocks`: line-aligned byte ranges, Parquet row groups, whole gzip files);
each block is read by one Ray task that yields bounded tables, so parallelism is over data, not
files, and provenance (``source``, ``line``) is exact.

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

from elmo_model.model.chars import MAX_CHARS
from elmo_model.errors import ElmoError
from elmo_model.formats.vocab import Vocabulary
from pipelines.ingest import blocks
from pipelines.ingest import sentences as stages
from pipelines.ingest import text_sources
from pipelines.io.storage import FileEntry, StorageOptions, list_files, resolve

DEFAULT_READ_CPUS = 0.25  # per read task: fits beside actors on any node that holds one
# Memory a read task asks for (it holds one bounded table at a time). Also makes the read stage's
# remote arguments differ from any actor stage's, so that Ray Data never fuses reads into an actor
# pool (a fused stage bundles many read blocks into one task on one actor).
READ_TASK_MEMORY = 256 << 20
STAGE_BLOCK_BYTES = 4 << 20  # the largest Ray Data block a stage outputs (Ray's default: 128 MiB)
SLICE_TEXT_BYTES = 1 << 20  # text tokenized at a time by the sentence stage


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
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or self.max_tokens < 1):
            raise ElmoError(f"ingest.max_tokens must be at least 1, got {self.max_tokens} (leave it unset for no cap)")
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


def read_block_records(block: dict, filesystems: Sequence[Any], config: IngestConfig) -> Iterator[pa.Table]:
    """Record tables of one read block (a row of :func:`block_rows`; :mod:`pipelines.ingest.blocks`)."""
    fs, path, url = filesystems[block["filesystem"]], block["path"], block["url"]
    kind, span = blocks.parse_key(block["key"])
    first = block["first_line"]
    if block["format"] == "parquet":
        return text_sources.read_parquet_file(fs, path, url, config.text_field, config.id_field,
                                              row_groups=span if kind == "rows" else None, first_row=first)
    byte_range = span if kind == "bytes" else None
    if block["format"] == "jsonl":
        return text_sources.read_jsonl_file(fs, path, url, config.text_field, config.id_field, config.invalid_utf8,
                                            byte_range=byte_range, first_line=first)
    return text_sources.read_text_file(fs, path, url, config.invalid_utf8, byte_range=byte_range, first_line=first)


def _read_batch(rows: pa.Table, filesystems: Sequence[Any], config: IngestConfig) -> Iterator[pa.Table]:
    for block in rows.to_pylist():
        yield from read_block_records(block, filesystems, config)


def _as_plan(inputs: InputPlan | str | Sequence[str], config: IngestConfig, options: StorageOptions | None) -> InputPlan:
    return inputs if isinstance(inputs, InputPlan) else plan_inputs(inputs, config, options)


def parquet_row_groups(filesystem: Any, path: str, url: str) -> list[int]:
    """Rows per row group of a Parquet file (read from its footer)."""
    import pyarrow.parquet as pq

    try:
        with filesystem.open_input_file(path) as handle:
            meta = pq.ParquetFile(handle).metadata
            return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    except FileNotFoundError:
        raise ElmoError(f"{url}: file not found") from None
    except (OSError, pa.ArrowException) as exc:
        raise ElmoError(f"{url}: not a readable Parquet file ({exc})") from None


def _count_range(item: tuple[int, str, int, int], filesystems: Sequence[Any]) -> int:
    fs_index, path, start, end = item
    with filesystems[fs_index].open_input_file(path) as handle:
        return blocks.count_newlines(handle, start, end)


def number_read_blocks(planned: list[blocks.ReadBlock], plan: InputPlan, plans: dict[str, Sequence[str]],
                       read_cpus: float = DEFAULT_READ_CPUS) -> list[blocks.ReadBlock]:
    """:func:`blocks.number_blocks` with the newline counts computed by Ray tasks (one per byte range)."""
    import ray

    from pipelines.ray_support import clean_errors

    count = ray.remote(num_cpus=read_cpus)(_count_range)
    row_cache: dict[str, list[int]] = {}

    def counts(items: list[tuple[int, str, int, int]]) -> list[int]:
        with clean_errors():
            return ray.get([count.remote(item, plan.filesystems) for item in items])

    def row_counts(block: blocks.ReadBlock) -> list[int]:
        if block.url not in row_cache:
            row_cache[block.url] = parquet_row_groups(plan.filesystems[block.filesystem], block.path, block.url)
        return row_cache[block.url]

    return blocks.number_blocks(planned, counts, plans, row_counts)


def plan_read_blocks(plan: InputPlan, target_bytes: int,
                     recorded: dict[str, Sequence[str]] | None = None) -> list[blocks.ReadBlock]:
    """The read blocks of ``plan`` (not yet numbered) of about ``target_bytes`` each
    (:func:`blocks.block_size`); ``recorded[url]`` keeps an earlier plan of a file."""
    return blocks.plan_blocks(plan.files, target_bytes,
                              lambda f: parquet_row_groups(plan.filesystems[f.filesystem], f.path, f.url), recorded)


def block_rows(planned: Sequence[blocks.ReadBlock]) -> list[dict]:
    return [{"url": b.url, "path": b.path, "format": b.format, "filesystem": b.filesystem, "key": b.key,
             "first_line": b.first_line} for b in planned]


def read_blocks(numbered: Sequence[blocks.ReadBlock], plan: InputPlan, config: IngestConfig = IngestConfig(),
                read_cpus: float = DEFAULT_READ_CPUS) -> Any:
    """A ``ray.data.Dataset`` of records: one Ray task per read block, each yielding bounded tables.

    The reads ask ``read_cpus`` CPUs and :data:`READ_TASK_MEMORY`."""
    from pipelines.ray_support import items_dataset

    if not numbered:
        raise ElmoError("no read blocks to read")
    rows = items_dataset(block_rows(numbered))  # one Ray Data block (and so one read task) per read block
    # Every stage (reads, sentences, an actor pool after them) hands on blocks of at most this size:
    # an actor's memory is bounded by it, not by the size of the read block or the file.
    rows.context.target_max_block_size = STAGE_BLOCK_BYTES
    read = functools.partial(_read_batch, filesystems=plan.filesystems, config=config)
    return rows.map_batches(read, batch_size=1, batch_format="pyarrow", num_cpus=read_cpus, memory=READ_TASK_MEMORY)


def read_records(inputs: InputPlan | str | Sequence[str], config: IngestConfig = IngestConfig(),
                 options: StorageOptions | None = None, parallelism: int | None = None,
                 block_bytes: int = blocks.DEFAULT_BLOCK_BYTES, read_cpus: float = DEFAULT_READ_CPUS) -> Any:
    """A ``ray.data.Dataset`` of records (see :mod:`pipelines.ingest.text_sources`), in input order:
    the files are cut into read blocks of at most ``block_bytes`` (``parallelism``: blocks wanted in
    all, by default 4 per CPU of the cluster), one Ray task per block."""
    import ray

    from pipelines.ray_support import ensure_ray

    plan = _as_plan(inputs, config, options)
    ensure_ray()
    if parallelism is None:
        parallelism = 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    planned = plan_read_blocks(plan, blocks.block_size(plan.total_bytes, parallelism, block_bytes))
    plans = {url: [b.key for b in planned if b.url == url] for url in {b.url for b in planned}}
    return read_blocks(number_read_blocks(planned, plan, plans, read_cpus), plan, config, read_cpus)


class SentenceStage:
    """Records → sentences (+ char ids, + token ids given a vocabulary): a generator of pyarrow
    tables, one per slice of at most :data:`SLICE_TEXT_BYTES` of text (the Python strings of a
    tokenized slice are many times its bytes: slicing keeps a read task's memory flat)."""

    def __init__(self, config: IngestConfig, vocab: Vocabulary | None = None, char_ids: bool = True) -> None:
        self.split = stages.resolve_fn(config.sentence_split, stages.SPLITTERS, "sentence splitter")
        self.tokenize = stages.resolve_fn(config.tokenizer, stages.TOKENIZERS, "tokenizer")
        self.config, self.vocab, self.char_ids = config, vocab, char_ids

    def __call__(self, records: pa.Table) -> Iterator[pa.Table]:
        for piece in stages.text_slices(records, SLICE_TEXT_BYTES):
            yield self.sentences(piece)

    def sentences(self, records: pa.Table) -> pa.Table:
        """The sentence table of ``records`` (all at once)."""
        table = stages.sentence_table(records, self.split, self.tokenize, self.config.max_tokens)
        if self.char_ids:
            table = stages.add_char_ids(table, self.config.max_characters_per_token)
        if self.vocab is not None:
            table = stages.add_token_ids(table, self.vocab)
        return table


def sentence_dataset(inputs: InputPlan | str | Sequence[str], config: IngestConfig = IngestConfig(),
                   vocab: Vocabulary | None = None, options: StorageOptions | None = None,
                   char_ids: bool = True) -> Any:
    """A ``ray.data.Dataset`` of sentences with char ids (and token ids given ``vocab``)."""
    stage = SentenceStage(config, vocab, char_ids)  # checks the splitter and tokenizer names now
    return sentences_of(read_records(inputs, config, options), stage)


def sentences_of(records: Any, stage: SentenceStage, read_cpus: float = DEFAULT_READ_CPUS) -> Any:
    """``records`` → sentences, fused into the read tasks (the same remote arguments as :func:`read_blocks`)."""
    return records.map_batches(stage, batch_size=None, batch_format="pyarrow", zero_copy_batch=True,
                               num_cpus=read_cpus, memory=READ_TASK_MEMORY)
