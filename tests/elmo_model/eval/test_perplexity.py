import math

import pytest
import torch

from elmo_model.eval.perplexity import perplexity, sentence_perplexity, stream_perplexity

from support import random_lm

SENTENCES = [s.split() for s in ["the cat sat on the mat", "a dog ran", "the dog saw a cat on a log today"]]


@pytest.fixture(scope="module")
def lm_and_vocab():
    return random_lm(SENTENCES)


@pytest.mark.parametrize("plain", [False, True])
def test_stream_windows_carry_state_exactly(lm_and_vocab, plain):
    lm, vocab = lm_and_vocab
    whole = stream_perplexity(lm, vocab, SENTENCES, window=1000, plain=plain)
    for window in (2, 5, 7):
        cut = stream_perplexity(lm, vocab, SENTENCES, window=window, plain=plain)
        assert cut["n_targets"] == whole["n_targets"] == sum(len(s) + 1 for s in SENTENCES)
        assert cut["loss_forward"] == pytest.approx(whole["loss_forward"], abs=1e-5)
        assert cut["loss_backward"] == pytest.approx(whole["loss_backward"], abs=1e-5)


def test_sentence_mode_counts_words_plus_end_and_equals_stream_for_one_sentence(lm_and_vocab):
    lm, vocab = lm_and_vocab
    one = [SENTENCES[2]]
    a, b = sentence_perplexity(lm, vocab, one), stream_perplexity(lm, vocab, one, window=3)
    assert a["n_targets"] == b["n_targets"] == len(SENTENCES[2]) + 1
    assert a["perplexity_forward"] == pytest.approx(b["perplexity_forward"], rel=1e-5)
    assert a["perplexity_backward"] == pytest.approx(b["perplexity_backward"], rel=1e-5)
    c = stream_perplexity(lm, vocab, one, window=3, plain=True)  # one sentence: no boundary
    assert c["n_targets"] == a["n_targets"] and c["loss"] == pytest.approx(b["loss"], rel=1e-6)
    both = perplexity(lm, vocab, SENTENCES, "sentence")
    assert both["perplexity"] == pytest.approx(math.exp(both["loss"]))


@torch.no_grad()
def test_stream_measure_equals_a_direct_sum_over_the_whole_stream(lm_and_vocab):
    """``stream``: one biLM call over ``<S> s1 </S> <S> s2 </S> …``; forward scores every position's next
    token except ``</S> → <S>``, backward every position's previous token except ``<S> → </S>``."""
    from elmo_model.model.chars import sentence_char_ids

    lm, vocab = lm_and_vocab
    tokens = [t for s in SENTENCES for t in ("<S>", *s, "</S>")]
    ids = torch.from_numpy(vocab.encode(tokens))
    out = lm.bilm(torch.from_numpy(sentence_char_ids(tokens, max_chars=50)).long()[None], None)
    fwd_h, bwd_h = (h[0] for h in out.direction_outputs(-1))
    fwd_logp = torch.log_softmax(fwd_h @ lm.softmax.weight.T + lm.softmax.bias, -1)
    bwd_logp = torch.log_softmax(bwd_h @ lm.softmax.weight.T + lm.softmax.bias, -1)
    fwd = [-fwd_logp[i, ids[i + 1]] for i in range(len(tokens) - 1) if (tokens[i], tokens[i + 1]) != ("</S>", "<S>")]
    bwd = [-bwd_logp[i, ids[i - 1]] for i in range(1, len(tokens)) if (tokens[i], tokens[i - 1]) != ("<S>", "</S>")]
    assert len(fwd) == len(bwd) == sum(len(s) + 1 for s in SENTENCES)
    got = stream_perplexity(lm, vocab, SENTENCES, window=4)
    assert got["loss_forward"] == pytest.approx(float(sum(fwd)) / len(fwd), rel=1e-5)
    assert got["loss_backward"] == pytest.approx(float(sum(bwd)) / len(bwd), rel=1e-5)
    plain = stream_perplexity(lm, vocab, SENTENCES, window=4, plain=True)
    assert plain["n_targets"] == got["n_targets"] and plain["loss_forward"] != pytest.approx(got["loss_forward"])
