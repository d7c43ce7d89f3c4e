"""Reading one input file into record tables, with provenance. No Ray here: plain functions.

A *record* is a line of a text file, a line (JSON object) of a JSONL file or a row of a Parquet
file. Each file is streamed in chunks and yields pyarrow tables with the columns of
:data:`RECORD_SCHEMA`: ``source`` (the file's URL), ``line`` (0-based line number — for JSONL the
physical line, for Parquet the row number), ``doc_id`` (the id field, null for plain text),
``text`` (null when the record was skipped) and ``bad_utf8`` (the record held invalid UTF-8).

Invalid UTF-8 follows a policy: ``replace`` (U+FFFD), ``skip`` (text becomes null) or ``fail``
(an :class:`ElmoError` naming the URL and line). Corrupt gzip, unreadable files, malformed JSON
and missing fields also raise :class:`ElmoError` naming the URL.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterator
from typing import Any, Literal

import pyarrow as pa

from elmo_model.errors import ElmoError
from pipelines.ingest import blocks as blocks_mod
from pipelines.ingest import compression

logger = logging.getLogger(__name__)

Utf8Policy = Literal["replace", "skip", "fail"]
Format = Literal["txt", "jsonl", "parquet"]
RECORD_SCHEMA = pa.schema([
    ("source", pa.string()), ("line", pa.int64()), ("doc_id", pa.string()),
    ("text", pa.string()), ("bad_utf8", pa.bool_()),
])
CHUNK_BYTES = blocks_mod.CHUNK_BYTES  # bytes read per step; one output table per chunk
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")  # also under a compression suffix (.jsonl.gz, .json.zst, ...)
_PARQUET_SUFFIXES = (".parquet", ".pq")


def detect_format(path: str, requested: str = "auto") -> Format:
    """The format of ``path``: ``requested`` unless it is ``auto``; then by suffix (default txt)."""
    if requested != "auto":
        return requested  # type: ignore[return-value]
    lower = compression.strip_compression_suffix(path.lower())
    if lower.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    return "txt"


def _table(url: str, first_line: int, texts: list, bad: list[bool], lines: list[int] | None = None,
           doc_ids: list | None = None) -> pa.Table:
    n = len(texts)
    line = pa.array(lines, pa.int64()) if lines is not None else pa.array(range(first_line, first_line + n), pa.int64())
    return pa.Table.from_arrays([
        pa.array([url] * n, pa.string()), line,
        pa.array(doc_ids, pa.string()) if doc_ids is not None else pa.nulls(n, pa.string()),
        pa.array(texts, pa.string()), pa.array(bad, pa.bool_()),
    ], schema=RECORD_SCHEMA)


def decode_bad_line(raw: bytes, policy: Utf8Policy, url: str, line: int) -> str | None:
    """Text of a line that is not valid UTF-8, under ``policy``; ``None`` means skip it."""
    if policy == "fail":
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ElmoError(f"{url}:{line + 1}: invalid UTF-8 at byte {exc.start} of the line "
                            "(set invalid_utf8 to replace or skip to go on)") from None
    return raw.decode("utf-8", "replace") if policy == "replace" else None


def _decode_chunk(chunk: bytes, first_line: int, policy: Utf8Policy, url: str) -> tuple[list, list[bool]]:
    """Lines of ``chunk`` (complete lines, no trailing newline) as text, plus bad-UTF-8 flags.
    NUL bytes are read as spaces (a tokenizer then splits there)."""
    if b"\x00" in chunk:
        chunk = chunk.replace(b"\x00", b" ")
    try:
        lines = chunk.decode("utf-8").split("\n")
        return [s[:-1] if s.endswith("\r") else s for s in lines], [False] * len(lines)
    except UnicodeDecodeError:
        pass
    texts, bad = [], []
    for i, raw in enumerate(chunk.split(b"\n")):
        raw = raw.removesuffix(b"\r")
        try:
            texts.append(raw.decode("utf-8"))
            bad.append(False)
        except UnicodeDecodeError:
            texts.append(decode_bad_line(raw, policy, url, first_line + i))
            bad.append(True)
    return texts, bad


_READ_ERRORS = (*compression.READ_ERRORS, zlib.error, pa.ArrowException)


def _stream_blocks(stream: Any, url: str, codec: str | None) -> Iterator[bytes]:
    first = True
    while True:
        try:
            block = stream.read(CHUNK_BYTES)
        except _READ_ERRORS as exc:
            if codec is None:
                raise ElmoError(f"{url}: cannot read: {exc}") from None
            raise ElmoError(f"{url}: corrupt or truncated {codec} data ({exc})") from None
        if not block:
            return
        if first:
            compression.check_text(block, url)
            first = False
        yield block


def _raw_chunks(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """Successive runs of complete lines (without the final newline) of the bytes in ``blocks``."""
    pending = b""
    for block in blocks:
        pending += block
        cut = pending.rfind(b"\n")
        if cut >= 0:
            yield pending[:cut]
            pending = pending[cut + 1:]
    if pending:
        yield pending


def _open_lines(arrow_fs: Any, path: str, url: str, byte_range: tuple[int, int] | None = None) -> Iterator[bytes]:
    """Runs of complete lines of the file, or of its block ``bytes:S-E`` (:mod:`pipelines.ingest.blocks`).

    Compressed data (by name or by its first bytes, :mod:`pipelines.ingest.compression`) is not
    splittable: the block at offset 0 streams the whole file decompressed, the others yield nothing."""
    try:
        handle = arrow_fs.open_input_file(path)
    except FileNotFoundError:
        raise ElmoError(f"{url}: file not found") from None
    except OSError as exc:
        raise ElmoError(f"{url}: cannot open: {exc}") from None
    with handle:
        try:
            size = handle.size()
            head = handle.read_at(min(compression.HEAD_BYTES, size), 0) if size else b""
        except OSError as exc:
            raise ElmoError(f"{url}: cannot read: {exc}") from None
        codec = compression.codec_of(path, head, url)
        if codec is not None:
            if byte_range is not None and byte_range[0] > 0:
                return
            handle.seek(0)
            blocks = _stream_blocks(compression.decompressed(handle, codec), url, codec)
        elif byte_range is not None:
            chunks = blocks_mod.byte_range_chunks(handle, byte_range[0], byte_range[1], size)
            blocks = _checked_first(chunks, url) if byte_range[0] == 0 else chunks
        else:
            handle.seek(0)
            blocks = _stream_blocks(handle, url, None)
        try:
            yield from _raw_chunks(blocks)
        except OSError as exc:
            raise ElmoError(f"{url}: cannot read: {exc}") from None


def _checked_first(chunks: Iterator[bytes], url: str) -> Iterator[bytes]:
    for k, chunk in enumerate(chunks):
        if k == 0:
            compression.check_text(chunk, url)
        yield chunk


def _strip_bom(texts: list, line: int) -> None:
    """A UTF-8 byte-order mark at the start of a file is not text."""
    if line == 0 and texts and isinstance(texts[0], str) and texts[0].startswith("\ufeff"):
        texts[0] = texts[0][1:]


def read_text_file(arrow_fs: Any, path: str, url: str, policy: Utf8Policy = "replace",
                   byte_range: tuple[int, int] | None = None, first_line: int = 0) -> Iterator[pa.Table]:
    """Record tables of a text file (``.gz`` is decompressed), or of its block ``byte_range`` whose
    first line is ``first_line``: one record per line."""
    line, n_bad = first_line, 0
    for chunk in _open_lines(arrow_fs, path, url, byte_range):
        texts, bad = _decode_chunk(chunk, line, policy, url)
        _strip_bom(texts, line)
        n_bad += sum(bad)
        yield _table(url, line, texts, bad)
        line += len(texts)
    _report_bad(url, n_bad, policy)


def _report_bad(url: str, n_bad: int, policy: str) -> None:
    if n_bad:
        action = "replaced with U+FFFD" if policy == "replace" else "skipped"
        logger.warning("%s: %d line(s) with invalid UTF-8 %s", url, n_bad, action)


def _json_record(text: str, url: str, line: int, text_field: str, id_field: str | None) -> tuple[str | None, str | None]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ElmoError(f"{url}:{line + 1}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ElmoError(f"{url}:{line + 1}: expected a JSON object, got {type(obj).__name__}")
    if text_field not in obj:
        raise ElmoError(f"{url}:{line + 1}: no field {text_field!r} (set the text field with --text-field)")
    value = obj[text_field]
    if value is not None and not isinstance(value, str):
        raise ElmoError(f"{url}:{line + 1}: field {text_field!r} is {type(value).__name__}, expected a string")
    doc_id = obj.get(id_field) if id_field else None
    return value, None if doc_id is None else str(doc_id)


def read_jsonl_file(arrow_fs: Any, path: str, url: str, text_field: str = "text", id_field: str | None = "id",
                    policy: Utf8Policy = "replace", byte_range: tuple[int, int] | None = None,
                    first_line: int = 0) -> Iterator[pa.Table]:
    """Record tables of a JSONL file (or of its block ``byte_range``): one record per non-blank line,
    ``line`` = physical line."""
    line, n_bad = first_line, 0
    for chunk in _open_lines(arrow_fs, path, url, byte_range):
        texts, bad = _decode_chunk(chunk, line, policy, url)
        _strip_bom(texts, line)
        rows: tuple[list, list, list, list] = ([], [], [], [])
        for i, (raw_text, is_bad) in enumerate(zip(texts, bad)):
            if raw_text is not None and not raw_text.strip():
                continue
            text, doc_id = (None, None) if raw_text is None else _json_record(raw_text, url, line + i, text_field, id_field)
            for column, value in zip(rows, (text, is_bad, line + i, doc_id)):
                column.append(value)
        n_bad += sum(bad)
        line += len(texts)
        if rows[0]:
            yield _table(url, 0, rows[0], rows[1], lines=rows[2], doc_ids=rows[3])
    _report_bad(url, n_bad, policy)


def read_parquet_file(arrow_fs: Any, path: str, url: str, text_field: str = "text", id_field: str | None = "id",
                      batch_rows: int = 65536, row_groups: tuple[int, int] | None = None,
                      first_row: int = 0) -> Iterator[pa.Table]:
    """Record tables of a Parquet file (or of its row groups ``[G0, G1)``, whose first row is
    ``first_row``): one record per row of column ``text_field``."""
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(arrow_fs.open_input_file(path))
    except FileNotFoundError:
        raise ElmoError(f"{url}: file not found") from None
    except (OSError, pa.ArrowException) as exc:
        raise ElmoError(f"{url}: not a readable Parquet file ({exc})") from None
    names = handle.schema_arrow.names
    if text_field not in names:
        raise ElmoError(f"{url}: no column {text_field!r} (columns: {', '.join(names)}; set --text-field)")
    text_type = handle.schema_arrow.field(text_field).type
    if pa.types.is_dictionary(text_type):
        text_type = text_type.value_type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)
            or getattr(pa.types, "is_string_view", lambda t: False)(text_type)):
        raise ElmoError(f"{url}: column {text_field!r} is {text_type}, expected strings (set --text-field to a text column)")
    columns = [text_field] + ([id_field] if id_field and id_field in names else [])
    row = first_row
    groups = None if row_groups is None else list(range(*row_groups))
    try:
        for batch in handle.iter_batches(batch_size=batch_rows, columns=columns, row_groups=groups):
            texts = batch.column(text_field).cast(pa.string())
            doc_ids = batch.column(id_field).cast(pa.string()).to_pylist() if len(columns) > 1 else None
            yield _table(url, row, texts.to_pylist(), [False] * len(texts), doc_ids=doc_ids)
            row += len(texts)
    except (OSError, pa.ArrowException) as exc:
        raise ElmoError(f"{url}: cannot read Parquet data ({exc})") from None
