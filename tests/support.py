"""Builders and runners shared by the tests."""

import os
import subprocess
import sys

import torch

from elmo_model.model.bilm import BiLm
from elmo_model.model.options import ElmoOptions


def random_bilm(seed: int = 0, **overrides) -> BiLm:
    """A fixture-shaped biLM with random weights (scaled so that clipping really happens)."""
    shape = dict(
        filters=((1, 4), (2, 8), (3, 16), (4, 32)),
        char_embedding_dim=4,
        n_highway=2,
        lstm_dim=32,
        projection_dim=16,
        n_layers=2,
        cell_clip=3.0,
        proj_clip=3.0,
        use_skip_connections=True,
    )
    shape.update(overrides)
    torch.manual_seed(seed)
    model = BiLm(ElmoOptions(**shape))
    with torch.no_grad():
        for p in model.token_encoder.parameters():
            p.normal_(0, 0.2)
        for p in [*model.forward_layers.parameters(), *model.backward_layers.parameters()]:
            p.normal_(0, 0.5)
        model.token_encoder.char_embedding.weight[0].zero_()
    return model.eval()


# The subcommands that start (or join) a Ray when they run; a test running one must be marked ray.
RAY_COMMANDS = {"vocab", "train", "embed", "demo", "submit"}


def check_ray_allowed(args) -> None:
    """Fail a test not marked ``ray`` that is about to run an ``elmo`` command starting Ray."""
    if args and args[0] in RAY_COMMANDS and "--help" not in args and os.environ.get("ELMO_TEST_RAY_ALLOWED") == "0":
        raise AssertionError(f"elmo {args[0]} starts Ray: mark the test ray")


def run_elmo(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `elmo` command line (the installed package's entry point) in a subprocess."""
    check_ray_allowed(args)
    merged = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=merged)


def random_lm(sentences, seed: int = 1):
    """A tiny LM (``TrainConfig(seed=seed)``) over the words of ``sentences``, its LSTM weights
    big enough that the carried state matters: ``(lm in eval mode, vocabulary)``."""
    from collections import Counter

    from elmo_model.formats.vocab import Vocabulary
    from elmo_model.train.config import TrainConfig
    from elmo_model.train.loop import new_model

    vocab = Vocabulary.from_counts(Counter(t for s in sentences for t in s))
    lm = new_model(TrainConfig(seed=seed), vocab)
    with torch.no_grad():
        for p in [*lm.bilm.forward_layers.parameters(), *lm.bilm.backward_layers.parameters()]:
            p.normal_(0, 0.3)
    return lm.eval(), vocab


def odd_char_ids(n_rows: int = 40, seed: int = 0):
    """Char ids ``(n_rows, 50)`` that are not all well-formed tokens: random lengths (full rows and
    all-padding rows among them), an all-zero row 0 and a real char after padding in row 1; and
    the generator, to draw more from."""
    from elmo_model.model.token_encoder import PAD_ID

    g = torch.Generator().manual_seed(seed)
    ids = torch.full((n_rows, 50), PAD_ID, dtype=torch.long)
    for row in range(n_rows):
        n = int(torch.randint(0, 51, (1,), generator=g))
        ids[row, :n] = torch.randint(1, 262, (n,), generator=g)
    ids[0] = 0
    ids[1, 10] = 5
    return ids, g

