"""Quality per compute: the project's trainer vs a plain PyTorch biLM, same wall time, held-out perplexity.

``python -m benchmarks.train_quality_bench [--minutes M] [--split valid|test] [--quick]``

Two models train in one process on one torch thread: the project's (``LmTrainer`` on
``BiLmWithSoftmax``, the default fast training path) and :class:`ReferenceBiLm`, a plain PyTorch
biLM written here without the project's model code — char embedding → ``Conv1d`` per filter
width over every character position, max-pool, ReLU → highway → linear projection → per direction
two ``nn.LSTM(proj_size=…)`` layers with a residual connection around the second → one full
softmax (``nn.Linear`` + ``F.cross_entropy``) shared by both directions, dropout at the same
places (every LSTM layer's input and the top output). Both read the same batches in the same
order (PTB train sentences → windows of ``max_tokens`` → length-bucketed shuffled batches, from
:mod:`elmo_model.train.batching`) with the same optimizer settings (AdamW, constant learning rate,
gradient-norm clipping). The next step always goes to the model that has been charged less
time, so steps interleave finely and machine load hits both alike; each is charged only its own
``train_step`` (batch → tensors → forward → backward → clip → optimizer step), and each stops at
the budget. Then both are evaluated per sentence (each sentence alone, ``<S> … </S>``, zero
state, full softmax: targets = words + ``</S>`` forward, ``<S>`` + words backward) on PTB valid
(or test). Goal: project ≤ 0.8 × reference perplexity at equal time.

Differences, by design of "plain PyTorch": ``nn.LSTM`` has no cell or projection clipping (the
project clips both at 3, as bilm-tf), no forget-gate bias of +1, and PyTorch's default
initialisation (the project: bilm-tf's); the reference's highway gate bias starts at −2 (Kim et
al.'s and the project's choice). The reference convolves every character position of every token
in the batch; the project convolves each distinct token of the batch once, trimmed to its length.

``--quick``: a tiny model for a few seconds each on the demo corpus (a smoke test, run by the test
suite). Without PTB in ``data/cache/ptb`` (``python -m tools.corpora.fetch ptb``) the full run falls
back to ``pipelines/data/demo_corpus.txt`` (real English text; the row says which corpus it used).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.machine import machine_info
from elmo_model.train.batching import bucketed_batches, collate, make_windows
from elmo_model.eval.perplexity import sentence_perplexity
from elmo_model.train.config import TrainConfig
from elmo_model.train.loop import new_model
from elmo_model.train.trainer import LmTrainer, unigram_perplexity
from elmo_model.formats.vocab import Vocabulary

ROOT = Path(__file__).resolve().parent.parent
PTB_DIR = ROOT / "data" / "cache" / "ptb"
DEMO_CORPUS = ROOT / "pipelines" / "data" / "demo_corpus.txt"
RESULTS = Path(__file__).parent / "results"
MAX_CHARS = 50
# nn.LSTM(proj_size=…) on CPU says once that oneDNN lacks projections and it uses its own kernel.
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")

# The PTB char-CNN with 256 → 64 LSTMs (train_ptb_cpu.toml's shape until the 2-hour run took 512 → 256:
# a 10-minute comparison wants the cheaper one) and a tiny one for --quick.
PTB_MODEL = dict(filters=[[1, 25], [2, 50], [3, 75], [4, 100], [5, 125], [6, 150]], char_embedding_dim=15,
                 n_highway=1, lstm_dim=256, projection_dim=64, n_layers=2, use_skip_connections=True)
QUICK_MODEL = dict(filters=[[1, 8], [2, 8], [3, 16]], char_embedding_dim=4, n_highway=1, lstm_dim=32,
                   projection_dim=16, n_layers=2, use_skip_connections=True)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What both models train with (the PTB config's batch shape and optimizer, a constant rate)."""

    model: dict
    learning_rate: float = 0.004
    clip_norm: float = 10.0
    weight_decay: float = 0.0
    dropout: float = 0.1
    batch_size: int = 32
    max_tokens: int = 40
    seed: int = 0

    def train_config(self) -> TrainConfig:
        """The project's config; a constant rate without warm-up where the config has schedules."""
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        extra = {k: v for k, v in dict(schedule="constant", warmup_steps=0, mode="sentence").items() if k in fields}
        return TrainConfig(model="small", model_overrides=self.model, optimizer="adamw",
                           learning_rate=self.learning_rate, clip_norm=self.clip_norm,
                           weight_decay=self.weight_decay, dropout=self.dropout, batch_size=self.batch_size,
                           max_tokens=self.max_tokens, softmax="full", steps=10**9, seed=self.seed, **extra)


