"""Training throughput on Ray Train (tokens/s) with 1 and 2 CPU workers, against the in-process loop.

``python -m benchmarks.train_ray_bench [--quick]``. The same work as :mod:`benchmarks.train_bench`
(Zipfian sentences over a 30 k vocabulary, sampled softmax with 8192 negatives, Adagrad, batches
of 32 windows per worker): ``elmo train``'s job (:func:`pipelines.train.job.run_training`) on a
local Ray, storage and output in a temporary directory. Tokens are training targets per direction
of all workers, taken from the job's own metrics log; the first logged interval (start-up, first
batches) and everything before the workers start (Ray Data preparation) are left out.

Threads are explicit: the baseline is the in-process loop with 1 torch thread; each Ray worker
runs ``int(cpus_per_worker)`` threads (1 here). The in-process loop with torch's default threads is
listed too: on a shared 2-core VM two threads can be far slower than one (measured here: 17 s
against 0.5 s per tiny step while other jobs ran), so ratios use the 1-thread baseline. On a
shared machine, rerun before trusting a ratio.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections import Counter
from pathlib import Path

from benchmarks.corpus import make_sentences, make_vocabulary
from benchmarks.report import print_rows_main
from benchmarks.train_bench import measure as measure_in_process
from elmo_model.train.config import TrainConfig
from elmo_model.formats.vocab import Vocabulary


def _write_inputs(directory: Path, n_sentences: int, seed: int = 0) -> tuple[str, str]:
    words = make_vocabulary(30_000, seed)
    sentences = make_sentences(n_sentences, seed=seed, vocab=words)
    (directory / "corpus.txt").write_text("".join(" ".join(s) + "\n" for s in sentences))
    vocab = Vocabulary.from_counts(Counter({w: len(words) - i for i, w in enumerate(words)}))
    (directory / "vocab.txt").write_text(vocab.to_text())
    return str(directory / "corpus.txt"), str(directory / "vocab.txt")


def measure_ray(preset: str, steps: int, workers: int, cpus_per_worker: float, batch_size: int = 32,
                log_every: int = 5) -> dict:
    """One `elmo train` run; tokens/s over every logged interval but the first."""
    from pipelines.train.job import TrainJobConfig, run_training

    with tempfile.TemporaryDirectory(prefix="elmo-train-bench-") as tmp:
        corpus, vocab = _write_inputs(Path(tmp), batch_size * workers * (steps + 2))
        training = TrainConfig(model=preset, batch_size=batch_size, softmax="sampled", steps=steps, optimizer="adagrad",
                               log_every=log_every, max_tokens=100)
        config = TrainJobConfig(name=f"bench-{uuid.uuid4().hex[:8]}", train=(corpus,), vocab=vocab,
                                output=f"{tmp}/model", num_workers=workers, cpus_per_worker=cpus_per_worker,
                                max_failures=0, training=training)
        run_training(config)
        log = json.loads(Path(tmp, "model", "metrics.json").read_text())
    rows, timed = log["rows"], log["rows"][1:]
    seconds = timed[-1]["elapsed_s"] - rows[0]["elapsed_s"]
    tokens = sum(r["tokens"] for r in timed)
    return {"benchmark": "train on Ray", "shape": preset, "workers": workers, "cpus_per_worker": cpus_per_worker,
            "threads": log["torch_threads"], "steps": steps, "batch": batch_size, "tokens_per_s": tokens / seconds,
            "s_per_step": seconds / (timed[-1]["step"] - rows[0]["step"])}


def in_process(preset: str, steps: int, threads: int | None) -> dict:
    """:func:`benchmarks.train_bench.measure` with ``threads`` torch threads (``None``: torch's default)."""
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        row = measure_in_process(preset, steps)
    finally:
        torch.set_num_threads(default)
    row["threads"] = threads or default
    return row


def rows(quick: bool = False) -> list[dict]:
    """In-process (1 thread, default threads), then 1 and 2 Ray workers of 1 CPU; ratios to 1 thread."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")  # only if this process starts Ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    shapes = [("tiny", 15 if quick else 40)] + ([] if quick else [("small", 6)])
    out = []
    for preset, steps in shapes:
        base = in_process(preset, steps, threads=1)
        results = [base, in_process(preset, 5, threads=None)]  # few steps: it can be very slow (see above)
        results += [measure_ray(preset, steps, workers, 1.0, log_every=max(steps // 5, 1)) for workers in (1, 2)]
        for row in results:
            row["ratio_to_in_process_1_thread"] = row["tokens_per_s"] / base["tokens_per_s"]
        out += results
    return out


def main() -> None:
    print_rows_main(rows, __doc__.split("\n")[0])


if __name__ == "__main__":
    main()
