"""Work units by volume: input files → bounded read blocks. No Ray here: plain functions.

A *read block* is one of

- ``bytes:S-E`` — a line-aligned byte range of an uncompressed text or JSONL file, as Hadoop and
  Spark split text: the block begins after the first newline at or after offset ``S`` (at 0 when
  ``S`` is 0) and ends with the first newline at or after offset ``E`` (at the end of the file for
  the file's last block). Every line belongs to exactly one block of a file's plan, whatever the
  line lengths; a block whose nominal range lies inside one long line is empty;
- ``rows:G0-G1`` — Parquet row groups ``G0 .. G1-1``;
- ``all`` — a whole file that cannot be split (gzip): it is streamed and read in bounded tables.

Provenance stays exact: a block knows the 0-based number of its first line (``first_line``): for a
byte range, one plus the newlines before ``S`` (a cheap counting pass over the earlier ranges,
:func:`number_blocks`); for row groups, the rows of the earlier groups (from the footer).

The block size adapts to the work: ``total / parallelism`` (e.g. 4 blocks per actor of a pool),
at least :data:`MIN_BLOCK_BYTES`, at most ``block_bytes``, so that every actor gets several blocks
even for a one-file corpus, and no block is larger than the configured size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from elmo_model.errors import ElmoError

DEFAULT_BLOCK_BYTES = 32 << 20  # the largest read block (bytes of input)
MIN_BLOCK_BYTES = 64 << 10  # blocks are not made smaller than this to spread the work
SCAN_BYTES = 64 << 10  # read step while looking for a block's first newline
CHUNK_BYTES = 4 << 20  # read step inside a block
WHOLE = "all"
UNSPLITTABLE_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zstd")  # compressed: read whole, in bounded tables


@dataclass(frozen=True)
class ReadBlock:
    """One unit of reading: part of one input file (see the module docstring for ``key``)."""

    url: str
    path: str
    format: str  # txt | jsonl | parquet
    filesystem: int  # index into InputPlan.filesystems
    key: str  # all | bytes:S-E | rows:G0-G1 — unique within the file's plan
    size: int  # bytes of input it covers (nominal; for row groups, the file's size pro rata)
    first_line: int = 0  # 0-based line (or row) number of its first record

    @property
    def span(self) -> tuple[int, int]:
        """``(S, E)`` of a ``bytes:`` or ``rows:`` key, ``(0, -1)`` for a whole file."""
        return parse_key(self.key)[1]


def parse_key(key: str) -> tuple[str, tuple[int, int]]:
    """``"bytes:10-20"`` → ``("bytes", (10, 20))``; ``"all"`` → ``("all", (0, -1))``."""
    if key == WHOLE:
        return WHOLE, (0, -1)
    kind, _, span = key.partition(":")
    start, _, end = span.partition("-")
    if kind not in ("bytes", "rows") or not start.isdigit() or not end.isdigit() or int(start) > int(end):
        raise ElmoError(f"not a read block key: {key!r}")
    return kind, (int(start), int(end))


def block_size(total_bytes: int, parallelism: int, block_bytes: int = DEFAULT_BLOCK_BYTES,
               floor: int = MIN_BLOCK_BYTES) -> int:
    """Bytes per block: ``total / parallelism`` within ``[min(floor, block_bytes), block_bytes]``."""
    if block_bytes < 1 or parallelism < 1:
        raise ElmoError(f"block_bytes and the parallelism must be positive, got {block_bytes} and {parallelism}")
    wanted = math.ceil(max(total_bytes, 1) / parallelism)
    return max(min(block_bytes, wanted), min(floor, block_bytes))


def byte_range_keys(size: int, target: int) -> list[str]:
    """``bytes:`` keys of ``n = ceil(size / target)`` near-equal nominal ranges covering ``[0, size)``."""
    n = max(1, math.ceil(size / target))
    bounds = [size * k // n for k in range(n + 1)]
    return [f"bytes:{a}-{b}" for a, b in zip(bounds, bounds[1:]) if b > a] or [f"bytes:0-{size}"]


def row_group_keys(group_rows: Sequence[int], size: int, target: int) -> list[str]:
    """``rows:`` keys of consecutive row groups of about ``target`` bytes each (the file's size pro rata)."""
    total = sum(group_rows) or 1
    keys, first, acc = [], 0, 0.0
    for g, rows in enumerate(group_rows):
        acc += size * rows / total
        if acc >= target or g == len(group_rows) - 1:
            keys.append(f"rows:{first}-{g + 1}")
            first, acc = g + 1, 0.0
    return keys or ["rows:0-0"]


def splittable(path: str, fmt: str) -> bool:
    return fmt != "parquet" and not path.lower().endswith(UNSPLITTABLE_SUFFIXES)


def plan_blocks(files: Sequence[Any], target: int, row_groups: Callable[[Any], list[int]],
                recorded: dict[str, Sequence[str]] | None = None) -> list[ReadBlock]:
    """The read blocks of ``files`` (``InputFile`` rows, in order) for blocks of about ``target``
    bytes; ``row_groups(file)`` gives a Parquet file's rows per row group. ``recorded[url]`` is an
    earlier plan of that file (its keys), kept as it is so that committed blocks stay meaningful."""
    blocks = []
    for file in files:
        keys = list(recorded[file.url]) if recorded and file.url in recorded else None
        if keys is None:
            if file.format == "parquet":
                keys = row_group_keys(row_groups(file), file.size, target)
            elif splittable(file.path, file.format):
                keys = byte_range_keys(file.size, target)
            else:
                keys = [WHOLE]
        spans = [parse_key(key) for key in keys]
        groups = sum(max(end - start, 1) for kind, (start, end) in spans if kind == "rows") or 1
        for key, (kind, (start, end)) in zip(keys, spans):
            size = {"bytes": end - start, "rows": file.size * max(end - start, 1) // groups}.get(kind, file.size)
            blocks.append(ReadBlock(file.url, file.path, file.format, file.filesystem, key, size))
    return blocks


def number_blocks(blocks: Sequence[ReadBlock], count_newlines: Callable[[list[tuple[int, str, int, int]]], list[int]],
                  plans: dict[str, Sequence[str]], row_counts: Callable[[ReadBlock], list[int]]) -> list[ReadBlock]:
    """``blocks`` with their ``first_line``. ``plans[url]`` is the whole plan of each file (the keys of
    all its blocks, committed ones included); ``count_newlines([(filesystem, path, S, E), ...])`` counts
    newlines per byte range (run wherever the data is); ``row_counts(block)`` gives the rows per row group."""
    needed: dict[str, tuple[int, str, int]] = {}  # url → (filesystem, path, the largest S to number)
    for block in blocks:
        kind, (start, _) = parse_key(block.key)
        if kind == "bytes" and start > 0:
            _, _, last = needed.get(block.url, (0, "", 0))
            needed[block.url] = (block.filesystem, block.path, max(last, start))
    todo, owners = [], []
    for url, (fs, path, last) in sorted(needed.items()):
        for key in plans[url]:
            start, end = parse_key(key)[1]
            if end <= last:
                todo.append((fs, path, start, end))
                owners.append(url)
    newlines_before: dict[tuple[str, int], int] = {}  # (url, S) → newlines in [0, S)
    running: dict[str, int] = {}
    for url, (_, _, start, end), count in sorted(zip(owners, todo, count_newlines(todo) if todo else []),
                                                 key=lambda x: (x[0], x[1][2])):
        running[url] = running.get(url, 0) + count
        newlines_before[(url, end)] = running[url]
    out = []
    for block in blocks:
        kind, (start, _) = parse_key(block.key)
        if kind == "bytes" and start > 0:  # + the newline that ends the line holding S
            block = replace(block, first_line=newlines_before[(block.url, start)] + 1)
        elif kind == "rows":
            block = replace(block, first_line=sum(row_counts(block)[:start]))
        out.append(block)
    return out


def byte_range_chunks(handle: Any, start: int, end: int, size: int) -> Iterator[bytes]:
    """The bytes of the block ``bytes:start-end`` of a file of ``size`` bytes open in ``handle``
    (seekable), in chunks of about :data:`CHUNK_BYTES`."""
    begin = 0
    if start > 0:
        handle.seek(start)
        pos = start
        while True:
            data = handle.read(SCAN_BYTES)
            if not data:
                return  # no newline at or after start: the last line began in an earlier block
            cut = data.find(b"\n")
            if cut >= 0:
                if end < size and pos + cut >= end:
                    return  # the block's nominal range lies inside one line: empty
                begin = pos + cut + 1
                break
            pos += len(data)
    handle.seek(begin)
    pos = begin
    while True:
        data = handle.read(CHUNK_BYTES)
        if not data:
            return
        if end < size and pos + len(data) > end:
            cut = data.find(b"\n", max(end - pos, 0))
            if cut >= 0:
                yield data[: cut + 1]
                return
        yield data
        pos += len(data)


def count_newlines(handle: Any, start: int, end: int) -> int:
    """Newlines in bytes ``[start, end)`` of the seekable ``handle``."""
    handle.seek(start)
    count, left = 0, end - start
    while left > 0:
        data = handle.read(min(CHUNK_BYTES, left))
        if not data:
            break
        count += data.count(b"\n")
        left -= len(data)
    return count
