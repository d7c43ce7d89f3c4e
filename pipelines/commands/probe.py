"""``elmo eval probe pos|wsd``: what each layer of a biLM knows (linear POS probe on Brown,
1-nearest-neighbour word sense on WordNet usage examples); see :mod:`elmo_model.eval.probes`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from typing import Any

from pipelines.commands.arg_types import non_negative_float, non_negative_int, positive_int

TAG_SETS = ("basetags", "tags")
WORDNET_COLUMNS = ["lemma", "pos", "synset", "sense_key", "sense_number", "tag_count", "tokens", "index"]


def register_probe(tasks: argparse._SubParsersAction) -> None:
    """Add ``probe`` (with its ``pos`` and ``wsd`` probes) to ``elmo eval``'s tasks."""
    p = tasks.add_parser("probe", help="layer probes: linear POS tagger, 1-NN word sense")
    probes = p.add_subparsers(dest="probe", required=True, metavar="PROBE")

    pos = probes.add_parser("pos", help="linear POS-tagging probe per layer and learned mix (Brown)")
    _common(pos)
    pos.add_argument("--data", required=True, metavar="DIR",
                     help="directory (or URL) with train.txt + train.<tags> and test.txt + test.<tags> "
                          "(`python -m tools.corpora.fetch brown` → data/cache/brown)")
    pos.add_argument("--tags", choices=TAG_SETS, default="basetags",
                     help="tag files to use (default basetags: Brown tags without -tl/-hl/-nc/fw-)")
    pos.add_argument("--test-split", default="test", help="split to measure on (default test)")
    pos.add_argument("--max-train-sentences", type=non_negative_int, default=4000, metavar="N",
                     help="random sample of training sentences (default 4000; 0 = all)")
    pos.add_argument("--max-test-sentences", type=non_negative_int, default=2000, metavar="N",
                     help="random sample of test sentences (default 2000; 0 = all)")
    pos.add_argument("--epochs", type=positive_int, default=10, help="probe training epochs (default 10)")
    pos.add_argument("--weight-decay", type=non_negative_float, default=1e-4, help="L2 on the probe (default 1e-4)")
    pos.set_defaults(handler=run_pos)

    wsd = probes.add_parser("wsd", help="1-NN word-sense probe per layer (WordNet usage examples)")
    _common(wsd)
    wsd.add_argument("--data", required=True, metavar="FILE",
                     help="examples.tsv (or URL) as `python -m tools.corpora.fetch wordnet` writes it")
    wsd.add_argument("--max-lemmas", type=non_negative_int, default=0, metavar="N",
                     help="random sample of lemmas with >= 2 senses (default 0 = all)")
    wsd.add_argument("--min-examples-per-sense", type=positive_int, default=2, metavar="K",
                     help="keep only senses with at least K examples (default 2: under leave-one-out a "
                          "sense's only example can never be matched), then lemmas with >= 2 such senses")
    wsd.set_defaults(handler=run_wsd)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="URL", help="directory with options.json + weights.hdf5")
    p.add_argument("--output", metavar="FILE", help="also write the results as JSON (local path or URL)")
    p.add_argument("--seed", type=int, default=0, help="sampling and training seed (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="sentences per biLM call (default 64)")
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (default 0: torch's choice)")


# --------------------------------------------------------------------------------------------
# Data


def sample_indices(n: int, limit: int, seed: int) -> list[int]:
    """``limit`` of ``range(n)`` drawn at random (all when ``limit`` is 0 or ≥ ``n``), in order."""
    if limit <= 0 or limit >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), limit))


