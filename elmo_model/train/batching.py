"""Training examples and batches for the biLM.

A sentence ``w1 … wn`` becomes the sequence ``<S> w1 … wn </S>``. The forward LM at position t
predicts token t+1, the backward LM predicts token t-1, so every sequence of length m gives m-1
targets per direction. Sequences longer than ``max_tokens`` are cut into windows that overlap by
one token, so every (t → t+1) transition is predicted exactly once per direction; each window is
an independent example (training is stateless, like inference).

A batch is a dict of arrays: ``char_ids (B, T, max_chars)`` int32 (0 = padding position) and
``token_ids (B, T)`` int64 (0 at padding; the mask comes from ``char_ids``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from elmo_model.model.chars import BOS_TOKEN, EOS_TOKEN, MAX_CHARS, sentence_char_ids
from elmo_model.formats.vocab import Vocabulary

Batch = dict[str, np.ndarray]


def sentence_windows(tokens: Sequence[str], max_tokens: int) -> list[list[str]]:
    """``<S> tokens </S>`` cut into windows of at most ``max_tokens``, overlapping by one token."""
    if max_tokens < 2:
        raise ValueError("max_tokens must be at least 2")
    sequence = [BOS_TOKEN, *tokens, EOS_TOKEN]
    stride = max_tokens - 1
    return [sequence[start : start + max_tokens] for start in range(0, len(sequence) - 1, stride)]


def collate(windows: Sequence[Sequence[str]], vocab: Vocabulary, max_chars: int = MAX_CHARS) -> Batch:
    """Pad windows (already holding ``<S>``/``</S>`` where they apply) into one batch."""
    steps = max(len(w) for w in windows)
    char_ids = np.zeros((len(windows), steps, max_chars), dtype=np.int32)
    token_ids = np.zeros((len(windows), steps), dtype=np.int64)
    for b, window in enumerate(windows):
        char_ids[b, : len(window)] = sentence_char_ids(window, max_chars=max_chars)
        token_ids[b, : len(window)] = vocab.encode(window)
    return {"char_ids": char_ids, "token_ids": token_ids}


def bucketed_batches(
    windows: Sequence[Sequence[str]],
    batch_size: int,
    rng: np.random.Generator,
    bucket_batches: int = 50,
) -> Iterator[list[int]]:
    """Indices of ``windows`` grouped into batches of similar length, in a shuffled order.

    Windows are shuffled, taken ``batch_size · bucket_batches`` at a time, sorted by length
    inside that pool and cut into batches; the batches are then shuffled. Deterministic for a
    given ``rng`` state.
    """
    lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
    return bucketed_batches_by_length(lengths, batch_size, rng, bucket_batches)


def bucketed_batches_by_length(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    bucket_batches: int = 50,
) -> Iterator[list[int]]:
    """:func:`bucketed_batches` given only the windows' lengths ``(n,)``."""
    order = rng.permutation(len(lengths))
    pool = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]  # stable: ties keep shuffled order
        batches.extend(chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size))
    for i in rng.permutation(len(batches)):
        yield [int(j) for j in batches[i]]


def make_windows(sentences: Iterable[Sequence[str]], max_tokens: int) -> list[list[str]]:
    """All windows of all non-empty sentences, in order."""
    return [w for s in sentences if s for w in sentence_windows(s, max_tokens)]
