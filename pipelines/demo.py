"""``elmo demo``: the whole pipeline on one machine, end to end, in a few minutes.

embedded S3 (moto) + local Ray → upload a public-domain corpus → ``elmo vocab`` → ``elmo train``
(Ray Train, 2 workers) → ``elmo embed`` (actor pool, Parquet) → nearest neighbours of a
polysemous word in context. Everything the demo wrote is copied to a local folder at the end
(the embedded S3 lives in memory and goes away with the demo).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from elmo_model.train.config import TrainConfig

log = logging.getLogger(__name__)
DATA = Path(__file__).parent / "data"
BUCKET = "elmo-demo"


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    workdir: str = "runs/demo"  # local folder that receives a copy of everything written
    train_sentences: int = 14_000  # corpus prefix used for training (the rest is held out)
    valid_sentences: int = 500
    word: str = "bank"  # the polysemous word of the neighbour demo
    steps: int = 550
    num_workers: int = 2
    batch_size: int = 32  # windows per worker per step
    vocab_size: int = 6000
    neighbours: int = 3


def demo_training(config: DemoConfig) -> TrainConfig:
    """A small biLM that learns something useful on 2 CPUs in a few minutes."""
    return TrainConfig(
        model="tiny", steps=config.steps, batch_size=config.batch_size, max_tokens=30, optimizer="adamw",
        learning_rate=0.004, dropout=0.05, log_every=max(config.steps // 14, 1),
        checkpoint_every=max(config.steps // 4, 1), eval_every=0,
        model_overrides=dict(filters=((1, 32), (2, 32), (3, 64), (4, 64)), char_embedding_dim=8, n_highway=1,
                             lstm_dim=256, projection_dim=64))


def _step(n: int, text: str) -> float:
    print(f"\n[{n}/6] {text}", flush=True)
    return time.perf_counter()


def _sentences() -> list[str]:
    return [line for line in (DATA / "demo_corpus.txt").read_text(encoding="utf-8").split("\n") if line.strip()]


def labelled_examples(word: str) -> list[tuple[str, str, int]]:
    """(sense, sentence, token index) rows of ``polysemy.tsv`` for ``word``."""
    with open(DATA / "polysemy.tsv", encoding="utf-8") as handle:
        return [(r["sense"], r["sentence"], int(r["index"])) for r in csv.DictReader(handle, delimiter="\t")
                if r["word"] == word]


@contextlib.contextmanager
def embedded_services() -> Iterator[object]:
    """Embedded S3 (environment pointed at it, so Ray workers inherit it) and a local Ray."""
    from pipelines.io.local_s3 import LocalS3
    from pipelines.ray_support import ensure_ray, shutdown_ray

    saved = dict(os.environ)
    with LocalS3(buckets=[BUCKET]) as s3:
        os.environ.update(s3.env())
        try:
            ensure_ray(num_cpus=2)
            yield s3
        finally:
            shutdown_ray()
            os.environ.clear()
            os.environ.update(saved)


def upload_corpus(config: DemoConfig) -> dict[str, str]:
    """Train / valid / embed splits of the demo corpus into the bucket; returns their URLs."""
    from pipelines.io.storage import write_text

    lines = _sentences()
    train = lines[: config.train_sentences]
    valid = lines[config.train_sentences : config.train_sentences + config.valid_sentences]
    wanted = {config.word, config.word.capitalize()}
    embed = [line for line in lines if wanted & set(line.split())]
    urls = {"train": f"s3://{BUCKET}/corpus/train/", "valid": f"s3://{BUCKET}/corpus/valid/",
            "embed": f"s3://{BUCKET}/corpus/embed/"}
    for name, part in (("train", train), ("valid", valid), ("embed", embed)):
        write_text(urls[name] + f"{name}.txt", "\n".join(part) + "\n")
        print(f"  {urls[name]}{name}.txt: {len(part):,} sentences")
    return urls


def run_demo(config: DemoConfig) -> dict[str, float]:
    """The six steps; returns the polysemy scores (for tests)."""
    from pipelines.embed.job import EmbedJobConfig, run_embed
    from pipelines.io.storage import download_dir
    from pipelines.train.job import TrainJobConfig, run_training
    from pipelines.vocab_job import VocabConfig, build_vocab

    began = _step(1, "starting an embedded S3 (moto, 127.0.0.1) and a local Ray (2 CPUs)")
    with embedded_services() as s3:
        print(f"  S3 endpoint {s3.endpoint_url}")
        _step(2, "uploading the demo corpus (public-domain books and addresses, pipelines/data/README.md)")
        urls = upload_corpus(config)
        t = _step(3, "elmo vocab: counting tokens with Ray Data")
        vocab = build_vocab(VocabConfig(inputs=(urls["train"],), output=f"s3://{BUCKET}/vocab",
                                        max_size=config.vocab_size))
        print(f"  {vocab.stats['sentences']:,} sentences, {vocab.stats['tokens']:,} tokens, "
              f"{len(vocab.vocab):,} vocabulary entries ({time.perf_counter() - t:.0f} s)")
        t = _step(4, f"elmo train: {config.steps} steps with Ray Train, {config.num_workers} workers (DDP)")
        trained = run_training(TrainJobConfig(
            name="demo", train=(urls["train"],), valid=(urls["valid"],), vocab=f"s3://{BUCKET}/vocab/vocab.txt",
            output=f"s3://{BUCKET}/model", storage=f"s3://{BUCKET}/checkpoints", num_workers=config.num_workers,
            cpus_per_worker=0.5, training=demo_training(config)))
        final = trained.metrics
        print(f"  done in {time.perf_counter() - t:.0f} s; held-out perplexity forward "
              f"{final.get('valid_perplexity_forward', float('nan')):.1f}, backward "
              f"{final.get('valid_perplexity_backward', float('nan')):.1f}")
        t = _step(5, f"elmo embed: every sentence with {config.word!r} on a Ray actor pool → Parquet")
        embedded = run_embed(EmbedJobConfig(model=f"s3://{BUCKET}/model", inputs=(urls["embed"],),
                                            output=f"s3://{BUCKET}/vectors", layers="all", actors=(1, 1),
                                            cpus_per_actor=1.0))
        print(f"  {embedded.rows:,} sentences embedded ({time.perf_counter() - t:.0f} s)")
        _step(6, f"nearest neighbours of {config.word!r} in context (ELMo's polysemy example)")
        scores = show_neighbours(config)
        workdir = Path(config.workdir)
        for name in ("model", "vocab", "vectors"):
            download_dir(f"s3://{BUCKET}/{name}", workdir / name, include_hidden=True)
    print(f"\nEverything is under {workdir}/ (copied from the embedded S3, which is gone now):")
    for name, what in (("model", "options.json, weights.hdf5, vocab.txt, metrics.csv/json, training curve PNG"),
                       ("vocab", "vocab.txt, counts.tsv"), ("vectors", "Parquet vectors + _manifest.json")):
        print(f"  {workdir / name}/  {what}")
    print(f"Total {time.perf_counter() - began:.0f} s.")
    return scores


def _corpus_occurrences(config: DemoConfig, layer: str):
    """Occurrences of the word in the embedded Parquet output, read back with plain pyarrow."""
    import pyarrow.parquet as pq

    from elmo_model.eval.neighbors import Occurrence
    from pipelines.io.storage import resolve

    loc = resolve(f"s3://{BUCKET}/vectors")
    table = pq.read_table(loc.path, filesystem=loc.arrow_fs, columns=["tokens", layer])
    found = []
    for tokens, vectors in zip(table.column("tokens").to_pylist(), table.column(layer).to_pylist()):
        for i, token in enumerate(tokens):
            if token.lower() == config.word:
                found.append(Occurrence(tuple(tokens), i, np.asarray(vectors[i], dtype=np.float32)))
    return found


def show_neighbours(config: DemoConfig, layer: str = "layer_2") -> dict[str, float]:
    """Print each labelled example's nearest occurrences; return within/across-sense similarity."""
    from elmo_model.infer.embedder import SentenceEmbedder
    from elmo_model.eval.neighbors import nearest, occurrences
    from pipelines.io.model_store import load_model

    embedder = SentenceEmbedder(load_model(f"s3://{BUCKET}/model").bilm)
    corpus = _corpus_occurrences(config, layer)
    labelled = []
    for sense, sentence, index in labelled_examples(config.word):
        query = [o for o in occurrences(embedder, [sentence.split()], None, int(layer[-1])) if o.index == index][0]
        labelled.append((query, sense))
        print(f"\n  ({sense}) {query.context()}")
        others = [c for c in corpus if c.tokens != query.tokens]
        for score, occ in nearest(query, others, config.neighbours):
            print(f"     {score:.2f}  {occ.context()}")
    return sense_separation(labelled)


def sense_separation(labelled) -> dict[str, float]:
    """Mean cosine similarity between occurrences of the same sense and of different senses."""
    from elmo_model.eval.neighbors import unit_vectors as unit

    same, across = [], []
    for i, (a, sa) in enumerate(labelled):
        for b, sb in labelled[i + 1 :]:
            (same if sa == sb else across).append(float(unit(a.vector) @ unit(b.vector)))
    result = {"same_sense": float(np.mean(same)), "other_sense": float(np.mean(across))}
    print(f"\n  mean cosine similarity: same sense {result['same_sense']:.2f}, "
          f"other sense {result['other_sense']:.2f}")
    return result