# ------------------------------------------------------------------------------------------------
# The reference: plain PyTorch, independent of elmo_model's model code.


class ReferenceCharCnn(nn.Module):
    """Char ids ``(B, T, 50)`` (0 = no token) → token vectors ``(B, T, out_dim)``."""

    def __init__(self, filters: Sequence[Sequence[int]], char_dim: int, n_highway: int, out_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(262, char_dim, padding_idx=0)
        self.convolutions = nn.ModuleList(nn.Conv1d(char_dim, n, w) for w, n in filters)
        width = sum(n for _, n in filters)
        self.highways = nn.ModuleList(nn.Linear(width, 2 * width) for _ in range(n_highway))
        for highway in self.highways:
            nn.init.constant_(highway.bias[:width], -2.0)  # gate half: start near the identity
        self.projection = nn.Linear(width, out_dim)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        batch, steps, chars = char_ids.shape
        x = self.embedding(char_ids.reshape(-1, chars)).transpose(1, 2)  # (B·T, char_dim, 50)
        x = torch.relu(torch.cat([conv(x).amax(dim=2) for conv in self.convolutions], dim=1))
        for highway in self.highways:
            gate, candidate = highway(x).chunk(2, dim=1)
            gate = torch.sigmoid(gate)
            x = gate * torch.relu(candidate) + (1 - gate) * x
        return self.projection(x).reshape(batch, steps, -1)


class ReferenceLstmStack(nn.Module):
    """``nn.LSTM`` layers (projected when ``proj < cell``), a residual around every layer but the first."""

    def __init__(self, dim: int, cell: int, n_layers: int, skip: bool, dropout: float) -> None:
        super().__init__()
        proj = dim if dim < cell else 0
        self.layers = nn.ModuleList(nn.LSTM(dim, cell, batch_first=True, proj_size=proj) for _ in range(n_layers))
        self.skip, self.dropout = skip, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, lstm in enumerate(self.layers):
            out, _ = lstm(F.dropout(x, self.dropout, self.training))
            x = out + x if (k > 0 and self.skip) else out
        return x


def reverse_each(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse every row's first ``lengths[b]`` steps of ``(B, T, D)``; the rest stays in place."""
    t = torch.arange(x.shape[1]).unsqueeze(0)
    index = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)
    return x.gather(1, index.unsqueeze(2).expand_as(x))


class ReferenceBiLm(nn.Module):
    """Forward and backward LMs over one char-CNN, one softmax shared by both directions."""

    def __init__(self, model: dict, n_vocab: int, dropout: float) -> None:
        super().__init__()
        dim, cell, n_layers = model["projection_dim"], model["lstm_dim"], model["n_layers"]
        skip = bool(model.get("use_skip_connections", False))
        self.encoder = ReferenceCharCnn(model["filters"], model["char_embedding_dim"], model["n_highway"], dim)
        self.forward_lm = ReferenceLstmStack(dim, cell, n_layers, skip, dropout)
        self.backward_lm = ReferenceLstmStack(dim, cell, n_layers, skip, dropout)
        self.softmax = nn.Linear(dim, n_vocab)
        self.dropout = dropout

    def forward(self, char_ids: torch.Tensor, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Summed NLL forward, backward, and targets per direction. Tokens are left-aligned."""
        mask = char_ids[:, :, 0] > 0
        lengths = mask.sum(dim=1)
        tokens = self.encoder(char_ids)
        forward_out = self.forward_lm(tokens)
        backward_out = reverse_each(self.backward_lm(reverse_each(tokens, lengths)), lengths)
        valid = mask[:, 1:]
        nll = []
        for hidden, targets in ((forward_out[:, :-1][valid], token_ids[:, 1:][valid]),
                                (backward_out[:, 1:][valid], token_ids[:, :-1][valid])):
            hidden = F.dropout(hidden, self.dropout, self.training)
            nll.append(F.cross_entropy(self.softmax(hidden), targets, reduction="sum"))
        return nll[0], nll[1], int(valid.sum())


class ReferenceTrainer:
    """AdamW with the settings' constant rate, clipping by global norm, one step per batch."""

    def __init__(self, model: ReferenceBiLm, settings: Settings) -> None:
        self.model, self.settings = model, settings
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                           weight_decay=settings.weight_decay)
        self.step = 0

    def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        self.model.train()
        char_ids = torch.as_tensor(batch["char_ids"]).long()
        token_ids = torch.as_tensor(batch["token_ids"]).long()
        forward_nll, backward_nll, n = self.model(char_ids, token_ids)
        loss = 0.5 * (forward_nll + backward_nll) / max(n, 1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip_norm)
        self.optimizer.step()
        self.step += 1
        return {"loss": float(loss.detach()), "n_targets": n}


@torch.no_grad()
def reference_sentence_perplexity(model: ReferenceBiLm, vocab: Vocabulary, sentences: Sequence[Sequence[str]],
                                  batch_size: int = 64) -> dict[str, float]:
    """Per-sentence perplexity of the reference: each sentence alone, ``<S> … </S>``, no dropout."""
    model.eval()
    windows = [w for w in make_windows(sentences, 10**6)]  # one window per sentence
    windows.sort(key=len)
    fwd = bwd = 0.0
    n = 0
    for start in range(0, len(windows), batch_size):
        batch = collate(windows[start : start + batch_size], vocab, MAX_CHARS)
        f, b, k = model(torch.from_numpy(batch["char_ids"]).long(), torch.from_numpy(batch["token_ids"]))
        fwd, bwd, n = fwd + float(f), bwd + float(b), n + k
    return {"perplexity_forward": math.exp(fwd / n), "perplexity_backward": math.exp(bwd / n), "n_targets": n}


# ------------------------------------------------------------------------------------------------
# Data and the interleaved run.


def read_token_lists(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.split()]


def load_corpus(split: str, quick: bool) -> tuple[str, list[list[str]], list[list[str]]]:
    """``(name, train sentences, held-out sentences)``: PTB when fetched, else the demo corpus."""
    if not quick and (PTB_DIR / "train.txt").exists():
        return f"PTB ({split})", read_token_lists(PTB_DIR / "train.txt"), read_token_lists(PTB_DIR / f"{split}.txt")
    sentences = read_token_lists(DEMO_CORPUS)
    cut = len(sentences) * 9 // 10
    if quick:
        return "demo corpus (quick)", sentences[:400], sentences[cut : cut + 40]
    return "demo corpus (PTB not fetched)", sentences[:cut], sentences[cut:]


class BatchCursor:
    """One model's position in the shared, deterministic batch order (epoch plans from the seed)."""

    def __init__(self, windows: list[list[str]], vocab: Vocabulary, settings: Settings) -> None:
        self.windows, self.vocab, self.settings = windows, vocab, settings
        self._batches = self._iterate()

    def _iterate(self) -> Iterator[dict[str, np.ndarray]]:
        epoch = 0
        while True:
            rng = np.random.default_rng([self.settings.seed, epoch])
            for indices in bucketed_batches(self.windows, self.settings.batch_size, rng):
                yield collate([self.windows[i] for i in indices], self.vocab, MAX_CHARS)
            epoch += 1

    def next(self) -> dict[str, np.ndarray]:
        return next(self._batches)


def run(seconds: float, split: str = "valid", quick: bool = False, settings: Settings | None = None,
        log_every: float = 60.0) -> dict:
    """Train both for ``seconds`` of their own time each, evaluate, return one result row."""
    settings = settings or Settings(QUICK_MODEL if quick else PTB_MODEL)
    corpus, train, held_out = load_corpus(split, quick)
    vocab = Vocabulary.from_counts(Counter(t for s in train for t in s))
    windows = make_windows(train, settings.max_tokens)
    config = settings.train_config()
    project = LmTrainer(new_model(config, vocab), config)  # the default (fast) training path
    torch.manual_seed(settings.seed)
    reference = ReferenceTrainer(ReferenceBiLm(settings.model, len(vocab), settings.dropout), settings)
    contenders = {"project": project, "reference": reference}
    cursors = {name: BatchCursor(windows, vocab, settings) for name in contenders}
    charged = {name: 0.0 for name in contenders}
    tokens = {name: 0 for name in contenders}
    losses: dict[str, list[float]] = {name: [] for name in contenders}
    next_log = log_every
    while True:
        running = [name for name in contenders if charged[name] < seconds]
        if not running:
            break
        name = min(running, key=charged.__getitem__)
        batch = cursors[name].next()  # collating is not charged: it is the same work for both
        start = time.perf_counter()
        metrics = contenders[name].train_step(batch)
        charged[name] += time.perf_counter() - start
        tokens[name] += int(metrics["n_targets"])
        losses[name].append(float(metrics["loss"]))
        if min(charged.values()) >= next_log:
            print(f"[quality] {next_log:.0f} s each: " + ", ".join(
                f"{n} step {contenders[n].step} loss {np.mean(losses[n][-50:]):.3f}" for n in contenders), flush=True)
            next_log += log_every
    evaluation_start = time.perf_counter()
    project_eval = sentence_perplexity(project.model, vocab, held_out)
    reference_eval = reference_sentence_perplexity(reference.model, vocab, held_out)
    if project_eval["n_targets"] != reference_eval["n_targets"]:
        raise AssertionError(f"target counts differ: {project_eval['n_targets']} vs {reference_eval['n_targets']}")
    train_ids = np.concatenate([vocab.encode([*s, "</S>"]) for s in train])
    held_ids = np.concatenate([vocab.encode([*s, "</S>"]) for s in held_out])
    row = {
        "benchmark": "quality per compute", "corpus": corpus, "budget_s_each": seconds,
        "model": "quick" if quick else "ptb", "vocab": len(vocab),
        "steps_project": project.step, "steps_reference": reference.step,
        "train_s_project": charged["project"], "train_s_reference": charged["reference"],
        "tokens_per_s_project": tokens["project"] / charged["project"],
        "tokens_per_s_reference": tokens["reference"] / charged["reference"],
        "final_train_loss_project": float(np.mean(losses["project"][-50:])),
        "final_train_loss_reference": float(np.mean(losses["reference"][-50:])),
        "ppl_fwd_project": project_eval["perplexity_forward"], "ppl_bwd_project": project_eval["perplexity_backward"],
        "ppl_fwd_reference": reference_eval["perplexity_forward"],
        "ppl_bwd_reference": reference_eval["perplexity_backward"],
        "ratio_fwd": project_eval["perplexity_forward"] / reference_eval["perplexity_forward"],
        "ratio_bwd": project_eval["perplexity_backward"] / reference_eval["perplexity_backward"],
        "unigram_add_one": unigram_perplexity(train_ids, held_ids, len(vocab)),
        "held_out_targets": project_eval["n_targets"], "eval_s": time.perf_counter() - evaluation_start,
        "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "model"},
    }
    return row


QUICK_SECONDS = 2.0  # per model in --quick mode
ROWS_SECONDS = 300.0  # per model under ``benchmarks.run --all`` (the CLI's default is 10 minutes)


def rows(quick: bool = False) -> list[dict]:
    """For :mod:`benchmarks.run` ``--all``: 5 minutes of training per model (``--quick``: 2 s, tiny)."""
    return [run(QUICK_SECONDS if quick else ROWS_SECONDS, quick=quick)]


def markdown(row: dict, machine: dict) -> str:
    """A short report of one run."""
    return "\n".join([
        f"Quality per compute ({row['corpus']}, per-sentence perplexity), {row['budget_s_each']:.0f} s of "
        f"training each, one process, steps interleaved; {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"torch {machine.get('torch')}, {row['threads']} thread(s), load average at end {machine.get('load_avg_1m')}.",
        "",
        "| model | steps | train tokens/s | forward ppl | backward ppl |",
        "|---|---|---|---|---|",
        f"| project (LmTrainer) | {row['steps_project']:,} | {row['tokens_per_s_project']:,.0f} | "
        f"{row['ppl_fwd_project']:.1f} | {row['ppl_bwd_project']:.1f} |",
        f"| plain PyTorch reference | {row['steps_reference']:,} | {row['tokens_per_s_reference']:,.0f} | "
        f"{row['ppl_fwd_reference']:.1f} | {row['ppl_bwd_reference']:.1f} |",
        f"| ratio project / reference | | {row['tokens_per_s_project'] / row['tokens_per_s_reference']:.2f} | "
        f"**{row['ratio_fwd']:.3f}** | **{row['ratio_bwd']:.3f}** |",
        "",
        f"Add-one unigram on the same held-out text: {row['unigram_add_one']:.1f}. Settings: {row['settings']}.",
        "",
    ])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training time per model (default 10)")
    parser.add_argument("--split", choices=("valid", "test"), default="valid", help="held-out PTB split")
    parser.add_argument("--quick", action="store_true", help="tiny model, a few seconds each (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write train_quality.{json,md} here (default: benchmarks/results/ unless --quick)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    row = run(QUICK_SECONDS if args.quick else 60.0 * args.minutes, split=args.split, quick=args.quick)
    machine = machine_info()
    result = {"machine": machine, "rows": [row]}
    out = args.out or (None if args.quick else RESULTS)
    table = markdown(row, machine)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_quality.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "train_quality.md").write_text(table)
    print(table)
    return result


if __name__ == "__main__":
    main()
