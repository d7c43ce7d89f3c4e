"""``elmo train``: the command line of :mod:`pipelines.train.job` (heavy imports inside the handler)."""

from __future__ import annotations

import argparse
import sys

from elmo_model.precision_modes import TRAINING_PRECISIONS
from pipelines.commands.arg_types import non_negative_float, positive_int
from pipelines.config import add_config_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the biLM data-parallel on Ray Train; export options.json + weights.hdf5")
    p.add_argument("--name", help="run name; a rerun with the same name and storage continues it")
    p.add_argument("--train", dest="train", action="append", metavar="URL", help="training corpus (repeatable)")
    p.add_argument("--valid", dest="valid", action="append", metavar="URL", help="held-out text (repeatable)")
    p.add_argument("--vocab", metavar="URL", help="vocab.txt (default: built from the corpus under OUTPUT/vocab)")
    p.add_argument("--output", metavar="URL", help="model directory to write")
    p.add_argument("--storage", metavar="URL", help="checkpoint storage (default OUTPUT/checkpoints)")
    p.add_argument("--init-from", metavar="URL", help="model directory to fine-tune")
    p.add_argument("--num-workers", type=positive_int, help="Ray Train workers (default 1)")
    p.add_argument("--use-gpu", action="store_true", default=None, help="one GPU per worker, nccl (bf16 autocast unless --precision fp32)")
    p.add_argument("--steps", type=positive_int, help="optimizer steps (training.steps)")
    p.add_argument("--precision", choices=TRAINING_PRECISIONS,
                   help="training.precision: fp32 | bf16 (autocast; master weights and optimizer state fp32) | "
                        "auto (bf16 where the workers have bf16 matrix units); default bf16 on GPU workers, fp32 on CPU")
    p.add_argument("--wait", dest="wait_s", type=non_negative_float, metavar="SECONDS",
                   help="wait up to SECONDS for another run of this name and storage to finish "
                        "(default 0: exit 75 at once)")
    add_config_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.train.job import TrainJobConfig, run_training

    flags = {"name": args.name, "train": tuple(args.train) if args.train else None,
             "valid": tuple(args.valid) if args.valid else None, "vocab": args.vocab, "output": args.output,
             "storage": args.storage, "init_from": args.init_from, "num_workers": args.num_workers,
             "use_gpu": args.use_gpu, "training.steps": args.steps, "training.precision": args.precision, "wait_s": args.wait_s}
    config = load_config(TrainJobConfig, args.config, flags, args.overrides)
    result = run_training(config)
    final = result.metrics
    print(f"steps: {final.get('step')}")
    if "perplexity" in final:
        print(f"train perplexity: {final['perplexity']:.2f} (forward {final['perplexity_forward']:.2f}, "
              f"backward {final['perplexity_backward']:.2f})")
    if "valid_perplexity" in final:
        print(f"valid perplexity: {final['valid_perplexity']:.2f} (forward {final['valid_perplexity_forward']:.2f}, "
              f"backward {final['valid_perplexity_backward']:.2f})")
    print(f"windows: {result.n_windows}\nvocabulary: {result.vocab_size}")
    if result.resumed_at_steps:
        print(f"resumed at steps: {', '.join(map(str, result.resumed_at_steps))}")
    print(f"elmo train: wrote the model and metrics under {result.output_url} "
          f"(checkpoints: {result.checkpoint_url})", file=sys.stderr)
    return 0
