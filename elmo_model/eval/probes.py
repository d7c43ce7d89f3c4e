"""Layer probes: what each layer of a frozen biLM knows (ELMo §5.3).

Two probes, both on frozen per-token vectors ``(L+1, n_tokens, D)`` from
:class:`~elmo_model.infer.embedder.SentenceEmbedder`:

- **POS tagging, linear**: softmax regression (one linear layer, Adam, weight decay) from one
  layer's token vectors — or from a learned scalar mix ``Σ_j softmax(s)_j · h_j`` of all layers,
  the mix weights trained jointly with the classifier — to the token's tag. Each layer is
  standardised per dimension with the training split's mean and standard deviation first (so
  that layers of different scale are probed alike). Baselines: the overall most frequent tag,
  and the most frequent tag of each word in the training split (unknown words: the overall
  most frequent tag).
- **Word sense, 1-nearest-neighbour**: for sense-labelled usage examples of lemmas with at least
  two senses (optionally counting only senses with enough examples, :func:`keep_polysemous`:
  under leave-one-out an example whose sense has no other example can never be right), each example gets the sense of its most cosine-similar other example of the same
  lemma (leave-one-out). Baselines: the most frequent sense of the lemma's other examples
  (leave-one-out, which for evenly split senses always picks a wrong one), a random other
  example (chance level for 1-NN), and WordNet's first sense (frequency from outside data).
  Ties (equal similarities, e.g. identical context-free layer-0 vectors of the same word form;
  equally frequent senses) score the expected accuracy of breaking them at random: the fraction
  of the tied candidates that are right.

Pure numpy/torch; no Ray.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
import torch

from elmo_model.infer.embedder import SentenceEmbedder
from elmo_model.eval.neighbors import unit_vectors

TIE_TOLERANCE = 1e-6  # cosine similarities closer than this count as equal


# --------------------------------------------------------------------------------------------
# Embedding


def embed_sentences(embedder: SentenceEmbedder, sentences: Sequence[Sequence[str]],
                    batch_size: int = 64) -> list[np.ndarray]:
    """Every sentence's ``(L+1, n_tokens, D)`` vectors, in input order (batched by length)."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out: list[np.ndarray] = [np.empty(0)] * len(sentences)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        for i, vectors in zip(rows, embedder([list(sentences[i]) for i in rows])):
            out[i] = vectors
    return out


def token_features(embedded: Sequence[np.ndarray]) -> np.ndarray:
    """Per-sentence ``(L+1, n_i, D)`` → all tokens ``(N, L+1, D)`` (sentences concatenated)."""
    return np.concatenate([e.transpose(1, 0, 2) for e in embedded], axis=0)


# --------------------------------------------------------------------------------------------
# POS tagging: baselines


def most_frequent(counts: Counter) -> Hashable:
    """The most frequent key; ties go to the smallest key (a deterministic choice)."""
    return min(counts, key=lambda k: (-counts[k], k))


def accuracy(predicted: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} labels")
    return sum(p == g for p, g in zip(predicted, gold)) / len(gold) if gold else float("nan")


def most_frequent_tag_accuracy(train_tags: Sequence[str], test_tags: Sequence[str]) -> float:
    """Accuracy of tagging every test token with the training split's most frequent tag."""
    tag = most_frequent(Counter(train_tags))
    return accuracy([tag] * len(test_tags), test_tags)


def per_word_tag_accuracy(train_words: Sequence[str], train_tags: Sequence[str],
                          test_words: Sequence[str], test_tags: Sequence[str]) -> float:
    """Each test word gets its most frequent tag in the training split; unknown words the
    overall most frequent tag. Words are compared exactly (case-sensitive)."""
    by_word: dict[str, Counter] = {}
    for word, tag in zip(train_words, train_tags, strict=True):
        by_word.setdefault(word, Counter())[tag] += 1
    fallback = most_frequent(Counter(train_tags))
    best = {word: most_frequent(counts) for word, counts in by_word.items()}
    return accuracy([best.get(w, fallback) for w in test_words], test_tags)


