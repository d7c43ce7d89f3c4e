"""``elmo demo``: the end-to-end local demo (see :mod:`pipelines.demo`)."""

from __future__ import annotations

import argparse

from pipelines.commands.arg_types import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline locally: embedded S3 + local Ray, vocab → train → embed")
    p.add_argument("--workdir", default="runs/demo", help="local folder for a copy of the outputs (default runs/demo)")
    p.add_argument("--steps", type=positive_int, help="training steps (default 550)")
    p.add_argument("--word", help="polysemous word for the neighbour demo (default bank)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from pipelines.demo import DemoConfig, run_demo

    config = DemoConfig(workdir=args.workdir)
    changes = {k: v for k, v in (("steps", args.steps), ("word", args.word)) if v is not None}
    run_demo(dataclasses.replace(config, **changes))
    return 0
