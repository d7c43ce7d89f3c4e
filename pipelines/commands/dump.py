"""``elmo dump``: the original ``elmo`` command (see :mod:`elmo_model.infer.dump`)."""

from __future__ import annotations

import argparse
import sys

from elmo_model.errors import ElmoError
from elmo_model.precision_modes import PRECISION_CHOICES, PRECISION_HELP
from pipelines.commands.arg_types import positive_int
from pipelines.sigterm import sigterm_raises

TERMINATED = 143  # the exit status of a run stopped by SIGTERM (128 + 15)


class Terminated(ElmoError):
    """SIGTERM (``timeout``, a scheduler): the run stops like an error, its partial output removed."""

    exit_code = TERMINATED


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dump", help="embed a file of sentences into hdf5 (the original `elmo` command)")
    p.add_argument("input_file", help="one whitespace-tokenized sentence per line")
    p.add_argument("output_file", help="hdf5 file to write")
    p.add_argument("--options-file", required=True, help="options.json (path or URL)")
    p.add_argument("--weight-file", required=True, help="weights.hdf5 (path or URL)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--all", dest="mode", action="store_const", const="all", help="all layers (default)")
    mode.add_argument("--top", dest="mode", action="store_const", const="top", help="top layer only")
    mode.add_argument("--average", dest="mode", action="store_const", const="average", help="mean of layers")
    p.add_argument("--batch-size", type=positive_int,
                   help="sentences per forward pass (default: measured per model shape; 64 with --stateful)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32",
                   help=PRECISION_HELP)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice; 1 helps on a busy machine)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT_FILE if it exists (never the input)")
    p.add_argument("--stateful", action="store_true",
                   help="carry LSTM state from batch to batch, as the original did")
    p.set_defaults(mode="all", handler=run)


def run(args: argparse.Namespace) -> int:
    from elmo_model.infer.dump import check_output_file, parse_sentences, read_sentence_lines, write_embeddings
    from pipelines.io.model_store import load_model_files
    from pipelines.io.storage import read_bytes

    check_output_file(args.output_file, args.input_file, args.overwrite)  # before any work
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    local = "://" not in args.input_file or args.input_file.startswith("file://")
    sentences = (read_sentence_lines(args.input_file) if local
                 else parse_sentences(read_bytes(args.input_file), args.input_file))
    model = load_model_files(args.options_file, args.weight_file)
    precision = args.precision
    if precision == "auto":
        from elmo_model.model.precision import resolve_precision

        try:
            precision, why = resolve_precision(precision, args.device)
        except (ValueError, RuntimeError) as exc:
            raise ElmoError(f"--precision auto: {exc}") from None
        print(f"elmo dump: precision {precision} ({why})", file=sys.stderr)
    # SIGTERM as an error: the output's staging file is removed on the way out (the default would leave it)
    with sigterm_raises(lambda: Terminated("terminated (SIGTERM); nothing written")):
        n = write_embeddings(sentences, args.output_file, model.bilm, args.mode, args.batch_size, args.device,
                             args.stateful, precision=precision)
    print(f"wrote {n} sentences to {args.output_file}", file=sys.stderr)
    return 0
