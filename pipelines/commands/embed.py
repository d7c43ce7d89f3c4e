"""``elmo embed``: the command line of :mod:`pipelines.embed.job` (heavy imports inside the handler)."""

from __future__ import annotations

import argparse
import sys

from elmo_model.precision_modes import PRECISION_CHOICES, PRECISION_HELP
from pipelines.commands.arg_types import non_negative_float, positive_float, positive_int
from pipelines.commands.ingest_flags import add_ingest_arguments, ingest_flags
from pipelines.config import add_config_arguments


def _min_max(text: str) -> tuple[int, ...]:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (e.g. 1,4), got {text!r}") from None
    if len(parts) == 1:
        parts = (parts[0], parts[0])
    if len(parts) != 2 or not 1 <= parts[0] <= parts[1]:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX with 1 ≤ MIN ≤ MAX (e.g. 1,4), got {text!r}")
    return parts


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed a corpus on a Ray actor pool into Parquet (incremental, exactly once)")
    p.add_argument("--model", metavar="URL", help="directory with options.json + weights.hdf5")
    p.add_argument("--input", dest="inputs", action="append", metavar="URL",
                   help="file or prefix to embed (s3://, gs://, file:// or path; repeatable)")
    p.add_argument("--output", metavar="URL", help="where the Parquet files and _manifest.json go")
    p.add_argument("--layers", help="all | top | average | mix:w0,w1,... (default top)")
    p.add_argument("--pooling", choices=["none", "mean", "max"], help="per token (none, default) or per sentence")
    p.add_argument("--layout", choices=["sentence", "token"],
                   help="one row per sentence (default) or per token (position, token, one vector: for vector stores)")
    p.add_argument("--dtype", choices=["float32", "float16"], help="vector dtype (default float32)")
    p.add_argument("--batch-size", type=positive_int, help="sentences per actor call (default 256)")
    p.add_argument("--precision", choices=PRECISION_CHOICES,
                   help=PRECISION_HELP)
    p.add_argument("--actors", type=_min_max, metavar="MIN,MAX", help="actor pool size (default 1,2)")
    p.add_argument("--cpus-per-actor", type=positive_float, help="CPUs reserved per actor (default 1)")
    p.add_argument("--gpus-per-actor", type=non_negative_float, help="GPUs per actor, fractions allowed (default 0)")
    p.add_argument("--wait", dest="wait_s", type=non_negative_float, metavar="SECONDS",
                   help="wait up to SECONDS for another run's lease on --output (default 0: exit 75 at once)")
    p.add_argument("--replace", action="store_true", default=None,
                   help="re-embed every input with this model and these settings, switched in one commit "
                        "(an output holds one model's vectors; without it a run with another model stops)")
    p.add_argument("--prune", action="store_true", default=None,
                   help="drop the rows of inputs embedded earlier that are no longer under --input")
    add_ingest_arguments(p)
    add_config_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.embed.job import EmbedJobConfig, run_embed

    flags = {"model": args.model, "inputs": tuple(args.inputs) if args.inputs else None,
             "output": args.output, "layers": args.layers, "pooling": args.pooling, "layout": args.layout, "dtype": args.dtype,
             "precision": args.precision,
             "batch_size": args.batch_size, "actors": args.actors, "cpus_per_actor": args.cpus_per_actor,
             "gpus_per_actor": args.gpus_per_actor, "wait_s": args.wait_s, "replace": args.replace,
             "prune": args.prune, **ingest_flags(args)}
    config = load_config(EmbedJobConfig, args.config, flags, args.overrides)
    result = run_embed(config)
    if not result.embedded:
        print(f"elmo embed: all {result.skipped} inputs up to date under {result.output_url}; nothing to do",
              file=sys.stderr)
        return 0
    print(f"embedded {len(result.embedded)} input file(s), {result.rows} sentences "
          f"({result.skipped} up to date) in {result.commits} commit(s) → {result.output_url}")
    return 0
