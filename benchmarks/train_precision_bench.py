"""Training in float32 against bf16 autocast on the PTB config: tokens/s and held-out perplexity.

``python -m benchmarks.train_precision_bench [--quick] [--steps N]``. Both trainers start from the
same initialisation and take the same batches, step by step in turn (interleaved: a machine whose
load changes slows both alike); tokens/s counts training targets per direction over the timed
steps; perplexity is the held-out sentences' (full softmax, float32 evaluation) after the last
step. bf16 pays only on CPUs with bf16 matrix units (AMX); the machine block says whether this one
has them.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import torch

from benchmarks.machine import machine_info
from benchmarks.train_quality_bench import PTB_MODEL, QUICK_MODEL, BatchCursor, Settings, load_corpus
from elmo_model.train.batching import make_windows
from elmo_model.eval.perplexity import sentence_perplexity
from elmo_model.model.precision import Autocast
from elmo_model.train.loop import new_model
from elmo_model.train.trainer import LmTrainer
from elmo_model.formats.vocab import Vocabulary

STEPS, QUICK_STEPS = 400, 4


def run(steps: int, quick: bool = False) -> list[dict]:
    settings = Settings(QUICK_MODEL if quick else PTB_MODEL)
    corpus, train, held_out = load_corpus("valid", quick)
    vocab = Vocabulary.from_counts(Counter(t for s in train for t in s))
    config = settings.train_config()
    trainers = {}
    for name, wrap in (("fp32", None), ("bf16", lambda m: Autocast(m, "cpu"))):
        torch.manual_seed(settings.seed)
        trainers[name] = LmTrainer(new_model(config, vocab), config, wrap=wrap)
    cursor = BatchCursor(make_windows(train, settings.max_tokens), vocab, settings)
    seconds, tokens = dict.fromkeys(trainers, 0.0), dict.fromkeys(trainers, 0)
    for step in range(steps + 1):
        batch = cursor.next()
        for name, trainer in trainers.items():
            start = time.perf_counter()
            metrics = trainer.train_step(batch)
            if step:  # the first step warms up
                seconds[name] += time.perf_counter() - start
                tokens[name] += int(metrics["n_targets"])
    rows = []
    for name, trainer in trainers.items():
        held = sentence_perplexity(trainer.model, vocab, held_out)
        rows.append({"benchmark": "training precision", "corpus": corpus, "model": "quick" if quick else "ptb",
                     "precision": name, "steps": steps, "tokens_per_s": tokens[name] / max(seconds[name], 1e-9),
                     "x_fp32": seconds["fp32"] / max(seconds[name], 1e-9),
                     "ppl_forward": held["perplexity_forward"], "ppl_backward": held["perplexity_backward"],
                     "threads": torch.get_num_threads()})
    exact = rows[0]
    for row in rows:
        row["ppl_vs_fp32"] = (row["ppl_forward"] + row["ppl_backward"]) / (exact["ppl_forward"] + exact["ppl_backward"])
    return rows


def rows(quick: bool = False) -> list[dict]:
    return run(QUICK_STEPS if quick else STEPS, quick)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, help=f"timed steps (default {STEPS}; --quick {QUICK_STEPS})")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    print(json.dumps({"machine": machine_info()}))
    for row in run(args.steps or (QUICK_STEPS if args.quick else STEPS), args.quick):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
