"""Compressed and odd inputs: the compressions people use are read (by extension and by magic
bytes), binary data is refused with one line, a BOM is stripped, NUL bytes are spaces, a
non-string Parquet text column and a non-positive token cap are refused. No Ray: the readers
themselves, on real files."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest

from elmo_model.errors import ElmoError
from pipelines.ingest import blocks
from pipelines.ingest.reader import IngestConfig
from pipelines.ingest.text_sources import detect_format, read_jsonl_file, read_parquet_file, read_text_file

FS = pyarrow.fs.LocalFileSystem()
TEXT = "The bank raised its rates .\nWe sat on the river bank .\n\nA third line\n"


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, ".zst": _zstd}


def _lines(tables) -> list[tuple[int, str | None]]:
    return [pair for t in tables for pair in zip(t.column("line").to_pylist(), t.column("text").to_pylist())]


WHOLE = list(enumerate(TEXT.split("\n")[:-1]))


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_compressed_text_is_read_by_extension_and_by_magic_bytes(tmp_path, suffix):
    data = COMPRESSORS[suffix](TEXT.encode())
    named = tmp_path / f"a.txt{suffix}"
    named.write_bytes(data)
    assert _lines(read_text_file(FS, str(named), "u")) == WHOLE
    hidden = tmp_path / "b.txt"  # compressed, but named as plain text
    hidden.write_bytes(data)
    assert _lines(read_text_file(FS, str(hidden), "u")) == WHOLE
    # split into byte ranges (its name says plain text): the first block reads it all, the others nothing
    size = hidden.stat().st_size
    got = []
    for key in blocks.byte_range_keys(size, max(1, size // 3)):
        span = blocks.parse_key(key)[1]
        got.extend(_lines(read_text_file(FS, str(hidden), "u", byte_range=span, first_line=0 if span[0] == 0 else 99)))
    assert got == WHOLE


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_compressed_jsonl_keeps_its_format_and_is_one_block(tmp_path, suffix):
    path = tmp_path / f"a.jsonl{suffix}"
    path.write_bytes(COMPRESSORS[suffix](b'{"id": 1, "text": "hello there"}\n'))
    assert detect_format(str(path)) == "jsonl"
    assert not blocks.splittable(str(path), "jsonl")
    assert _lines(read_jsonl_file(FS, str(path), "u")) == [(0, "hello there")]


@pytest.mark.parametrize("data, what", [
    (b"PK\x03\x04" + bytes(200), "a zip archive"),
    (bytes(range(256)) * 40, "binary data"),
    (gzip.compress(b"ok", mtime=0)[:-6] + b"\x00" * 3, "corrupt or truncated gzip data"),
])
def test_binary_or_corrupt_input_is_refused_with_one_line_naming_the_file(tmp_path, data, what):
    path = tmp_path / "x.txt"
    path.write_bytes(data)
    with pytest.raises(ElmoError, match=f"file://{path}: .*{what}"):
        list(read_text_file(FS, str(path), f"file://{path}"))


def test_a_bom_is_stripped_and_nul_bytes_are_spaces(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffWord one\nnul\x00separated\n".encode())
    assert _lines(read_text_file(FS, str(path), "u")) == [(0, "Word one"), (1, "nul separated")]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes('\ufeff{"text": "a b"}\n'.encode())
    assert _lines(read_jsonl_file(FS, str(jsonl), "u")) == [(0, "a b")]


def test_a_parquet_text_column_must_hold_strings(tmp_path):
    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(ElmoError, match="column 'text' is int64, expected strings"):
        list(read_parquet_file(FS, str(path), "u"))
    ok = tmp_path / "dict.parquet"
    pq.write_table(pa.table({"text": pa.array(["a b", "c"]).dictionary_encode()}), ok)
    assert _lines(read_parquet_file(FS, str(ok), "u")) == [(0, "a b"), (1, "c")]


@pytest.mark.parametrize("bad", [0, -5])
def test_max_tokens_must_be_positive(bad):
    with pytest.raises(ElmoError, match=f"ingest.max_tokens must be at least 1, got {bad}"):
        IngestConfig(max_tokens=bad)
    assert IngestConfig(max_tokens=1).max_tokens == 1 and IngestConfig().max_tokens is None


def test_the_readers_do_not_read_past_a_compressed_block(tmp_path: Path):
    """A compressed file that the planner splits by its name (it says .txt) is read once in all."""
    path = tmp_path / "c.txt"
    path.write_bytes(gzip.compress(("word " * 50 + "\n").encode() * 2000))
    size = path.stat().st_size
    keys = blocks.byte_range_keys(size, size // 5 + 1)
    total = sum(t.num_rows for key in keys
                for t in read_text_file(FS, str(path), "u", byte_range=blocks.parse_key(key)[1]))
    assert len(keys) >= 5 and total == 2000


def test_an_output_inside_the_inputs_is_refused_before_any_work(tmp_path):
    from pipelines.embed.job import EmbedJobConfig, run_embed

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("some words\n")
    for output, inputs in ((corpus / "vectors", (str(corpus),)), (tmp_path, (str(corpus / "a.txt"),))):
        with pytest.raises(ElmoError, match="is inside --input .* the next run would read its own vectors"):
            run_embed(EmbedJobConfig(model=str(tmp_path / "no-model"), inputs=inputs, output=str(output)))
    assert not (corpus / "vectors").exists()
