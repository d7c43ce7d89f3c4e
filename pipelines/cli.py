"""The ``elmo`` command.

Each subcommand lives in its own module under :mod:`pipelines.commands`, with a
``register(subparsers)`` function that adds its parser and sets ``handler``; the modules import
their heavy dependencies (Ray, pyarrow) inside the handler, so ``elmo dump`` and ``elmo --help``
need no Ray.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from elmo_model.errors import ElmoError

from pipelines.cli_logging import configure_logging
from pipelines.commands.arg_types import OneLineParser
from pipelines.ray_noise import quiet_cli_output
from pipelines.commands import demo, dump, embed, neighbors, s3, submit, train, vocab
from pipelines.commands import eval as eval_command

# In the order ``elmo --help`` lists them.
SUBCOMMANDS = [dump, vocab, train, embed, neighbors, eval_command, submit, s3, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="elmo", description="ELMo embeddings: train, embed, serve on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (never credentials: HTTP wire logs stay off, secret values are masked)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SUBCOMMANDS:
        command.register(sub)
    parser.set_defaults(build_parser=build_parser)  # for elmo submit, which checks the job's command line
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        with quiet_cli_output(args.verbose):
            return args.handler(args)
    except ElmoError as exc:
        print(f"elmo {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt as exc:  # Ctrl-C; a command may say how to go on (e.g. elmo train)
        detail = str(exc)
        print(f"elmo {args.command}: interrupted{f'; {detail}' if detail else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
