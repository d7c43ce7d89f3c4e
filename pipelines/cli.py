"""The ``elmo`` command.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``handler``; modules import their heavy dependencies (Ray, pyarrow) inside the
handler, so ``elmo dump`` and ``elmo --help`` need no Ray.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from elmo_model.errors import ElmoError

# Modules defining ``register(subparsers)``, in the order ``elmo --help`` lists them.
SUBCOMMAND_MODULES = [
    "pipelines.dump_command",
    "pipelines.vocab_command",
    "pipelines.train_command",
    "pipelines.embed_command",
    "pipelines.neighbors_command",
    "pipelines.eval_command",
    "pipelines.submit_command",
    "pipelines.s3_command",
    "pipelines.demo_command",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elmo", description="ELMo embeddings: train, embed, serve on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except ElmoError as exc:
        print(f"elmo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"elmo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
