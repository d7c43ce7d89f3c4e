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
import sys

import torch

from elmo_model.perplexity import stream_perplexity


@torch.no_grad()
def main() -> None:
    from pipelines.commands.eval import load_lm

    torch.set_num_threads(1)
    lm, vocab = load_lm(sys.argv[1] if len(sys.argv) > 1 else "runs/ptb-cpu/model")
    sentences = [line.split() for line in open("data/cache/ptb/test.txt") if line.split()]
    row = stream_perplexity(lm, vocab, sentences, window=100, sentence_starts=True)
    print(json.dumps({"format": "<S> s </S> <S> s' </S>, boundary steps not scored", **row}))


if __name__ == "__main__":
    main()
