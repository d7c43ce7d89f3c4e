"""Stream training: the streams' windows, targets and masks, and exact resume with carried state."""

from collections import Counter

import numpy as np
import pytest
import torch

from elmo_model.train.batch_plan import NO_TOKEN_LIMIT, ordered_items
from elmo_model.formats.checkpoint import load_checkpoint
from elmo_model.errors import ElmoError
from elmo_model.train.stream import TokenStreams, stream_tensors
from elmo_model.train.config import TrainConfig
from elmo_model.train.loop import train_in_process
from elmo_model.formats.vocab import Vocabulary

SENTENCES = [s.split() for s in [
    "the cat sat on the mat", "a dog sat on the log", "the dog saw the cat",
    "a cat saw a dog on the mat", "the log sat on the dog", "the mat saw a log", "a cat ran",
]]


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.from_counts(Counter(t for s in SENTENCES for t in s))


def _joined(sequences):
    return [t for s in sequences for t in s]


def test_each_direction_reads_its_segment_contiguously_with_sentence_targets(vocab):
    sequences = ordered_items(SENTENCES, NO_TOKEN_LIMIT, seed=1)
    stream = _joined(sequences)
    n_streams, window = 3, 4
    streams = TokenStreams(sequences, vocab, window, n_streams, range(1, 3), max_chars=50)
    length = len(stream) // n_streams
    assert streams.segment == length
    rows = [stream[j * length : (j + 1) * length] for j in (1, 2)]
    steps = length  # every position, several times over (windows wrap at the segment's end)
    fwd_seen = [[] for _ in rows]
    bwd_seen = [[] for _ in rows]
    n_fwd = n_bwd = 0
    for k in range(steps):
        batch = streams.batch(k)
        assert batch["char_ids"].shape == (4, window, 50)
        for b, row in enumerate(rows):
            for t in range(window):
                p = (k * window + t) % length
                q = (length - (k + 1) * window + t) % length
                np.testing.assert_array_equal(batch["char_ids"][b, t], streams.token_chars[streams.segments[b, p]])
                np.testing.assert_array_equal(batch["char_ids"][2 + b, t],
                                              streams.token_chars[streams.segments[b, q]])
                if batch["forward_mask"][b, t]:  # predicts the next token, never across </S> <S> or the wrap
                    assert row[p] != "</S>" and p + 1 < length
                    assert batch["forward_targets"][b, t] == vocab.encode([row[p + 1]])[0]
                if batch["backward_mask"][b, t]:
                    assert row[q] != "<S>" and q > 0
                    assert batch["backward_targets"][b, t] == vocab.encode([row[q - 1]])[0]
            fwd_seen[b].extend((k * window + t) % length for t in range(window))
            bwd_seen[b].extend((length - (k + 1) * window + t) % length for t in reversed(range(window)))
        n_fwd += int(batch["forward_mask"].sum())
        n_bwd += int(batch["backward_mask"].sum())
    for b in range(len(rows)):  # forward reads left to right, backward right to left, no gaps, no repeats
        assert fwd_seen[b][: length] == list(range(length))
        assert bwd_seen[b][: length] == list(range(length - 1, -1, -1))


def test_masks_drop_exactly_the_boundary_targets(vocab):
    """One stream over the whole corpus, one window: the targets are those of sentence mode."""
    sequences = ordered_items(SENTENCES, NO_TOKEN_LIMIT, seed=2)
    n = len(_joined(sequences))
    streams = TokenStreams(sequences, vocab, n - 1, 1, range(1), max_chars=50)
    batch = streams.batch(0)
    per_sentence = sum(len(s) + 1 for s in SENTENCES)  # words and </S> forward; <S> and words backward
    # forward reads positions 0..n-2 (the last </S> predicts nothing), backward 1..n-1 (the first
    # <S> predicts nothing): each counts every target of sentence mode once
    assert int(batch["forward_mask"].sum()) == per_sentence
    assert int(batch["backward_mask"].sum()) == per_sentence


def test_too_small_corpus_is_one_clear_error(vocab):
    with pytest.raises(ElmoError, match="stream mode: the corpus has 9 tokens, too few for 4 streams"):
        TokenStreams([["<S>", "a", "cat", "sat", "</S>"], ["<S>", "a", "dog", "</S>"]], vocab, 3, 4, range(4), 50)


