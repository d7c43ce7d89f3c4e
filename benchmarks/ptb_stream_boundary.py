"""PTB test perplexity in the stream format that stream training uses: a one-off diagnostic.

``python -m benchmarks.ptb_stream_boundary [MODEL]`` (default ``runs/ptb-cpu/model``). The test
set as one stream ``<S> s1 </S> <S> s2 </S> …`` with the state carried across windows of 100;
the ``</S> → <S>`` step (forward) and the ``<S> → </S>`` step (backward) are not scored, so each
direction scores the same targets as ``elmo eval perplexity`` (every word plus one ``</S>``
forward, one ``<S>`` backward, per sentence). README "Quality" explains why this differs from
``--mode stream`` (the literature's ``</S>``-only stream).
"""

from __future__ import annotations

import json
import math
import sys

import torch
from torch.nn import functional as F

from elmo_model.chars import BOS_TOKEN, EOS_TOKEN, sentence_char_ids

WINDOW = 100


def direction_nll(lm, vocab, stream: list[str], forward: bool) -> tuple[float, int]:
    """Summed NLL and target count of one direction, windows in reading order, state carried."""
    ids = torch.from_numpy(vocab.encode(stream))
    max_chars = lm.bilm.options.max_characters_per_token
    starts = list(range(0, len(stream), WINDOW))
    state, total, count = None, 0.0, 0
    for start in starts if forward else starts[::-1]:
        end = min(start + WINDOW, len(stream))
        chars = torch.from_numpy(sentence_char_ids(stream[start:end], max_chars=max_chars)).long()[None]
        out = lm.bilm(chars, state)
        state = out.state
        hidden = out.direction_outputs(-1)[0 if forward else 1][0]
        positions = torch.arange(start, end)
        targets = positions + (1 if forward else -1)
        keep = (targets >= 0) & (targets < len(stream))
        source, target = ids[positions], ids[targets.clamp(0, len(stream) - 1)]
        boundary = (source == vocab.eos) & (target == vocab.bos) if forward else (source == vocab.bos) & (target == vocab.eos)
        keep &= ~boundary
        logits = F.linear(hidden[keep], lm.softmax.weight, lm.softmax.bias)
        total += float(F.cross_entropy(logits, ids[targets[keep]], reduction="sum"))
        count += int(keep.sum())
    return total, count


@torch.no_grad()
def main() -> None:
    from pipelines.commands.eval import load_lm

    torch.set_num_threads(1)
    lm, vocab = load_lm(sys.argv[1] if len(sys.argv) > 1 else "runs/ptb-cpu/model")
    lm.eval()
    sentences = [line.split() for line in open("data/cache/ptb/test.txt") if line.split()]
    stream = [t for s in sentences for t in (BOS_TOKEN, *s, EOS_TOKEN)]
    row = {"format": "<S> s </S> <S> s' </S>, boundary steps not scored"}
    for name, forward in (("forward", True), ("backward", False)):
        nll, n = direction_nll(lm, vocab, stream, forward)
        row |= {f"n_{name}": n, f"perplexity_{name}": math.exp(nll / n)}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
