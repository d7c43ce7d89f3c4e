"""`elmo eval perplexity`, `elmo eval probe pos|wsd` and `elmo neighbors` through the real command
line (the functions they call are tested in tests/elmo_model/eval/)."""

import json
import shutil

import pytest

from elmo_model.eval.perplexity import perplexity
from elmo_model.formats.export import export_model
from elmo_model.formats.weights import save_options, save_weights

from support import random_lm, run_elmo

SENTENCES = [s.split() for s in ["the cat sat on the mat", "a dog ran", "the dog saw a cat on a log today"]]


@pytest.fixture(scope="module")
def lm_and_vocab():
    return random_lm(SENTENCES)


def test_eval_perplexity_command(tmp_path, lm_and_vocab):
    lm, vocab = lm_and_vocab
    export_model(lm, vocab, tmp_path / "model")
    (tmp_path / "test.txt").write_text("\n".join(" ".join(s) for s in SENTENCES) + "\n")
    for mode in ("sentence", "stream", "stream-plain"):
        result = run_elmo("eval", "perplexity", "--model", str(tmp_path / "model"), "--input",
                          str(tmp_path / "test.txt"), "--mode", mode, "--window", "4")
        assert result.returncode == 0, result.stderr
        expected = perplexity(lm, vocab, SENTENCES, mode, 4)
        got = __import__("json").loads(result.stdout)
        assert got["perplexity_forward"] == pytest.approx(expected["perplexity_forward"], rel=1e-5)
    (tmp_path / "published").mkdir()
    save_weights(lm.bilm, tmp_path / "published/weights.hdf5")
    save_options(lm.bilm.options, tmp_path / "published/options.json")
    (tmp_path / "published/vocab.txt").write_text(vocab.to_text())
    result = run_elmo("eval", "perplexity", "--model", str(tmp_path / "published"), "--input", str(tmp_path / "test.txt"))
    assert result.returncode == 2 and "has no softmax" in result.stderr


def test_neighbors_command(tmp_path, tiny_files):
    (tmp_path / "model").mkdir()
    (tmp_path / "model/options.json").write_bytes(tiny_files[0].read_bytes())
    (tmp_path / "model/weights.hdf5").write_bytes(tiny_files[1].read_bytes())
    (tmp_path / "corpus.txt").write_text("the bank closed early\nwe sat on the bank\nno match here\n")
    result = run_elmo("neighbors", "--model", str(tmp_path / "model"), "--corpus", str(tmp_path / "corpus.txt"),
                      "--word", "bank", "--sentence", "a bank loan", "-k", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().split("\n")
    assert lines[0] == "a [bank] loan" and len(lines) == 3 and all("[bank]" in line for line in lines)
    missing = run_elmo("neighbors", "--model", str(tmp_path / "model"), "--corpus", str(tmp_path / "corpus.txt"),
                       "--word", "zebra", "--sentence", "a zebra")
    assert missing.returncode == 2 and "no sentence contains 'zebra'" in missing.stderr


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_files):
    target = tmp_path_factory.mktemp("model")
    shutil.copy(tiny_files[0], target / "options.json")
    shutil.copy(tiny_files[1], target / "weights.hdf5")
    return target


BROWN = [
    ("The dog runs .", "at nn vbz ."),
    ("A cat sleeps .", "at nn vbz ."),
    ("Dogs run fast .", "nns vb rb ."),
    ("The old man walked home .", "at jj nn vbd nr ."),
    ("She saw the bank .", "pps vbd at nn ."),
    ("They bank on it .", "ppss vb in pps ."),
]


def write_brown(root, rows_by_split):
    root.mkdir()
    for split, rows in rows_by_split.items():
        (root / f"{split}.txt").write_text("".join(f"{t}\n" for t, _ in rows))
        (root / f"{split}.basetags").write_text("".join(f"{g}\n" for _, g in rows))


