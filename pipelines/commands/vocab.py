"""``elmo vocab``: the command line of :mod:`pipelines.vocab_job` (heavy imports inside the handler)."""

from __future__ import annotations

import argparse
import sys

from pipelines.commands.arg_types import at_least, positive_int
from pipelines.commands.ingest_flags import add_ingest_arguments, ingest_flags
from pipelines.config import add_config_arguments

MIN_VOCAB_SIZE = 4  # <S>, </S>, <UNK> and at least one token (pipelines.vocab_job checks the same)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vocab", help="count tokens with Ray Data and write vocab.txt + counts.tsv")
    p.add_argument("--input", dest="inputs", action="append", metavar="URL",
                   help="file or prefix to read (s3://, gs://, file:// or path; repeatable)")
    p.add_argument("--output", metavar="URL", help="where vocab.txt, counts.tsv and config.toml go")
    p.add_argument("--max-size", type=at_least(MIN_VOCAB_SIZE), help="vocabulary size, counting <S>, </S>, <UNK> (default: all)")
    p.add_argument("--min-count", type=positive_int, help="drop tokens seen fewer times (default 1)")
    add_ingest_arguments(p)
    add_config_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.vocab_job import VocabConfig, build_vocab

    flags = {"inputs": tuple(args.inputs) if args.inputs else None, "output": args.output,
             "max_size": args.max_size, "min_count": args.min_count, **ingest_flags(args)}
    config = load_config(VocabConfig, args.config, flags, args.overrides)
    result = build_vocab(config)
    stats = result.stats
    print(f"sentences: {stats['sentences']}\n"
          f"tokens: {stats['tokens']}\n"
          f"distinct tokens: {len(result.counts)}\n"
          f"vocabulary: {len(result.vocab)} entries (with <S>, </S>, <UNK>)\n"
          f"records: {stats['records']}")
    if stats["invalid_utf8"]:
        print(f"records with invalid UTF-8: {stats['invalid_utf8']} ({config.ingest.invalid_utf8})")
    print(f"elmo vocab: wrote vocab.txt, counts.tsv, config.toml under {result.output_url}", file=sys.stderr)
    return 0
