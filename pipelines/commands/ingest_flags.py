"""The input-format flags shared by the commands that read corpora (``elmo vocab``, ``elmo embed``)."""

from __future__ import annotations

import argparse
from typing import Any


def add_ingest_arguments(parser: argparse.ArgumentParser) -> None:
    """``--format``, ``--text-field`` and ``--id-field`` (the ``[ingest]`` table's keys of the same names)."""
    parser.add_argument("--format", choices=["auto", "txt", "jsonl", "parquet"], help="input format (default auto)")
    parser.add_argument("--text-field", help="JSONL field / Parquet column holding the text (default text)")
    parser.add_argument("--id-field", metavar="FIELD",
                        help="JSONL field / Parquet column kept as doc_id (default id; '' for none)")


def ingest_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Those flags as dotted config keys for :func:`pipelines.config.load_config`."""
    return {"ingest.format": args.format, "ingest.text_field": args.text_field, "ingest.id_field": args.id_field}