# --------------------------------------------------------------------------------------------
# POS tagging: the linear probe


class LinearProbe(torch.nn.Module):
    """Standardise → (optional softmax-weighted mix of layers) → one linear layer.

    Inputs are ``(N, D)`` for one layer, ``(N, K, D)`` for a mix of ``K`` layers.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.mix_logits = torch.nn.Parameter(torch.zeros(mean.shape[0])) if mean.dim() == 2 else None
        self.linear = torch.nn.Linear(mean.shape[-1], n_classes)

    def mix_weights(self) -> list[float] | None:
        """The softmax-normalised mix weights (``None`` for a single-layer probe)."""
        if self.mix_logits is None:
            return None
        return torch.softmax(self.mix_logits.detach(), 0).tolist()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.mix_logits is not None:
            x = torch.einsum("k,nkd->nd", torch.softmax(self.mix_logits, 0), x)
        return self.linear(x)

    @torch.no_grad()
    def predict(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Class indices for ``x`` (same layout as in training)."""
        out = [self(torch.from_numpy(np.ascontiguousarray(x[a : a + batch_size])).float()).argmax(-1)
               for a in range(0, len(x), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    """Softmax-regression training: Adam over shuffled mini-batches, L2 weight decay on the
    linear layer (not on the mix weights)."""

    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, n_classes: int,
                     settings: ProbeSettings = ProbeSettings()) -> LinearProbe:
    """Train a :class:`LinearProbe` on ``features`` (``(N, D)`` one layer, ``(N, K, D)`` a mix)
    and integer ``labels`` ``(N,)``."""
    if len(features) != len(labels) or not len(labels):
        raise ValueError(f"need as many labels as feature rows (got {len(labels)} and {len(features)})")
    x = torch.from_numpy(np.ascontiguousarray(features)).float()
    y = torch.from_numpy(np.asarray(labels)).long()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        probe = LinearProbe(mean, std, n_classes)
    groups = [{"params": probe.linear.parameters(), "weight_decay": settings.weight_decay}]
    if probe.mix_logits is not None:
        groups.append({"params": [probe.mix_logits], "weight_decay": 0.0})
    optimizer = torch.optim.Adam(groups, lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(settings.seed)
    for _ in range(settings.epochs):
        for batch in torch.randperm(len(y), generator=generator).split(settings.batch_size):
            loss = torch.nn.functional.cross_entropy(probe(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return probe.eval()


@dataclasses.dataclass(frozen=True)
class ProbeScore:
    accuracy: float
    mix_weights: list[float] | None = None


def pos_probe(train_features: np.ndarray, train_tags: Sequence[str], test_features: np.ndarray,
              test_tags: Sequence[str], settings: ProbeSettings = ProbeSettings()) -> dict[str, ProbeScore]:
    """Linear POS probes on ``(N, L+1, D)`` features: one per layer (``"0"`` … ``"L"``) and the
    learned mix (``"mix"``). Test tags never seen in training count as errors."""
    tags = sorted(set(train_tags))
    index = {t: i for i, t in enumerate(tags)}
    y_train = np.array([index[t] for t in train_tags])
    y_test = np.array([index.get(t, -1) for t in test_tags])
    scores = {}
    for layer in range(train_features.shape[1]):
        probe = fit_linear_probe(train_features[:, layer], y_train, len(tags), settings)
        scores[str(layer)] = ProbeScore(float(np.mean(probe.predict(test_features[:, layer]) == y_test)))
    probe = fit_linear_probe(train_features, y_train, len(tags), settings)
    scores["mix"] = ProbeScore(float(np.mean(probe.predict(test_features) == y_test)), probe.mix_weights())
    return scores


# --------------------------------------------------------------------------------------------
# Word sense: 1-nearest-neighbour, leave-one-out


def _groups(groups: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    return members


def nn_sense_accuracy(vectors: np.ndarray, senses: Sequence[Hashable], groups: Sequence[Hashable],
                      tolerance: float = TIE_TOLERANCE) -> float:
    """Leave-one-out 1-NN by cosine similarity within each group (lemma): the mean over examples
    of the fraction of its most similar other examples (ties within ``tolerance``) that share
    its sense. Examples alone in their group are skipped."""
    if not (len(vectors) == len(senses) == len(groups)):
        raise ValueError("vectors, senses and groups must have the same length")
    unit = unit_vectors(np.asarray(vectors, dtype=np.float64))
    credit, total = 0.0, 0
    for members in _groups(groups).values():
        if len(members) < 2:
            continue
        sims = unit[members] @ unit[members].T
        np.fill_diagonal(sims, -np.inf)
        labels = [senses[i] for i in members]
        for row, sense in zip(sims, labels):
            tied = np.flatnonzero(row >= row.max() - tolerance)
            credit += sum(labels[j] == sense for j in tied) / len(tied)
            total += 1
    return credit / total if total else float("nan")


def most_frequent_sense_accuracy(senses: Sequence[Hashable], groups: Sequence[Hashable]) -> float:
    """Leave-one-out most-frequent-sense: each example is given the sense most frequent among
    the other examples of its group (equally frequent senses share the credit)."""
    credit, total = 0.0, 0
    for members in _groups(groups).values():
        if len(members) < 2:
            continue
        counts = Counter(senses[i] for i in members)
        for i in members:
            counts[senses[i]] -= 1
            top = max(counts.values())
            best = [s for s, c in counts.items() if c == top]
            credit += (senses[i] in best) / len(best)
            counts[senses[i]] += 1
            total += 1
    return credit / total if total else float("nan")


def random_neighbour_accuracy(senses: Sequence[Hashable], groups: Sequence[Hashable]) -> float:
    """Chance level for 1-NN: the expected accuracy of taking a random other example of the
    group as the neighbour (``(examples of the same sense − 1) / (group size − 1)``)."""
    credit, total = 0.0, 0
    for members in _groups(groups).values():
        if len(members) < 2:
            continue
        counts = Counter(senses[i] for i in members)
        for i in members:
            credit += (counts[senses[i]] - 1) / (len(members) - 1)
            total += 1
    return credit / total if total else float("nan")


def first_sense_accuracy(senses: Sequence[Hashable], sense_numbers: Sequence[int],
                         groups: Sequence[Hashable]) -> float:
    """Each example is given the sense with the lowest WordNet sense number among its group's
    examples (WordNet numbers senses by their SemCor frequency: an outside-data baseline)."""
    first: dict[Hashable, tuple[int, Hashable]] = {}
    for sense, number, group in zip(senses, sense_numbers, groups, strict=True):
        if group not in first or number < first[group][0]:
            first[group] = (number, sense)
    return accuracy([first[g][1] for g in groups], list(senses))


def wsd_probe(features: np.ndarray, senses: Sequence[Hashable], groups: Sequence[Hashable]) -> dict[str, float]:
    """1-NN leave-one-out sense accuracy on ``(n, L+1, D)`` target-token features: one per layer
    (``"0"`` … ``"L"``) and for the plain average of the layers (``"average"``)."""
    scores = {str(j): nn_sense_accuracy(features[:, j], senses, groups) for j in range(features.shape[1])}
    scores["average"] = nn_sense_accuracy(features.mean(axis=1), senses, groups)
    return scores


def keep_polysemous(senses: Sequence[Hashable], groups: Sequence[Hashable], min_examples: int = 1) -> list[int]:
    """Indices of the examples to probe: those whose sense has at least ``min_examples``
    examples in its group, in groups left with at least two such senses."""
    counts = Counter(zip(groups, senses, strict=True))
    kept_senses: dict[Hashable, set] = {}
    for (g, s), n in counts.items():
        if n >= min_examples:
            kept_senses.setdefault(g, set()).add(s)
    return [i for i, (g, s) in enumerate(zip(groups, senses))
            if s in kept_senses.get(g, ()) and len(kept_senses[g]) >= 2]
