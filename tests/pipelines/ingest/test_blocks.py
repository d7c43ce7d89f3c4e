"""Read blocks (pipelines.ingest.blocks): every line in exactly one block, with its own line number.

The truth is the whole-file reader (one stream, no blocks): the records of all blocks of a plan,
in order, must be exactly its records — texts and line numbers — for any block size.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest

from pipelines.ingest import blocks
from pipelines.ingest.text_sources import read_jsonl_file, read_parquet_file, read_text_file

FS = pyarrow.fs.LocalFileSystem()


def _records(tables) -> list[tuple[int, str | None]]:
    out = []
    for t in tables:
        out.extend(zip(t.column("line").to_pylist(), t.column("text").to_pylist()))
    return out


def _local_counter(items):
    counts = []
    for _fs, path, start, end in items:
        with FS.open_input_file(path) as handle:
            counts.append(blocks.count_newlines(handle, start, end))
    return counts


def _plan(path, fmt: str, target: int, row_groups=None) -> list[blocks.ReadBlock]:
    file = SimpleNamespace(url=str(path), path=str(path), size=path.stat().st_size, format=fmt, filesystem=0)
    planned = blocks.plan_blocks([file], target, lambda f: row_groups)
    keys = {str(path): [b.key for b in planned]}
    return blocks.number_blocks(planned, _local_counter, keys, lambda b: row_groups)


def _random_text(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(0, 60)):
        kind = rng.random()
        if kind < 0.15:
            lines.append("")
        elif kind < 0.25:
            lines.append("x" * rng.randint(50, 400))  # longer than many blocks
        else:
            lines.append(" ".join(rng.choice(["a", "bank", "é", "river", "\u4e2d"]) for _ in range(rng.randint(1, 8))))
    text = ("\r\n" if rng.random() < 0.2 else "\n").join(lines)
    if lines and rng.random() < 0.5:
        text += "\n"
    return text.encode()


@pytest.mark.parametrize("seed", range(40))
def test_text_blocks_hold_every_line_once_with_its_line_number(tmp_path, seed):
    rng = random.Random(seed)
    path = tmp_path / "a.txt"
    path.write_bytes(_random_text(rng))
    whole = _records(read_text_file(FS, str(path), "u"))
    for target in (1, 2, 3, 7, 16, 61, 1000, 10**6):
        got = []
        for block in _plan(path, "txt", target):
            got.extend(_records(read_text_file(FS, str(path), "u", byte_range=block.span, first_line=block.first_line)))
        assert got == whole, (seed, target)


def test_block_boundaries_follow_the_newline_rule(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"aaaa\nbb\ncccccccccc\nd\n")  # newlines at 4, 7, 18, 20
    with FS.open_input_file(str(path)) as h:
        size = h.size()
        read = lambda s, e: b"".join(blocks.byte_range_chunks(h, s, e, size))  # noqa: E731
        assert read(0, 4) == b"aaaa\n"  # ends with the first newline at or after 4
        assert read(4, 5) == b"bb\n"  # begins after the newline at 4, ends with the newline at 7
        assert read(4, 8) == b"bb\ncccccccccc\n"
        assert read(5, 7) == b""  # the newline at or after 5 is at 7 ≥ 7: inside one line
        assert read(9, 12) == b""  # inside "cccccccccc"
        assert read(8, size) == b"d\n"
        assert read(0, size) == path.read_bytes()


def test_jsonl_blocks_keep_physical_line_numbers(tmp_path):
    rng = random.Random(3)
    lines = [f'{{"id": "d{i}", "text": "{"word " * rng.randint(1, 9)}"}}' if rng.random() > 0.2 else "" for i in range(80)]
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines) + "\n")
    whole = _records(read_jsonl_file(FS, str(path), "u"))
    for target in (5, 40, 333):
        got = []
        for block in _plan(path, "jsonl", target):
            got.extend(_records(read_jsonl_file(FS, str(path), "u", byte_range=block.span, first_line=block.first_line)))
        assert got == whole


def test_parquet_blocks_are_runs_of_row_groups_with_their_row_numbers(tmp_path):
    path = tmp_path / "a.parquet"
    texts = [f"sentence {i}" for i in range(1000)]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=64)
    groups = [pq.ParquetFile(path).metadata.row_group(g).num_rows for g in range(pq.ParquetFile(path).num_row_groups)]
    planned = _plan(path, "parquet", path.stat().st_size // 5, groups)
    assert 4 <= len(planned) <= 6 and all(b.key.startswith("rows:") for b in planned)
    got = []
    for block in planned:
        got.extend(_records(read_parquet_file(FS, str(path), "u", row_groups=block.span, first_row=block.first_line)))
    assert got == list(enumerate(texts))


def test_gzip_is_one_whole_block_and_block_size_adapts_within_bounds():
    file = SimpleNamespace(url="u.gz", path="x/u.txt.gz", size=10**8, format="txt", filesystem=0)
    assert [b.key for b in blocks.plan_blocks([file], 1000, lambda f: [])] == ["all"]
    assert blocks.block_size(10**9, 8, 32 << 20) == 32 << 20  # capped by block_bytes
    assert blocks.block_size(4 << 20, 8) == 512 << 10  # 4 blocks per actor of a 2-actor pool
    assert blocks.block_size(1000, 8) == blocks.MIN_BLOCK_BYTES  # never below the floor
    assert blocks.block_size(1000, 8, block_bytes=100) == 100  # unless the configured size is smaller
    assert blocks.byte_range_keys(10, 4) == ["bytes:0-3", "bytes:3-6", "bytes:6-10"]
    assert blocks.byte_range_keys(0, 4) == ["bytes:0-0"]
