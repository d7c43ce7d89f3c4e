"""``elmo embed`` (Ray Data actor pool → Parquet) against the same sentences embedded in-process.

``python -m benchmarks.embed_cli_bench [--quick]``. A random-weight biLM of the "small" shape
(see :mod:`benchmarks.shapes`) is written as ``options.json`` + ``weights.hdf5``; synthetic
sentences (:mod:`benchmarks.corpus`) go to a local text file. Contenders:

- ``in-process``: :class:`~elmo_model.infer.embedder.SentenceEmbedder` over the sentences in
  length-sorted batches of 64, 1 torch thread, vectors only (no Parquet);
- ``elmo embed``: :func:`pipelines.embed.job.run_embed` with 1 and 2 actors of 1 CPU each, top
  layer, float32, from text to committed Parquet, on a local Ray that this module starts once
  (Ray start-up is outside the timed region; job planning, reading, tokenising, writing and the
  commit are inside).

Tokens are the corpus's tokens; ``ratio_to_in_process`` is tokens/s over the in-process row, the
overhead (or, with 2 actors on 2 cores, the gain) of the pipeline, for the whole run of 2N
sentences; ``steady_ratio_to_in_process`` compares the marginal rates (runs of N and 2N: the
extra N's tokens over the extra seconds), which is what a long run sees, and ``fixed_s`` is the
rest of a run's time (planning, lease, Ray Data start, actor start and model load, commit). One
actor of 1 CPU on this 2-core machine leaves the second core to Ray's own processes and the
Parquet writes. On a shared machine, rerun before trusting a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.corpus import make_sentences
from benchmarks.shapes import SHAPES, random_model
from elmo_model.infer.embedder import SentenceEmbedder
from elmo_model.formats.weights import save_options, save_weights

SHAPE = "small"


def _write_model(directory: Path) -> Path:
    model = random_model(SHAPES[SHAPE], seed=0)
    directory.mkdir(parents=True)
    save_options(model.options, directory / "options.json")
    save_weights(model, directory / "weights.hdf5")
    return directory


def measure_in_process(model_dir: Path, sentences: list[list[str]], batch_size: int = 64) -> dict:
    """Vectors for every sentence with one thread, batches of similar length."""
    from elmo_model.formats.weights import load_bilm

    default = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        embedder = SentenceEmbedder(load_bilm(model_dir / "options.json", model_dir / "weights.hdf5"))
        ordered = sorted(sentences, key=len, reverse=True)
        embedder(ordered[:2])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(ordered), batch_size):
            embedder(ordered[i : i + batch_size])
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(default)
    return {"contender": "in-process", "actors": 0, "seconds": seconds}


def measure_embed(model_dir: Path, corpus: Path, output: Path, actors: int) -> dict:
    """One ``elmo embed`` run from text to committed Parquet with ``actors`` actors of 1 CPU."""
    from pipelines.embed.job import EmbedJobConfig, run_embed

    start = time.perf_counter()
    result = run_embed(EmbedJobConfig(model=str(model_dir), inputs=(str(corpus),), output=str(output),
                                      layers="top", actors=(actors, actors), cpus_per_actor=1.0))
    seconds = time.perf_counter() - start
    return {"contender": "elmo embed", "actors": actors, "seconds": seconds, "rows_written": result.rows}


def rows(quick: bool = False, n_sentences: int | None = None) -> list[dict]:
    """In-process, then `elmo embed` with 1 and 2 actors, each on N and 2N sentences; ratios to
    in-process, whole runs and steady state (the second N's tokens over the extra seconds: what a
    long scheduled run sees once the fixed costs — planning, lease, actor start and model load,
    commit — are paid)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    n_sentences = n_sentences or (256 if quick else 1536)
    sentences = make_sentences(2 * n_sentences, seed=0)
    halves = {1: sentences[:n_sentences], 2: sentences}
    tokens = {k: sum(len(s) for s in v) for k, v in halves.items()}
    out = []
    with tempfile.TemporaryDirectory(prefix="elmo-embed-bench-") as tmp:
        model_dir = _write_model(Path(tmp) / "model")
        corpora = {}
        for k, part in halves.items():
            corpora[k] = Path(tmp) / f"corpus{k}.txt"
            corpora[k].write_text("".join(" ".join(s) + "\n" for s in part))
        started_ray = not ray.is_initialized()
        if started_ray:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            results = {(0, k): measure_in_process(model_dir, halves[k]) for k in (1, 2)}
            for a in (1, 2):
                for k in (1, 2):
                    results[(a, k)] = measure_embed(model_dir, corpora[k], Path(tmp) / f"out{a}-{k}", a)
        finally:
            if started_ray:
                ray.shutdown()
    steady = {a: (tokens[2] - tokens[1]) / max(results[(a, 2)]["seconds"] - results[(a, 1)]["seconds"], 1e-9)
              for a in (0, 1, 2)}
    base = tokens[2] / results[(0, 2)]["seconds"]
    for a in (0, 1, 2):
        row = results[(a, 2)]
        tokens_per_s = tokens[2] / row["seconds"]
        out.append({"benchmark": "embed", "shape": SHAPE, "sentences": 2 * n_sentences, "tokens": tokens[2], **row,
                    "tokens_per_s": tokens_per_s, "ratio_to_in_process": tokens_per_s / base,
                    "steady_tokens_per_s": steady[a], "steady_ratio_to_in_process": steady[a] / steady[0],
                    "fixed_s": max(0.0, row["seconds"] - tokens[2] / steady[a]),
                    "cpus": os.cpu_count()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sentences", type=int, help="N: runs on N and 2N sentences (default 1536; quick: 256)")
    args = parser.parse_args()
    for row in rows(args.quick, args.sentences):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
