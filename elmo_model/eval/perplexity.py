"""Language-model perplexity with the full softmax, three ways.

- ``sentence``: every sentence on its own, ``<S> w1 … wn </S>``, LSTM state starting from zero —
  how this project trains and embeds (stateless). Targets: ``w1 … wn </S>`` forward,
  ``<S> w1 … wn`` backward.
- ``stream``: the test set as one continuous stream with the LSTM state carried from window to
  window (forward: windows in order; backward: in reverse order), as Mikolov's PTB setup and Kim
  et al. 2016 measure it — in the format ELMo models read: every sentence keeps its ``<S> … </S>``,
  ``<S> s1 </S> <S> s2 </S> …``, as stream training builds it, and the step between a ``</S>`` and
  the next ``<S>`` is not scored (forward ``</S> → <S>``, backward ``<S> → </S>``). The inserted
  ``<S>`` follows from the text already read, so this scores the same targets, with the same
  context, as the literature's stream.
- ``stream-plain``: the literature's stream token for token, ``<S> s1 </S> s2 </S> …`` (``</S>``
  plays ``<eos>``; no ``<S>`` between sentences) — what a model that never saw that format makes
  of it; for comparison with models trained that way.

All count the same targets per direction: every word plus one ``</S>`` per sentence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from elmo_model.train.batching import collate, make_windows
from elmo_model.model.chars import BOS_TOKEN, EOS_TOKEN, sentence_char_ids
from elmo_model.errors import ElmoError
from elmo_model.model.language_model import BiLmWithSoftmax, LmLoss
from elmo_model.formats.vocab import Vocabulary

PERPLEXITY_MODES = ("sentence", "stream", "stream-plain")


@torch.no_grad()
def sentence_perplexity(lm: BiLmWithSoftmax, vocab: Vocabulary, sentences: Sequence[Sequence[str]],
                        batch_size: int = 64, max_tokens: int = 400) -> dict[str, float]:
    lm.eval()
    fwd = bwd = 0.0
    n = 0
    windows = make_windows(sentences, max_tokens)
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))  # little padding
    max_chars = lm.bilm.options.max_characters_per_token
    for start in range(0, len(order), batch_size):
        batch = collate([windows[i] for i in order[start : start + batch_size]], vocab, max_chars)
        loss = lm(torch.from_numpy(batch["char_ids"]).long(), torch.from_numpy(batch["token_ids"]))
        fwd, bwd, n = fwd + float(loss.forward_nll), bwd + float(loss.backward_nll), n + loss.n_targets
    return LmLoss(torch.tensor(fwd), torch.tensor(bwd), n).metrics()


@torch.no_grad()
def stream_perplexity(lm: BiLmWithSoftmax, vocab: Vocabulary, sentences: Sequence[Sequence[str]],
                      window: int = 100, plain: bool = False) -> dict[str, float]:
    """The ``stream`` measure, or with ``plain`` the ``stream-plain`` one (module docstring)."""
    lm.eval()
    if plain:
        stream = [BOS_TOKEN] + [t for s in sentences if s for t in (*s, EOS_TOKEN)]
    else:
        stream = [t for s in sentences if s for t in (BOS_TOKEN, *s, EOS_TOKEN)]
    ids = torch.from_numpy(vocab.encode(stream))
    max_chars = lm.bilm.options.max_characters_per_token
    starts = list(range(0, len(stream), window))
    boundary = None if plain else vocab
    fwd, n = _direction_nll(lm, stream, ids, starts, window, max_chars, True, boundary)
    bwd, _ = _direction_nll(lm, stream, ids, starts[::-1], window, max_chars, False, boundary)
    return LmLoss(torch.tensor(fwd), torch.tensor(bwd), n).metrics()


def _direction_nll(lm: BiLmWithSoftmax, stream: list[str], ids: torch.Tensor, starts: list[int],
                   window: int, max_chars: int, forward: bool, boundary_of: Vocabulary | None = None) -> tuple[float, int]:
    """Summed NLL and target count of one direction over the stream, windows visited in ``starts``
    order; with ``boundary_of`` (a vocabulary), the step between ``</S>`` and the next ``<S>`` is not scored."""
    state, total, count = None, 0.0, 0
    for start in starts:
        end = min(start + window, len(stream))
        chars = torch.from_numpy(sentence_char_ids(stream[start:end], max_chars=max_chars)).long()[None]
        out = lm.bilm(chars, state)
        state = out.state
        hidden = out.direction_outputs(-1)[0 if forward else 1][0]  # (L, proj)
        positions = torch.arange(start, end)
        targets = positions + (1 if forward else -1)
        keep = (targets >= 0) & (targets < len(stream))
        if boundary_of is not None:
            source, target = ids[positions], ids[targets.clamp(0, len(stream) - 1)]
            before, after = (boundary_of.eos, boundary_of.bos) if forward else (boundary_of.bos, boundary_of.eos)
            keep &= ~((source == before) & (target == after))
        logits = F.linear(hidden[keep], lm.softmax.weight, lm.softmax.bias)
        total += float(F.cross_entropy(logits, ids[targets[keep]], reduction="sum"))
        count += int(keep.sum())
    return total, count


def perplexity(lm: BiLmWithSoftmax, vocab: Vocabulary, sentences: Sequence[Sequence[str]],
               mode: str = "sentence", window: int = 100) -> dict[str, float]:
    """Forward, backward and mean perplexity in ``mode`` (see the module docstring)."""
    if not any(sentences):
        raise ElmoError("no sentences to measure perplexity on")
    if mode not in PERPLEXITY_MODES:
        raise ElmoError(f"unknown perplexity mode {mode!r}; choose one of {', '.join(PERPLEXITY_MODES)}")
    if mode == "sentence":
        return sentence_perplexity(lm, vocab, sentences)
    if window < 1:
        raise ElmoError(f"window must be a positive number of tokens, got {window}")
    return stream_perplexity(lm, vocab, sentences, window, plain=mode == "stream-plain")
