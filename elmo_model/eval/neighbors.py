"""Nearest tokens in context: the polysemy view of contextual vectors.

A word's vector depends on its sentence, so "bank" by a river and "bank" raising rates get
different vectors. Given occurrences of words in sentences, these functions find, for a query
occurrence, the most similar occurrences (cosine similarity of one biLM layer or their average).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from elmo_model.infer.embedder import SentenceEmbedder


@dataclasses.dataclass(frozen=True)
class Occurrence:
    """Token ``index`` of ``tokens``, with its contextual vector."""

    tokens: tuple[str, ...]
    index: int
    vector: np.ndarray

    @property
    def word(self) -> str:
        return self.tokens[self.index]

    def context(self, width: int = 8) -> str:
        """The sentence around the token, the token in [brackets]."""
        left = " ".join(self.tokens[max(0, self.index - width) : self.index])
        right = " ".join(self.tokens[self.index + 1 : self.index + 1 + width])
        return f"{left} [{self.word}] {right}".strip()


def layer_vectors(stack: np.ndarray, layer: str | int) -> np.ndarray:
    """``(L+1, n, D)`` → ``(n, D)``: one layer by number, ``top``, or ``average``."""
    if layer == "average":
        return stack.mean(axis=0)
    return stack[-1] if layer == "top" else stack[int(layer)]


def occurrences(embedder: SentenceEmbedder, sentences: Sequence[Sequence[str]], words: set[str] | None,
                layer: str | int = "top", lowercase: bool = True, batch_size: int = 64) -> list[Occurrence]:
    """Every occurrence of ``words`` (all tokens if ``None``) in ``sentences``, with its vector."""
    found = []
    norm = str.lower if lowercase else (lambda t: t)
    wanted = None if words is None else {norm(w) for w in words}
    for start in range(0, len(sentences), batch_size):
        batch = [list(s) for s in sentences[start : start + batch_size]]
        for tokens, stack in zip(batch, embedder(batch)):
            vectors = layer_vectors(stack, layer)
            for i, token in enumerate(tokens):
                if wanted is None or norm(token) in wanted:
                    found.append(Occurrence(tuple(tokens), i, vectors[i]))
    return found


def nearest(query: Occurrence, candidates: Sequence[Occurrence], k: int = 5) -> list[tuple[float, Occurrence]]:
    """The ``k`` candidates most cosine-similar to ``query`` (the query's own sentence excluded)."""
    pool = [c for c in candidates if not (c.tokens == query.tokens and c.index == query.index)]
    if not pool:
        return []
    matrix = np.stack([c.vector for c in pool]).astype(np.float32)
    scores = unit_vectors(matrix) @ unit_vectors(query.vector.astype(np.float32)[None])[0]
    best = np.argsort(-scores, kind="stable")[:k]
    return [(float(scores[i]), pool[i]) for i in best]


def unit_vectors(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit length along its last axis (zero vectors stay zero): dot products of
    the results are cosine similarities."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def sense_accuracy(labelled: Sequence[tuple[Occurrence, str]]) -> float:
    """Leave-one-out 1-nearest-neighbour: how often an occurrence's nearest other occurrence of the
    same word has the same sense label."""
    hits = total = 0
    for i, (occ, sense) in enumerate(labelled):
        others = [(o, s) for j, (o, s) in enumerate(labelled) if j != i and o.word.lower() == occ.word.lower()]
        if not others:
            continue
        sims = [float(unit_vectors(o.vector) @ unit_vectors(occ.vector)) for o, _ in others]
        hits += others[int(np.argmax(sims))][1] == sense
        total += 1
    return hits / total if total else float("nan")