def test_eval_probe_pos_command(tmp_path, model_dir):
    write_brown(tmp_path / "brown", {"train": BROWN * 5, "test": BROWN[:3]})
    out = tmp_path / "pos.json"
    result = run_elmo("eval", "probe", "pos", "--model", str(model_dir), "--data", str(tmp_path / "brown"),
                      "--max-train-sentences", "20", "--epochs", "3", "--threads", "1", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "| layer 1 |" in result.stdout and "| baseline: most frequent tag per word |" in result.stdout
    data = json.loads(out.read_text())
    assert data["train_sentences"] == 20 and data["test_sentences"] == 3 and data["test_tokens"] == 12
    assert set(data["accuracy"]) == {"0", "1", "2", "mix"}
    assert all(0.0 <= a <= 1.0 for a in data["accuracy"].values())
    assert len(data["mix_weights"]) == 3
    # every test word was seen in training with one tag: the per-word baseline is perfect
    assert data["baselines"]["most frequent tag per word"] == 1.0
    assert data["baselines"]["most frequent tag"] == pytest.approx(3 / 12)  # "." (30 in training) on 3 of 12
    # a tags file out of step with its text: one error line naming the file and line
    (tmp_path / "brown" / "test.basetags").write_text("at nn vbz .\nat nn .\nnns vb rb .\n")
    bad = run_elmo("eval", "probe", "pos", "--model", str(model_dir), "--data", str(tmp_path / "brown"))
    assert bad.returncode == 2 and "test.basetags:2: 3 tags for 4 tokens" in bad.stderr


WORDNET_HEADER = "lemma\tpos\tsynset\tsense_key\tsense_number\ttag_count\ttokens\tindex\n"
WORDNET_ROWS = [
    ("bank", "n", "1-n", "bank%1:17:01::", 1, "the canoe was pulled up on the bank", 7),
    ("bank", "n", "1-n", "bank%1:17:01::", 1, "they sat on the grassy bank of the river", 5),
    ("bank", "n", "2-n", "bank%1:14:00::", 2, "he cashed a check at the bank", 6),
    ("bank", "n", "2-n", "bank%1:14:00::", 2, "that bank holds the mortgage on my home", 1),
    ("bank", "n", "3-n", "bank%1:06:00::", 3, "the bank is on the corner", 1),
    ("spring", "n", "4-n", "spring%1:28:00::", 1, "flowers bloom in the spring", 4),
    ("spring", "n", "4-n", "spring%1:28:00::", 1, "the spring was warm", 1),
    ("spring", "n", "5-n", "spring%1:06:00::", 2, "the spring in the watch broke", 1),
    ("cat", "n", "6-n", "cat%1:05:00::", 1, "the cat sat", 1),
    ("cat", "n", "6-n", "cat%1:05:00::", 1, "a black cat", 2),
]


def test_eval_probe_wsd_command(tmp_path, model_dir):
    tsv = tmp_path / "examples.tsv"
    tsv.write_text(WORDNET_HEADER + "".join("\t".join(map(str, (*r[:4], r[4], 0, *r[5:]))) + "\n"
                                            for r in WORDNET_ROWS))
    out = tmp_path / "wsd.json"
    result = run_elmo("eval", "probe", "wsd", "--model", str(model_dir), "--data", str(tsv), "--threads", "1",
                      "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "| layer 2 |" in result.stdout and "| baseline: most frequent sense |" in result.stdout
    data = json.loads(out.read_text())
    # default: senses with >= 2 examples → bank (2 senses × 2); spring keeps one sense, cat one: out
    assert (data["lemmas"], data["examples"], data["senses"]) == (1, 4, 2)
    assert set(data["accuracy"]) == {"0", "1", "2", "average"}
    assert data["baselines"]["most frequent sense"] == 0.0  # 2 + 2, leave-one-out
    assert data["baselines"]["random other example (chance)"] == pytest.approx(1 / 3)
    # every sense counted: bank (3 senses) and spring (2); cat has one sense
    result = run_elmo("eval", "probe", "wsd", "--model", str(model_dir), "--data", str(tsv), "--threads", "1",
                      "--min-examples-per-sense", "1", "--output", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert (data["lemmas"], data["examples"], data["senses"]) == (2, 8, 5)
    result = run_elmo("eval", "probe", "wsd", "--model", str(model_dir), "--data", str(tsv), "--threads", "1",
                      "--max-lemmas", "1", "--min-examples-per-sense", "1", "--output", str(out))
    assert json.loads(out.read_text())["lemmas"] == 1
