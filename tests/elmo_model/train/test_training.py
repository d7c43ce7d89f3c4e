"""The learning half: targets, loss, resumption, export and fine-tuning."""

from collections import Counter

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from elmo_model.train.batching import collate, make_windows, sentence_windows
from elmo_model.formats.checkpoint import load_checkpoint
from elmo_model.infer.elmo import Elmo, batch_to_ids
from elmo_model.errors import ElmoError
from elmo_model.formats.export import export_model, load_pretrained_lm
from elmo_model.model.language_model import BiLmWithSoftmax
from elmo_model.train.config import TrainConfig
from elmo_model.train.loop import new_model, train_in_process
from elmo_model.formats.vocab import Vocabulary

SENTENCES = [s.split() for s in [
    "the cat sat on the mat", "a dog sat on the log", "the dog saw the cat",
    "a cat saw a dog on the mat", "the log sat on the dog", "the mat saw a log",
]]
CONFIG = TrainConfig(batch_size=4, steps=12, log_every=1, dropout=0.0, seed=3)


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.from_counts(Counter(t for s in SENTENCES for t in s))


def test_windows_overlap_by_one_and_cover_every_transition():
    tokens = [f"w{i}" for i in range(10)]
    windows = sentence_windows(tokens, max_tokens=5)
    assert windows[0][:2] == ["<S>", "w0"] and windows[-1][-1] == "</S>"
    assert all(len(w) <= 5 for w in windows)
    transitions = [(a, b) for w in windows for a, b in zip(w, w[1:])]
    full = ["<S>", *tokens, "</S>"]
    assert transitions == list(zip(full, full[1:]))


@torch.no_grad()
def _manual_nll(model, fwd, bwd, sentences, vocab):
    """Sum of cross-entropies position by position, straight from the definition."""
    expected_fwd = expected_bwd = 0.0
    n = 0
    logits = lambda h: model.softmax.weight @ h + model.softmax.bias
    for b, sentence in enumerate(sentences):
        ids = torch.tensor(vocab.encode(["<S>", *sentence, "</S>"]))
        for t in range(len(ids) - 1):  # forward: position t predicts t+1; backward: t+1 predicts t
            expected_fwd += float(F.cross_entropy(logits(fwd[b, t]), ids[t + 1]))
            expected_bwd += float(F.cross_entropy(logits(bwd[b, t + 1]), ids[t]))
            n += 1
    return expected_fwd, expected_bwd, n


def test_forward_and_backward_targets_are_the_right_shifts(vocab):
    model = new_model(CONFIG, vocab).eval()
    batch = collate(make_windows(SENTENCES[:3], 100), vocab)
    char_ids, token_ids = torch.tensor(batch["char_ids"]).long(), torch.tensor(batch["token_ids"])
    with torch.no_grad():
        loss = model(char_ids, token_ids)
        fwd, bwd = model.bilm(char_ids).direction_outputs(-1)
    expected_fwd, expected_bwd, n = _manual_nll(model, fwd, bwd, SENTENCES[:3], vocab)
    assert loss.n_targets == n
    assert abs(float(loss.forward_nll) - expected_fwd) < 1e-3
    assert abs(float(loss.backward_nll) - expected_bwd) < 1e-3


def test_resume_matches_uninterrupted_run_step_for_step(vocab, tmp_path):
    config = TrainConfig(batch_size=2, steps=8, log_every=1, dropout=0.1, seed=5, softmax="sampled",
                         n_negative_samples_batch=6)
    straight: list[float] = []
    train_in_process(config, SENTENCES, vocab, on_metrics=lambda m: straight.append(m["loss"]))
    resumed: list[float] = []
    ckpt = tmp_path / "ckpt.pt"
    train_in_process(config, SENTENCES, vocab, checkpoint_path=ckpt, stop_after=3,
                     on_metrics=lambda m: resumed.append(m["loss"]))
    assert load_checkpoint(ckpt)["step"] == 3
    torch.manual_seed(999)  # a resumed process starts with unrelated RNG state
    train_in_process(config, SENTENCES, vocab, checkpoint_path=ckpt, on_metrics=lambda m: resumed.append(m["loss"]))
    assert len(resumed) == 8
    np.testing.assert_allclose(resumed, straight, rtol=1e-6)


def test_export_then_elmo_gives_the_training_models_embeddings(vocab, tmp_path):
    trainer = train_in_process(CONFIG, SENTENCES, vocab)
    export_model(trainer.model, vocab, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["options.json", "vocab.txt", "weights.hdf5"]
    elmo = Elmo(tmp_path / "options.json", tmp_path / "weights.hdf5", 1, dropout=0.0,
                scalar_mix_parameters=[-1e9, -1e9, 1e9])
    ids = batch_to_ids(SENTENCES[:2])
    trainer.model.eval()
    with torch.no_grad():
        top = trainer.model.bilm(torch.tensor(collate(
            [["<S>", *s, "</S>"] for s in SENTENCES[:2]], vocab)["char_ids"]).long()).layers[-1]
        rep = elmo(ids)["elmo_representations"][0]
    for b, s in enumerate(SENTENCES[:2]):
        torch.testing.assert_close(rep[b, : len(s)], top[b, 1 : len(s) + 1], atol=1e-6, rtol=0)
    # fine-tuning continues from the export, softmax included
    again = load_pretrained_lm(tmp_path / "options.json", tmp_path / "weights.hdf5", vocab)
    torch.testing.assert_close(again.softmax.weight, trainer.model.softmax.weight)


def test_fine_tune_published_weights_without_softmax(tiny_files, vocab):
    model = load_pretrained_lm(*tiny_files, vocab)
    assert model.softmax.weight.shape == (len(vocab), 16)
    before = [p.clone() for p in model.bilm.parameters()]
    config = TrainConfig(batch_size=3, steps=30, log_every=1, dropout=0.0)
    losses: list[float] = []
    train_in_process(config, SENTENCES, vocab, model=model, on_metrics=lambda m: losses.append(m["loss"]))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.bilm.parameters()))


def test_bad_inputs(tmp_path, tiny_files, vocab):
    with pytest.raises(ElmoError, match="training corpus is empty"):
        train_in_process(CONFIG, [[], []], vocab)
    (tmp_path / "v.txt").write_text("the\ncat\n")
    with pytest.raises(ElmoError, match="lacks the special tokens"):
        Vocabulary.load(tmp_path / "v.txt")
    trainer_model = BiLmWithSoftmax(CONFIG.options(), len(vocab))
    export_model(trainer_model, vocab, tmp_path / "export")
    smaller = Vocabulary(vocab.tokens[:-1])
    with pytest.raises(ElmoError, match=r"softmax has \d+ rows .* vocabulary has \d+ tokens"):
        load_pretrained_lm(tmp_path / "export/options.json", tmp_path / "export/weights.hdf5", smaller)
    with pytest.raises(ElmoError, match="unknown training config keys"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ElmoError, match="not a readable checkpoint"):
        (tmp_path / "c.pt").write_bytes(b"garbage")
        load_checkpoint(tmp_path / "c.pt")
