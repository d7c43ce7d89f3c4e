"""Layer probes (elmo_model.eval.probes) and `elmo eval probe pos|wsd` on tiny data."""

from collections import Counter

import numpy as np
import pytest

from elmo_model.eval import probes
from elmo_model.infer.embedder import SentenceEmbedder

# --------------------------------------------------------------------------------------------
# POS baselines, by hand

TRAIN_WORDS = ["the", "dog", "runs", "the", "run", "run", "run"]
TRAIN_TAGS = ["at", "nn", "vbz", "at", "nn", "vb", "vb"]
TEST_WORDS = ["the", "run", "cat", "dog"]
TEST_TAGS = ["at", "nn", "nn", "nn"]


def test_most_frequent_breaks_ties_by_smallest_key():
    assert probes.most_frequent(Counter(TRAIN_TAGS)) == "at"  # at, nn, vb: 2 each


def test_most_frequent_tag_baseline_by_hand():
    # overall most frequent training tag: "at" (tie with nn, vb → smallest); 1 of 4 test tags is "at"
    assert probes.most_frequent_tag_accuracy(TRAIN_TAGS, TEST_TAGS) == pytest.approx(0.25)


def test_per_word_baseline_by_hand():
    # the→at ✓, run→vb (2 vs nn 1) ✗, cat unknown→at ✗, dog→nn ✓
    assert probes.per_word_tag_accuracy(TRAIN_WORDS, TRAIN_TAGS, TEST_WORDS, TEST_TAGS) == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# The linear probe on synthetic features

PRIORS = np.array([0.55, 0.25, 0.1, 0.1])


def synthetic(n: int, seed: int, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 3, dim)`` features: layer 1 carries the label linearly (plus noise), layers 0 and 2
    are noise at a larger scale."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(PRIORS), size=n, p=PRIORS)
    directions = np.random.default_rng(123).normal(size=(len(PRIORS), dim))
    features = rng.normal(scale=3.0, size=(n, 3, dim))
    features[:, 1] = directions[labels] + rng.normal(scale=0.1, size=(n, dim))
    return features.astype(np.float32), labels


def test_linear_probe_finds_the_layer_that_carries_the_tag():
    x_train, y_train = synthetic(800, seed=0)
    x_test, y_test = synthetic(400, seed=1)
    tags = np.array(["nn", "vb", "jj", "rb"])
    settings = probes.ProbeSettings(epochs=20)
    scores = probes.pos_probe(x_train, list(tags[y_train]), x_test, list(tags[y_test]), settings)
    assert set(scores) == {"0", "1", "2", "mix"}
    assert scores["1"].accuracy > 0.98
    majority = np.mean(y_test == 0)
    for noise in ("0", "2"):  # random features: about the majority baseline, no better
        assert abs(scores[noise].accuracy - majority) < 0.08
    assert scores["mix"].accuracy > 0.95
    weights = scores["mix"].mix_weights
    assert len(weights) == 3 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert weights[1] == max(weights)
    assert scores["1"].mix_weights is None


def test_linear_probe_is_deterministic_and_unseen_test_tags_are_errors():
    x_train, y_train = synthetic(200, seed=0)
    tags = np.array(["nn", "vb", "jj", "rb"])
    settings = probes.ProbeSettings(epochs=3, seed=5)
    a = probes.fit_linear_probe(x_train[:, 1], y_train, 4, settings).predict(x_train[:, 1])
    b = probes.fit_linear_probe(x_train[:, 1], y_train, 4, settings).predict(x_train[:, 1])
    assert np.array_equal(a, b)
    test_tags = ["xx"] * 10  # never seen in training: can't be right
    scores = probes.pos_probe(x_train, list(tags[y_train]), x_train[:10], test_tags, settings)
    assert all(s.accuracy == 0.0 for s in scores.values())


# --------------------------------------------------------------------------------------------
# 1-NN word sense, by hand

VECTORS = np.array([
    [1, 0], [1, 0.1], [0, 1], [1, 0.3],  # lemma a: X X Y Y; the last Y's nearest is an X
    [1, 1], [2, 2], [3, 3],              # lemma b: P P Q, all the same direction (ties)
    [5, -1],                             # lemma c: alone
], dtype=np.float32)
SENSES = ["X", "X", "Y", "Y", "P", "P", "Q", "Z"]
GROUPS = ["a", "a", "a", "a", "b", "b", "b", "c"]


def test_nn_sense_accuracy_by_hand():
    # a: 1, 1, 1, 0 (nearest of [1, .3] is [1, .1], an X); b: ties → 1/2, 1/2, 0; c skipped
    assert probes.nn_sense_accuracy(VECTORS, SENSES, GROUPS) == pytest.approx(4 / 7)


def test_most_frequent_sense_leave_one_out_by_hand():
    # a: leaving out one sense's example makes the other sense the majority → 0 × 4;
    # b: P left out → P 1 / Q 1 tie → 1/2 (twice); Q left out → P → 0
    assert probes.most_frequent_sense_accuracy(SENSES, GROUPS) == pytest.approx(1 / 7)


def test_random_neighbour_and_first_sense_by_hand():
    # a: (2-1)/3 each; b: P (2-1)/2 each, Q 0
    assert probes.random_neighbour_accuracy(SENSES, GROUPS) == pytest.approx((4 / 3 + 1) / 7)
    numbers = [1, 1, 2, 2, 3, 3, 1, 1]  # a → X (2 of 4), b → Q (1 of 3), c → Z (1 of 1)
    assert probes.first_sense_accuracy(SENSES, numbers, GROUPS) == pytest.approx(4 / 8)


def test_wsd_probe_layers_and_average():
    features = np.stack([VECTORS, VECTORS[::-1] * 0 + 1, VECTORS], axis=1)  # layer 1: all equal (all ties)
    scores = probes.wsd_probe(features, SENSES, GROUPS)
    assert scores["0"] == scores["2"] == pytest.approx(4 / 7)
    assert scores["1"] == pytest.approx(probes.random_neighbour_accuracy(SENSES, GROUPS))
    assert set(scores) == {"0", "1", "2", "average"}


def test_keep_polysemous():
    senses = ["X", "Y", "X", "P", "P", "Q", "R", "R", "S"]
    groups = ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
    assert probes.keep_polysemous(senses, groups) == list(range(9))
    # with 2 examples per sense: a keeps only X (one sense: dropped), b only P, c only R
    assert probes.keep_polysemous(senses, groups, min_examples=2) == []
    assert probes.keep_polysemous(senses + ["Y"], groups + ["a"], min_examples=2) == [0, 1, 2, 9]


# --------------------------------------------------------------------------------------------
# Embedding


def test_embed_sentences_keeps_order_and_matches_the_embedder(tiny_files):
    from elmo_model.formats.weights import load_bilm

    embedder = SentenceEmbedder(load_bilm(*tiny_files))
    sentences = [["a", "b", "c", "d"], ["x"], ["The", "bank", "closed"]]
    embedded = probes.embed_sentences(embedder, sentences, batch_size=2)
    for sentence, vectors in zip(sentences, embedded):
        np.testing.assert_allclose(vectors, embedder([sentence])[0], atol=1e-5)
    features = probes.token_features(embedded)
    assert features.shape == (8, 3, embedded[0].shape[-1])
    np.testing.assert_array_equal(features[4], embedded[1][:, 0])


# --------------------------------------------------------------------------------------------
# The command line
