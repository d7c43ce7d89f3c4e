import pytest

from elmo_model.errors import ElmoError
from elmo_model.formats.vocab import Vocabulary


def test_from_counts_orders_specials_then_count_then_token():
    vocab = Vocabulary.from_counts({"b": 3, "a": 3, "c": 5, "rare": 1}, min_count=2)
    assert vocab.tokens == ["<S>", "</S>", "<UNK>", "c", "a", "b"]
    assert Vocabulary.from_counts({"b": 3, "a": 3, "c": 5}, max_size=4).tokens[-1] == "c"


def test_encode_falls_back_to_unk_and_round_trips(tmp_path):
    vocab = Vocabulary.from_counts({"the": 10, "cat": 2})
    assert vocab.encode(["the", "dog"]).tolist() == [vocab.id("the"), vocab.unk]
    vocab.save(tmp_path / "vocab.txt")
    assert Vocabulary.load(tmp_path / "vocab.txt").tokens == vocab.tokens


def test_loads_the_fixture_vocabulary(tiny_dir):
    vocab = Vocabulary.load(tiny_dir / "vocab_test.txt")
    assert len(vocab) == 458 and vocab.tokens[vocab.bos] == "<S>"


def test_missing_specials_and_empty_file(tmp_path):
    (tmp_path / "v.txt").write_text("the\ncat\n")
    with pytest.raises(ElmoError, match=r"v.txt: vocabulary lacks the special tokens \['<S>', '</S>', '<UNK>'\]"):
        Vocabulary.load(tmp_path / "v.txt")
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(ElmoError, match="e.txt: vocabulary file is empty"):
        Vocabulary.load(tmp_path / "e.txt")
