"""Build the small public-domain demo corpus committed at ``pipelines/data/demo_corpus.txt``.

    python -m tools.corpora.demo_corpus [--cache DIR] [--out PATH] [--check]

It is assembled from two fetched corpora (``python -m tools.corpora.fetch gutenberg sotu``
first): five Project Gutenberg books and seven State of the Union addresses (1834-1931, chosen
for the many uses of *bank* as a financial institution; the books supply the river *bank*).
Every document is cut into blocks of ``BLOCK`` consecutive sentences and the blocks are
shuffled with a fixed seed, so any prefix of the file mixes all sources (useful when a demo
trains on only part of it) while short stretches of running text stay in order. The result is
byte-for-byte reproducible; ``--check`` rebuilds it and compares with the committed file.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from tools.corpora.fetch import DEFAULT_CACHE

REPO = Path(__file__).resolve().parents[2]
DEMO_PATH = REPO / "pipelines" / "data" / "demo_corpus.txt"

#: (corpus, file stem) in the cache, all public domain / CC0.
DOCUMENTS = (
    ("gutenberg", "austen-emma"),            # Jane Austen, Emma (1816)
    ("gutenberg", "burgess-busterbrown"),    # Thornton W. Burgess, The Adventures of Buster Bear
    ("gutenberg", "bryant-stories"),         # Sara Cone Bryant, Stories to Tell to Children
    ("gutenberg", "chesterton-brown"),       # G. K. Chesterton, The Wisdom of Father Brown
    ("gutenberg", "chesterton-thursday"),    # G. K. Chesterton, The Man Who Was Thursday
    ("sotu", "1834_andrew_jackson_d"),
    ("sotu", "1836_andrew_jackson_d"),
    ("sotu", "1837_martin_van_buren_d"),
    ("sotu", "1838_martin_van_buren_d"),
    ("sotu", "1839_martin_van_buren_d"),
    ("sotu", "1857_james_buchanan_d"),
    ("sotu", "1931_herbert_hoover_r"),
)
BLOCK = 20
SEED = 1802  # ELMo's arXiv number, 1802.05365


def build(cache: Path = DEFAULT_CACHE) -> str:
    blocks = []
    for corpus, stem in DOCUMENTS:
        path = cache / corpus / f"{stem}.txt"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} missing: run `python -m tools.corpora.fetch {corpus}` first")
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        blocks += [lines[i:i + BLOCK] for i in range(0, len(lines), BLOCK)]
    random.Random(SEED).shuffle(blocks)
    return "".join(line for block in blocks for line in block)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.corpora.demo_corpus",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=DEMO_PATH)
    parser.add_argument("--check", action="store_true",
                        help="rebuild and compare with --out instead of writing it")
    args = parser.parse_args(argv)
    text = build(args.cache)
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'reproduced exactly' if same else 'DIFFERS from a rebuild'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: {len(text.encode('utf-8'))} bytes, {text.count(chr(10))} sentences, "
          f"{len(text.split())} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
