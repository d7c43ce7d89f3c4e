"""pipelines.ingest.text_sources: one file → record tables, with exact provenance and clear errors."""

import gzip
import json

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest

from elmo_model.errors import ElmoError
from pipelines.ingest import text_sources
from pipelines.ingest.text_sources import detect_format, read_jsonl_file, read_parquet_file, read_text_file

FS = pyarrow.fs.LocalFileSystem()


def records(tables) -> list[tuple]:
    table = pa.concat_tables(list(tables)) if tables else None
    return [] if table is None else [tuple(r.values()) for r in table.to_pylist()]


def read_txt(path, policy="replace"):
    return records(list(read_text_file(FS, str(path), f"file://{path}", policy)))


@pytest.mark.parametrize("path, fmt", [("a.txt", "txt"), ("a.txt.gz", "txt"), ("news-00001-of-00100", "txt"),
                                       ("a.jsonl", "jsonl"), ("a.JSONL.gz", "jsonl"), ("x.parquet", "parquet")])
def test_format_from_suffix(path, fmt):
    assert detect_format(path) == fmt
    assert detect_format(path, "txt") == "txt"


def test_text_lines_numbered_from_zero_blank_lines_kept_crlf_stripped(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"first line\r\n\nthird\nno newline at end")
    url = f"file://{path}"
    assert read_txt(path) == [(url, 0, None, "first line", False), (url, 1, None, "", False),
                              (url, 2, None, "third", False), (url, 3, None, "no newline at end", False)]


def test_gzip_text_and_line_numbers_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(text_sources, "CHUNK_BYTES", 7)  # many chunks, lines split across reads
    lines = [f"line {i} " + "x" * (i % 5) for i in range(40)]
    path = tmp_path / "a.txt.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    tables = list(read_text_file(FS, str(path), "u", "fail"))
    assert len(tables) > 1
    assert [(r[1], r[3]) for r in records(tables)] == list(enumerate(lines))


def test_empty_file_gives_no_records(tmp_path):
    (tmp_path / "e.txt").write_bytes(b"")
    assert read_txt(tmp_path / "e.txt") == []


@pytest.mark.parametrize("data, message", [
    (b"this is not gzip at all", "corrupt or truncated gzip"),
    (gzip.compress(b"hello world\n" * 1000, mtime=0)[:-30], "corrupt or truncated gzip"),
])
def test_corrupt_or_truncated_gzip_names_the_file(tmp_path, data, message):
    path = tmp_path / "bad.txt.gz"
    path.write_bytes(data)
    with pytest.raises(ElmoError, match=f"file://{path}: {message}"):
        read_txt(path)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ElmoError, match="gone.txt: file not found"):
        read_txt(tmp_path / "gone.txt")


def test_invalid_utf8_policies(tmp_path):
    path = tmp_path / "u.txt"
    path.write_bytes("ok é\nbad \xff byte\nfine\n".encode("latin-1").replace(b"\xe9", "é".encode()))
    url = f"file://{path}"
    assert read_txt(path, "replace") == [(url, 0, None, "ok é", False), (url, 1, None, "bad \ufffd byte", True),
                                         (url, 2, None, "fine", False)]
    assert read_txt(path, "skip")[1] == (url, 1, None, None, True)
    with pytest.raises(ElmoError, match=f"{url}:2: invalid UTF-8 at byte 4"):
        read_txt(path, "fail")


def test_jsonl_fields_ids_and_physical_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"id": 7, "text": "a b"}, {"text": "no id"}, {"id": "x", "text": None, "other": 1}]
    path.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n" + json.dumps(rows[2]) + "\n")
    url = f"file://{path}"
    got = records(list(read_jsonl_file(FS, str(path), url)))
    assert got == [(url, 0, "7", "a b", False), (url, 2, None, "no id", False), (url, 3, "x", None, False)]
    with pytest.raises(ElmoError, match=f"{url}:1: no field 'other'"):
        records(list(read_jsonl_file(FS, str(path), url, text_field="other")))


@pytest.mark.parametrize("line, message", [
    ("{not json", r":1: not valid JSON"), ("[1, 2]", r":1: expected a JSON object, got list"),
    ('{"text": 3}', r":1: field 'text' is int, expected a string"),
])
def test_bad_jsonl_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ElmoError, match=f"file://{path}{message}"):
        records(list(read_jsonl_file(FS, str(path), f"file://{path}")))


def test_parquet_rows_with_ids_and_missing_column(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"doc": [1, 2, 3], "body": ["a b", None, "c"]}), path, row_group_size=2)
    url = f"file://{path}"
    got = records(list(read_parquet_file(FS, str(path), url, text_field="body", id_field="doc", batch_rows=2)))
    assert got == [(url, 0, "1", "a b", False), (url, 1, "2", None, False), (url, 2, "3", "c", False)]
    with pytest.raises(ElmoError, match=f"{url}: no column 'text' \\(columns: doc, body"):
        list(read_parquet_file(FS, str(path), url))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ElmoError, match="junk.parquet: not a readable Parquet file"):
        list(read_parquet_file(FS, str(tmp_path / "junk.parquet"), f"file://{tmp_path}/junk.parquet"))
