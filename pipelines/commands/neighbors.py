"""``elmo neighbors``: for a word in a sentence, its nearest occurrences in context across a corpus."""

from __future__ import annotations

import argparse

from pipelines.commands.arg_types import layer_choice, positive_int

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("neighbors", help="nearest occurrences of a word in context across a corpus (polysemy)")
    p.add_argument("--model", required=True, metavar="URL", help="directory with options.json + weights.hdf5")
    p.add_argument("--corpus", required=True, action="append", metavar="URL",
                   help="text file(s) or prefix, one whitespace-tokenized sentence per line (repeatable)")
    p.add_argument("--sentence", required=True, action="append",
                   help="a query sentence (whitespace-tokenized; repeatable)")
    p.add_argument("--word", required=True, help="the word to look up (case-insensitive)")
    p.add_argument("--layer", type=layer_choice, default="top", help="top, average or a layer number (default top)")
    p.add_argument("-k", type=positive_int, default=5, help="neighbours to show (default 5)")
    p.add_argument("--max-sentences", type=positive_int, default=2000,
                   help="corpus sentences containing the word to search (default 2000)")
    p.set_defaults(handler=run)


def corpus_sentences(urls: list[str], word: str, limit: int) -> list[list[str]]:
    """Sentences of the corpus files that contain ``word`` (case-insensitive), at most ``limit``."""
    from pipelines.io.storage import list_files, read_text

    found: list[list[str]] = []
    target = word.lower()
    for url in urls:
        for entry in list_files(url):
            for line in read_text(entry.url).split("\n"):
                tokens = line.split()
                if any(t.lower() == target for t in tokens):
                    found.append(tokens)
                    if len(found) >= limit:
                        return found
    return found


def check_layer(layer: str | int, n_layers: int, model_url: str) -> None:
    """A layer number must exist in the model (0 = token layer, then the LSTM layers)."""
    from elmo_model.errors import ElmoError

    if isinstance(layer, int) and layer > n_layers:
        raise ElmoError(f"--layer {layer}: the model at {model_url} has layers 0 to {n_layers}")


def run(args: argparse.Namespace) -> int:
    from elmo_model.infer.embedder import SentenceEmbedder
    from elmo_model.errors import ElmoError
    from elmo_model.eval.neighbors import nearest, occurrences
    from pipelines.io.model_store import load_model

    embedder = SentenceEmbedder(load_model(args.model).bilm)
    check_layer(args.layer, embedder.bilm.options.n_layers, args.model)
    candidates = occurrences(embedder, corpus_sentences(args.corpus, args.word, args.max_sentences),
                             {args.word}, args.layer)
    if not candidates:
        raise ElmoError(f"{', '.join(args.corpus)}: no sentence contains {args.word!r}")
    for sentence in args.sentence:
        queries = occurrences(embedder, [sentence.split()], {args.word}, args.layer)
        if not queries:
            raise ElmoError(f"query sentence does not contain {args.word!r}: {sentence!r}")
        print(f"\n{queries[0].context()}")
        for score, occ in nearest(queries[0], candidates, args.k):
            print(f"  {score:.3f}  {occ.context()}")
    return 0
