"""``elmo eval perplexity``: forward, backward and mean perplexity of an exported biLM."""

from __future__ import annotations

import argparse
import json

from pipelines.commands.probe import register_probe


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained biLM")
    tasks = p.add_subparsers(dest="task", required=True, metavar="TASK")
    ppl = tasks.add_parser("perplexity", help="full-softmax perplexity on held-out text")
    ppl.add_argument("--model", required=True, metavar="URL",
                     help="an `elmo train` export: options.json, weights.hdf5 (with softmax), vocab.txt")
    ppl.add_argument("--input", required=True, action="append", metavar="URL",
                     help="text file(s) or prefix, one whitespace-tokenized sentence per line (repeatable)")
    ppl.add_argument("--mode", choices=["sentence", "stream"], default="sentence",
                     help="sentence: each sentence alone (default); stream: continuous text, state carried")
    ppl.add_argument("--window", type=int, default=100, help="stream mode: tokens per window (default 100)")
    ppl.set_defaults(handler=run_perplexity)
    register_probe(tasks)


def load_lm(model_url: str):
    """The trainable biLM (with its softmax) and vocabulary of an export directory."""
    from elmo_model.errors import ElmoError
    from elmo_model.export import VOCAB_FILE, load_pretrained_lm
    from elmo_model.vocab import Vocabulary
    from elmo_model.weights import load_weights
    from pipelines.io.model_store import fetch_model_dir
    from pipelines.io.storage import read_bytes, resolve

    local = fetch_model_dir(model_url)
    vocab_url = resolve(model_url).join(VOCAB_FILE).url
    vocab_path = local / VOCAB_FILE
    if not vocab_path.exists():
        vocab_path.write_bytes(read_bytes(vocab_url))
    vocab = Vocabulary.load(vocab_path)
    lm = load_pretrained_lm(local / "options.json", local / "weights.hdf5", vocab)
    if load_weights(lm.bilm, local / "weights.hdf5") is None:
        raise ElmoError(f"{model_url}: weights.hdf5 has no softmax (a published model?); perplexity needs "
                        "the softmax that `elmo train` exports")
    return lm, vocab


def run_perplexity(args: argparse.Namespace) -> int:
    from elmo_model.perplexity import perplexity
    from pipelines.io.storage import list_files, read_text

    lm, vocab = load_lm(args.model)
    sentences = [line.split() for url in args.input for entry in list_files(url)
                 for line in read_text(entry.url).split("\n") if line.strip()]
    result = perplexity(lm, vocab, sentences, args.mode, args.window)
    print(json.dumps({"mode": args.mode, "sentences": len(sentences), **result}, indent=1))
    return 0
