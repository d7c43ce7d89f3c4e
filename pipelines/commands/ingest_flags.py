"""The input-format flags shared by the commands that read corpora (``elmo vocab``, ``elmo embed``)."""

from __future__ import annotations

import argparse
from typing import Any


def add_ingest_arguments(parser: argparse.ArgumentParser) -> None:
    """``--format`` and ``--text-field`` (the ``[ingest]`` table's ``format`` and ``text_field``)."""
    parser.add_argument("--format", choices=["auto", "txt", "jsonl", "parquet"], help="input format (default auto)")
    parser.add_argument("--text-field", help="JSONL field / Parquet column holding the text (default text)")


def ingest_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Those flags as dotted config keys for :func:`pipelines.config.load_config`."""
    return {"ingest.format": args.format, "ingest.text_field": args.text_field}
