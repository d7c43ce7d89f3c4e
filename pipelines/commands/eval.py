"""``elmo eval perplexity``: forward, backward and mean perplexity of an exported biLM."""

from __future__ import annotations

import argparse
import json

from pipelines.commands.arg_types import positive_int
from pipelines.commands.probe import register_probe


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained biLM")
    tasks = p.add_subparsers(dest="task", required=True, metavar="TASK")
    ppl = tasks.add_parser("perplexity", help="full-softmax perplexity on held-out text")
    ppl.add_argument("--model", required=True, metavar="URL",
                     help="an `elmo train` export: options.json, weights.hdf5 (with softmax), vocab.txt")
    ppl.add_argument("--input", required=True, action="append", metavar="URL",
                     help="text file(s) or prefix, one whitespace-tokenized sentence per line (repeatable)")
    ppl.add_argument("--mode", choices=["sentence", "stream", "stream-plain"], default="sentence",
                     help="sentence: each sentence alone (default); stream: continuous text, state carried, each "
                          "sentence in <S> … </S>; stream-plain: the same with only </S> between sentences")
    ppl.add_argument("--window", type=positive_int, default=100, help="stream mode: tokens per window (default 100)")
    ppl.set_defaults(handler=run_perplexity)
    register_probe(tasks)


def load_lm(model_url: str):
    """The trainable biLM (with its softmax) and vocabulary of an export directory."""
    from elmo_model.errors import ElmoError
    from pipelines.io.model_store import load_model

    model = load_model(model_url, with_vocab=True)
    if model.vocab is None:
        raise ElmoError(f"{model.source}: no vocab.txt beside the model; perplexity needs the vocabulary that "
                        "`elmo train` exports")
    if model.softmax is None:
        raise ElmoError(f"{model_url}: weights.hdf5 has no softmax (a published model?); perplexity needs "
                        "the softmax that `elmo train` exports")
    return model.language_model(model.vocab), model.vocab


def run_perplexity(args: argparse.Namespace) -> int:
    from elmo_model.errors import ElmoError
    from elmo_model.eval.perplexity import perplexity
    from pipelines.io.storage import list_files, read_text

    sentences = [line.split() for url in args.input for entry in list_files(url)
                 for line in read_text(entry.url).split("\n") if line.strip()]
    if not sentences:
        raise ElmoError(f"{', '.join(args.input)}: no sentences (every line is empty or blank)")
    lm, vocab = load_lm(args.model)
    result = perplexity(lm, vocab, sentences, args.mode, args.window)
    print(json.dumps({"mode": args.mode, "sentences": len(sentences), **result}, indent=1))
    return 0