def test_stream_mode_resumes_exactly_with_the_carried_state(vocab, tmp_path):
    config = TrainConfig(mode="stream", batch_size=2, max_tokens=5, steps=9, log_every=1, dropout=0.1, seed=4,
                         softmax="sampled", n_negative_samples_batch=6)
    straight: list[float] = []
    train_in_process(config, SENTENCES, vocab, on_metrics=lambda m: straight.append(m["loss"]))
    resumed: list[float] = []
    ckpt = tmp_path / "ckpt.pt"
    train_in_process(config, SENTENCES, vocab, checkpoint_path=ckpt, stop_after=4,
                     on_metrics=lambda m: resumed.append(m["loss"]))
    state = load_checkpoint(ckpt)
    assert state["step"] == 4 and state["stream_state"]["c"].abs().sum() > 0  # the carried state is saved
    torch.manual_seed(123)
    train_in_process(config, SENTENCES, vocab, checkpoint_path=ckpt, on_metrics=lambda m: resumed.append(m["loss"]))
    assert len(resumed) == 9
    np.testing.assert_allclose(resumed, straight, rtol=1e-6)
    # the carried state matters: without it (a fresh state at the resume) the losses differ
    ckpt2 = tmp_path / "ckpt2.pt"
    train_in_process(config, SENTENCES, vocab, checkpoint_path=ckpt2, stop_after=4)
    payload = torch.load(ckpt2, weights_only=True)
    payload["stream_state"]["c"].zero_()
    payload["stream_state"]["h"].zero_()
    for entry in payload["extra"]["ranks"]:
        entry["stream_state"]["c"].zero_()
        entry["stream_state"]["h"].zero_()
    torch.save(payload, ckpt2)
    other: list[float] = []
    train_in_process(config, SENTENCES, vocab, checkpoint_path=ckpt2, on_metrics=lambda m: other.append(m["loss"]))
    assert abs(other[0] - straight[4]) > 1e-6


def test_paired_path_equals_both_directions_over_all_rows(vocab):
    """The fast stream path (each direction on its own windows) gives the step-by-step path's
    losses, gradients and carried state over several steps; a 2B-row state (older checkpoints)
    continues as its used halves."""
    from elmo_model.testing.step_by_step import StepByStepStreamLm
    from elmo_model.train.loop import new_model
    from elmo_model.train.stream import StreamLm, paired_state

    config = TrainConfig(mode="stream", batch_size=2, max_tokens=5, seed=3, dropout=0.0,
                         model_overrides=dict(lstm_dim=16, projection_dim=8))
    models = [new_model(config, vocab).double() for _ in range(2)]  # the oracle's, the fast path's
    models[1].load_state_dict(models[0].state_dict())
    streams = TokenStreams(ordered_items(SENTENCES, NO_TOKEN_LIMIT, seed=1), vocab, 5, 2, range(2), max_chars=50)
    states = [None, None]
    for step in range(4):
        batch = streams.batch(step)
        tensors = stream_tensors(batch)
        results, grads = [], []
        for i, model in enumerate(models):
            model.zero_grad()
            out = (StepByStepStreamLm if i == 0 else StreamLm)(model)(*tensors, states[i])
            (out.forward_nll + out.backward_nll).backward()
            results.append(out)
            grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
            states[i] = out.state
        slow, fast = results
        assert fast.state.h.shape[2] == 2 and slow.state.h.shape[2] == 4
        torch.testing.assert_close(fast.forward_nll, slow.forward_nll, rtol=1e-10, atol=0)
        torch.testing.assert_close(fast.backward_nll, slow.backward_nll, rtol=1e-10, atol=0)
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
        used = paired_state(slow.state, 2)
        torch.testing.assert_close(fast.state.h, used.h, rtol=0, atol=1e-12)
        torch.testing.assert_close(fast.state.c, used.c, rtol=0, atol=1e-12)
    states[1] = states[0]  # continue the fast path from a 2B-row state: the same next loss
    batch = streams.batch(4)
    tensors = stream_tensors(batch)
    fast, slow = StreamLm(models[1])(*tensors, states[1]), StreamLm(models[0])(*tensors, states[0])
    assert fast.state.h.shape[2] == 2  # the paired path ran, on the halves of the 2B-row state
    torch.testing.assert_close(fast.forward_nll, slow.forward_nll, rtol=1e-10, atol=0)
    torch.testing.assert_close(fast.backward_nll, slow.backward_nll, rtol=1e-10, atol=0)


def _random_lm(vocab, seed=5):
    from elmo_model.train.loop import new_model

    config = TrainConfig(mode="stream", seed=seed, dropout=0.2, model_overrides=dict(lstm_dim=16, projection_dim=8))
    return new_model(config, vocab).double()


def test_stream_validation_with_one_stream_is_the_stream_measure(vocab):
    """One stream, any window: exactly `elmo eval perplexity --mode stream` (independent code:
    one sequence, state carried window to window, F.cross_entropy)."""
    from elmo_model.model.chars import BOS_TOKEN, EOS_TOKEN
    from elmo_model.eval.perplexity import stream_perplexity
    from elmo_model.train.stream import stream_validation_nll

    lm = _random_lm(vocab)
    lm.train()  # validation must switch dropout off and restore the mode
    expected = stream_perplexity(lm, vocab, SENTENCES, window=100)
    lm.train()
    sequences = [[BOS_TOKEN, *s, EOS_TOKEN] for s in SENTENCES]
    for window in (3, 7, 50):
        fwd, bwd, n_fwd, n_bwd = stream_validation_nll(lm, sequences, vocab, window, 1, 0, 1, max_chars=50)
        assert lm.training
        assert n_fwd == n_bwd == sum(len(s) + 1 for s in SENTENCES)
        # (the perplexity module reports through float32 tensors)
        assert np.exp(fwd / n_fwd) == pytest.approx(expected["perplexity_forward"], rel=1e-6)
        assert np.exp(bwd / n_bwd) == pytest.approx(expected["perplexity_backward"], rel=1e-6)


