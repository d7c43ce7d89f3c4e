"""Compressed inputs and binary data: which codec a file needs, by its name and by its first bytes.

gzip (``.gz``), bzip2 (``.bz2``), xz (``.xz``) and Zstandard (``.zst``, ``.zstd``) are read,
whatever the file is named: the first bytes decide (a ``.txt`` that holds gzip is read as gzip; a
``.gz`` that holds no gzip is refused). Known binary formats (zip, 7z, RAR, lz4, PDF, images,
Parquet or HDF5 read as text) and data that is mostly control bytes are refused with one line
naming the file — binary is never ingested as text.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from typing import Any

from elmo_model.errors import ElmoError

SUFFIX_CODECS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
COMPRESSED_SUFFIXES = tuple(SUFFIX_CODECS)
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
_BINARY = ((b"PK\x03\x04", "a zip archive"), (b"7z\xbc\xaf\x27\x1c", "a 7z archive"), (b"Rar!", "a RAR archive"),
           (b"\x04\x22\x4d\x18", "lz4 data (not supported: decompress it first)"), (b"%PDF", "a PDF document"),
           (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"PAR1", "a Parquet file (name it .parquet)"),
           (b"\x89HDF", "an HDF5 file"))
HEAD_BYTES = 8
_SAMPLE_BYTES = 8192
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"


def strip_compression_suffix(path: str) -> str:
    lower = path.lower()
    return next((path[: -len(s)] for s in COMPRESSED_SUFFIXES if lower.endswith(s)), path)


def codec_of(path: str, head: bytes, url: str) -> str | None:
    """The codec that ``path`` (whose first bytes are ``head``) needs, or None for plain text."""
    by_magic = next((codec for magic, codec in _MAGIC if head.startswith(magic)), None)
    by_name = next((c for s, c in SUFFIX_CODECS.items() if path.lower().endswith(s)), None)
    if by_name and head and by_magic != by_name:
        raise ElmoError(f"{url}: corrupt or truncated {by_name} data (the file does not start like {by_name})")
    if by_magic is None:
        what = next((name for magic, name in _BINARY if head.startswith(magic)), None)
        if what:
            raise ElmoError(f"{url}: {what}, not text")
    return by_magic


def check_text(sample: bytes, url: str) -> None:
    """Refuse data whose first bytes are mostly control bytes: binary, not text."""
    sample = sample[:_SAMPLE_BYTES]
    if len(sample) >= 64 and len(sample) - len(sample.translate(None, _CONTROL)) > len(sample) // 10:
        raise ElmoError(f"{url}: binary data, not text (over 10% control bytes in its first "
                        f"{len(sample)} bytes; a compressed file? gz, bz2, xz and zst are read)")


def decompressed(handle: Any, codec: str) -> Any:
    """A readable stream of the decompressed bytes of ``handle`` (positioned at the start)."""
    if codec == "gzip":
        return gzip.GzipFile(fileobj=handle, mode="rb")
    if codec == "bz2":
        return bz2.BZ2File(handle, mode="rb")
    if codec == "xz":
        return lzma.LZMAFile(handle, mode="rb")
    import pyarrow as pa

    return pa.CompressedInputStream(handle, "zstd")


READ_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, lzma.LZMAError)