def read_tagged(data_url: str, split: str, tags: str, limit: int, seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences and their tags from ``<split>.txt`` and ``<split>.<tags>`` (parallel lines)."""
    from elmo_model.errors import ElmoError
    from pipelines.io.storage import read_text, resolve

    base = resolve(data_url)
    text_url, tags_url = base.join(f"{split}.txt").url, base.join(f"{split}.{tags}").url
    lines = [line for line in read_text(text_url).split("\n") if line.strip()]
    tag_lines = [line for line in read_text(tags_url).split("\n") if line.strip()]
    if len(lines) != len(tag_lines):
        raise ElmoError(f"{tags_url}: {len(tag_lines)} lines for {len(lines)} sentences in {text_url}")
    sentences, labels = [], []
    for i in sample_indices(len(lines), limit, seed):
        tokens, tag_list = lines[i].split(), tag_lines[i].split()
        if len(tokens) != len(tag_list):
            raise ElmoError(f"{tags_url}:{i + 1}: {len(tag_list)} tags for {len(tokens)} tokens")
        sentences.append(tokens)
        labels.append(tag_list)
    return sentences, labels


@dataclasses.dataclass(frozen=True)
class SenseExample:
    """A usage example: ``tokens[index]`` is ``lemma`` (part of speech ``pos``) in sense ``sense``."""

    lemma: str
    pos: str
    sense: str
    sense_number: int
    tokens: tuple[str, ...]
    index: int

    @property
    def group(self) -> str:
        return f"{self.lemma}.{self.pos}"


def read_sense_examples(url: str, max_lemmas: int, seed: int, min_examples: int = 1) -> list[SenseExample]:
    """The examples of lemmas (per part of speech) with at least two senses having at least
    ``min_examples`` examples each (other senses' examples dropped), ``max_lemmas`` of those
    lemmas drawn at random (0: all)."""
    from elmo_model.errors import ElmoError
    from elmo_model.eval.probes import keep_polysemous
    from pipelines.io.storage import read_text

    lines = [line for line in read_text(url).split("\n") if line.strip()]
    if not lines or lines[0].split("\t") != WORDNET_COLUMNS:
        raise ElmoError(f"{url}: expected a header line {' '.join(WORDNET_COLUMNS)}")
    examples = []
    for n, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        try:
            lemma, pos, _, key, number, _, text, index = cells
            tokens = tuple(text.split())
            example = SenseExample(lemma, pos, key, int(number), tokens, int(index))
            if not 0 <= example.index < len(tokens):
                raise ValueError("index outside the sentence")
        except ValueError as exc:
            raise ElmoError(f"{url}:{n}: bad example line ({exc})") from None
        examples.append(example)
    examples = [examples[i] for i in keep_polysemous([e.sense for e in examples], [e.group for e in examples],
                                                         min_examples)]
    groups = sorted({e.group for e in examples})
    chosen = {groups[i] for i in sample_indices(len(groups), max_lemmas, seed)}
    return [e for e in examples if e.group in chosen]


# --------------------------------------------------------------------------------------------
# Runs


def flat(rows: list[list[str]]) -> list[str]:
    return [x for row in rows for x in row]


def _embedder(args: argparse.Namespace):
    import torch

    from elmo_model.infer.embedder import SentenceEmbedder
    from pipelines.io.model_store import load_model

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return SentenceEmbedder(load_model(args.model).bilm)


def pos_results(args: argparse.Namespace) -> dict[str, Any]:
    """Embed the sampled Brown sentences, train and score the probes, compute the baselines."""
    from elmo_model.eval import probes

    started = time.perf_counter()
    train_sents, train_tags = read_tagged(args.data, "train", args.tags, args.max_train_sentences, args.seed)
    test_sents, test_tags = read_tagged(args.data, args.test_split, args.tags, args.max_test_sentences, args.seed)
    embedder = _embedder(args)
    train_x = probes.token_features(probes.embed_sentences(embedder, train_sents, args.batch_size))
    test_x = probes.token_features(probes.embed_sentences(embedder, test_sents, args.batch_size))
    embedded = time.perf_counter()
    settings = probes.ProbeSettings(epochs=args.epochs, weight_decay=args.weight_decay, seed=args.seed)
    scores = probes.pos_probe(train_x, flat(train_tags), test_x, flat(test_tags), settings)
    return {
        "task": "pos", "model": args.model, "data": args.data, "tags": args.tags, "test_split": args.test_split,
        "train_sentences": len(train_sents), "train_tokens": int(train_x.shape[0]),
        "test_sentences": len(test_sents), "test_tokens": int(test_x.shape[0]),
        "n_tags": len(set(flat(train_tags))),
        "accuracy": {name: s.accuracy for name, s in scores.items()},
        "mix_weights": scores["mix"].mix_weights,
        "baselines": {
            "most frequent tag per word": probes.per_word_tag_accuracy(
                flat(train_sents), flat(train_tags), flat(test_sents), flat(test_tags)),
            "most frequent tag": probes.most_frequent_tag_accuracy(flat(train_tags), flat(test_tags)),
        },
        "settings": {**dataclasses.asdict(settings), "seed": args.seed},
        "seconds": {"embed": round(embedded - started, 1), "total": round(time.perf_counter() - started, 1)},
        "dim": int(train_x.shape[-1]),
    }


def wsd_results(args: argparse.Namespace) -> dict[str, Any]:
    """Embed the sampled usage examples and score 1-NN per layer and the baselines."""
    import numpy as np

    from elmo_model.eval import probes
    from elmo_model.errors import ElmoError

    started = time.perf_counter()
    examples = read_sense_examples(args.data, args.max_lemmas, args.seed, args.min_examples_per_sense)
    if not examples:
        raise ElmoError(f"{args.data}: no lemma with two or more senses")
    embedded = probes.embed_sentences(_embedder(args), [e.tokens for e in examples], args.batch_size)
    features = np.stack([vectors[:, e.index] for vectors, e in zip(embedded, examples)])  # (n, L+1, D)
    senses, groups = [e.sense for e in examples], [e.group for e in examples]
    return {
        "task": "wsd", "model": args.model, "data": args.data,
        "lemmas": len(set(groups)), "examples": len(examples), "senses": len(set(senses)),
        "accuracy": probes.wsd_probe(features, senses, groups),
        "baselines": {
            "most frequent sense": probes.most_frequent_sense_accuracy(senses, groups),
            "random other example (chance)": probes.random_neighbour_accuracy(senses, groups),
            "WordNet first sense": probes.first_sense_accuracy(senses, [e.sense_number for e in examples], groups),
        },
        "min_examples_per_sense": args.min_examples_per_sense, "seed": args.seed,
        "seconds": {"total": round(time.perf_counter() - started, 1)},
    }


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a markdown table: one row per layer, the mix/average, the baselines."""
    rows = []
    for name, acc in results["accuracy"].items():
        if name == "mix":
            weights = "/".join(f"{w:.2f}" for w in results["mix_weights"])
            label = f"learned mix (weights {weights})"
        else:
            label = "average of layers" if name == "average" else f"layer {name}"
        rows.append((label, acc))
    rows += [(f"baseline: {name}", acc) for name, acc in results["baselines"].items()]
    if results["task"] == "pos":
        title = (f"POS probe ({results['tags']}, {results['n_tags']} tags): trained on {results['train_sentences']} "
                 f"sentences / {results['train_tokens']} tokens, tested on {results['test_sentences']} / "
                 f"{results['test_tokens']}")
    else:
        title = (f"1-NN word sense, leave-one-out: {results['lemmas']} lemmas, {results['examples']} examples, "
                 f"{results['senses']} senses (each with >= {results['min_examples_per_sense']} examples)")
    lines = [title, "", "| features | accuracy |", "|---|---:|"]
    lines += [f"| {label} | {acc:.4f} |" for label, acc in rows]
    return "\n".join(lines)


def _finish(results: dict[str, Any], output: str | None) -> int:
    from pipelines.io.storage import write_text

    print(markdown_table(results))
    if output:
        write_text(output, json.dumps(results, indent=1) + "\n")
    return 0


def run_pos(args: argparse.Namespace) -> int:
    return _finish(pos_results(args), args.output)


def run_wsd(args: argparse.Namespace) -> int:
    return _finish(wsd_results(args), args.output)