def test_stream_validation_splits_into_segments_read_once_each(vocab):
    """Several streams over two workers: each segment is scored once, as its own stream from a
    zero state (a direct sum over each segment with the perplexity module's window loop), and the
    workers' shares add up to it."""
    from elmo_model.model.chars import BOS_TOKEN, EOS_TOKEN
    from elmo_model.eval.perplexity import _direction_nll
    from elmo_model.train.stream import stream_validation_nll

    lm = _random_lm(vocab).eval()
    sequences = [[BOS_TOKEN, *s, EOS_TOKEN] for s in SENTENCES]
    stream = _joined(sequences)
    n_streams, window = 3, 4
    length = len(stream) // n_streams
    expected = [0.0, 0.0, 0, 0]
    for j in range(n_streams):
        segment = stream[j * length : (j + 1) * length]
        ids = torch.from_numpy(vocab.encode(segment))
        starts = list(range(0, length, window))
        with torch.no_grad():
            f, nf = _direction_nll(lm, segment, ids, starts, window, 50, True, vocab)
            b, nb = _direction_nll(lm, segment, ids, starts[::-1], window, 50, False, vocab)
        expected = [expected[0] + f, expected[1] + b, expected[2] + nf, expected[3] + nb]
    shares = [stream_validation_nll(lm, sequences, vocab, window, n_streams, r, 2, max_chars=50) for r in (0, 1)]
    got = [shares[0][k] + shares[1][k] for k in range(4)]
    assert got[2:] == expected[2:] and got[2] > 0
    assert got[0] == pytest.approx(expected[0], rel=1e-9) and got[1] == pytest.approx(expected[1], rel=1e-9)


def test_stream_validation_on_a_text_shorter_than_the_streams(vocab):
    """Too short for the streams asked for: fewer streams, a shorter window — never an error."""
    from elmo_model.model.chars import BOS_TOKEN, EOS_TOKEN
    from elmo_model.eval.perplexity import stream_perplexity
    from elmo_model.train.stream import stream_validation_nll

    lm = _random_lm(vocab).eval()
    short = [SENTENCES[-1]]  # <S> a cat ran </S>: 5 tokens
    fwd, bwd, n_fwd, n_bwd = stream_validation_nll(lm, [[BOS_TOKEN, *short[0], EOS_TOKEN]], vocab, 20, 32, 0, 2,
                                                   max_chars=50)
    expected = stream_perplexity(lm, vocab, short)
    assert n_fwd == n_bwd == 4
    assert np.exp(fwd / n_fwd) == pytest.approx(expected["perplexity_forward"], rel=1e-6)
    assert np.exp(bwd / n_bwd) == pytest.approx(expected["perplexity_backward"], rel=1e-6)
    assert stream_validation_nll(lm, [[BOS_TOKEN, *short[0], EOS_TOKEN]], vocab, 20, 32, 1, 2, 50) == (0.0, 0.0, 0, 0)


def test_stream_mode_run_validates_in_the_stream_measure(vocab):
    """A stream-mode run's validation rows are the stream measure of the model at that step (with
    one stream: `elmo eval perplexity --mode stream`), and validating does not change the training
    (same losses as a run without held-out text: the carried training state is left alone)."""
    from elmo_model.eval.perplexity import stream_perplexity

    config = TrainConfig(mode="stream", batch_size=1, max_tokens=5, steps=6, log_every=1, eval_every=3,
                         dropout=0.1, seed=2, model_overrides=dict(lstm_dim=16, projection_dim=8))
    held_out = [s.split() for s in ["the cat sat on the log", "a dog ran on the mat", "the mat saw a cat"]]
    rows: list[dict] = []
    trainer = train_in_process(config, SENTENCES, vocab, valid_sentences=held_out, on_metrics=rows.append)
    plain: list[float] = []
    train_in_process(config, SENTENCES, vocab, on_metrics=lambda m: plain.append(m["loss"]))
    np.testing.assert_allclose([r["loss"] for r in rows], plain, rtol=1e-6)
    expected = stream_perplexity(trainer.model, vocab, held_out)
    assert [r["step"] for r in rows if "valid_perplexity" in r] == [3, 6]
    assert rows[-1]["valid_perplexity_forward"] == pytest.approx(expected["perplexity_forward"], rel=1e-5)
    assert rows[-1]["valid_perplexity_backward"] == pytest.approx(expected["perplexity_backward"], rel=1e-5)
