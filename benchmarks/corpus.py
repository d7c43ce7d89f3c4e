"""Synthetic but realistic sentences: English-like word lengths, a Zipfian vocabulary.

Tokens average ~4.4 characters (English running text: ~4.5 with punctuation); a 64 × 20–30
batch has ~48 % distinct tokens.

Frequent words are short (as in English), so a batch repeats ``the``, ``of``, ``,`` a lot and the
distinct-token share of a 64 × 25 batch is about what real text gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Share of English word types (dictionary entries) by length 1..15, roughly; renormalised below.
_LENGTH_WEIGHTS = np.array([1, 5, 10, 13, 13, 12, 11, 10, 8, 6, 4, 3, 2, 1, 0.5])
_LETTERS = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
_LETTER_FREQ = np.array([12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4,
                         2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07])
PUNCTUATION = [",", ".", "'s", "(", ")", ";", "\""]


def make_vocabulary(size: int = 30_000, seed: int = 0) -> list[str]:
    """``size`` distinct words, most frequent first (shorter words rank higher, with noise)."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice(np.arange(1, 16), size=3 * size, p=_LENGTH_WEIGHTS / _LENGTH_WEIGHTS.sum())
    p = _LETTER_FREQ / _LETTER_FREQ.sum()
    words, seen = [], set(PUNCTUATION)
    for n in lengths:
        word = "".join(rng.choice(_LETTERS, size=n, p=p))
        if word not in seen:
            seen.add(word)
            words.append(word)
        if len(words) == size - len(PUNCTUATION):
            break
    # Rank by length plus noise: short words dominate the head of the distribution.
    keys = np.array([len(w) for w in words]) + rng.normal(0, 6, len(words))
    ranked = [words[i] for i in np.argsort(keys, kind="stable")]
    head = ranked[:3] + PUNCTUATION[:2] + ranked[3:10] + PUNCTUATION[2:]
    vocab = head + ranked[10:]
    # Capitalise a few entries, as sentence starts and names would be.
    return [w.capitalize() if i % 17 == 5 else w for i, w in enumerate(vocab)]


def make_sentences(
    n_sentences: int, min_tokens: int = 20, max_tokens: int = 30, seed: int = 0,
    vocab: list[str] | None = None, zipf_s: float = 1.05,
) -> list[list[str]]:
    """``n_sentences`` token lists of ``min_tokens``–``max_tokens`` Zipf-distributed words."""
    vocab = vocab if vocab is not None else make_vocabulary()
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** zipf_s
    p = weights / weights.sum()
    lengths = rng.integers(min_tokens, max_tokens + 1, size=n_sentences)
    ids = rng.choice(len(vocab), size=int(lengths.sum()), p=p)
    out, start = [], 0
    for n in lengths:
        out.append([vocab[i] for i in ids[start : start + n]])
        start += n
    return out


def batches(n_batches: int, batch_size: int = 64, seed: int = 0) -> list[list[list[str]]]:
    """``n_batches`` batches of ``batch_size`` sentences (20–30 tokens each)."""
    sentences = make_sentences(n_batches * batch_size, seed=seed)
    return [sentences[i : i + batch_size] for i in range(0, len(sentences), batch_size)]


# The public-domain demo corpus committed with the project (pipelines/data/README.md).
DEMO_CORPUS = Path(__file__).resolve().parents[1] / "pipelines" / "data" / "demo_corpus.txt"


def real_sentences(n_sentences: int, min_tokens: int = 20, max_tokens: int = 30, seed: int = 0) -> list[list[str]]:
    """``n_sentences`` distinct lines of the demo corpus with ``min_tokens``–``max_tokens``
    tokens, in a seeded random order (the same for a given seed)."""
    lines = DEMO_CORPUS.read_text(encoding="utf-8").split("\n")
    pool = [line.split() for line in lines if min_tokens <= len(line.split()) <= max_tokens]
    if n_sentences > len(pool):
        raise ValueError(f"{DEMO_CORPUS.name}: only {len(pool)} lines of {min_tokens}-{max_tokens} tokens")
    order = np.random.default_rng(seed).permutation(len(pool))[:n_sentences]
    return [pool[i] for i in order]


def real_batches(n_batches: int, batch_size: int = 64, seed: int = 0) -> list[list[list[str]]]:
    """``n_batches`` batches of ``batch_size`` real sentences (20–30 tokens), no sentence twice."""
    sentences = real_sentences(n_batches * batch_size, seed=seed)
    return [sentences[i : i + batch_size] for i in range(0, len(sentences), batch_size)]
