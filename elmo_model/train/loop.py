"""The training loop — one for every way of running it.

:class:`TrainingLoop` trains one worker's share of every step: in this process it is the only
worker (:func:`train_in_process`); on Ray Train each of W workers runs it
(:mod:`pipelines.train.worker` is a thin adapter). What differs is behind three small interfaces:

- :class:`Collective` — rank, world size, sums and gathers across workers
  (:class:`SingleProcess`, or :class:`TorchDistributed` over an initialised process group);
- :class:`RunHost` — where checkpoints go (``save``, rank 0 only) and where progress rows go
  (``report``, every rank at the same steps), plus a hook before each step;
- :class:`TrainData` — the ordered items as pools (a list here, Arrow tables of a Ray dataset there)
  and the validation batches.

Everything else is the same code: the data order (:mod:`elmo_model.train.batch_plan` in sentence mode,
:mod:`elmo_model.train.stream` in stream mode), the learning-rate schedule, the logged rows (pooled over
workers), evaluation, what a checkpoint holds (model, optimizer, step, data position, every
worker's generators and carried stream state, the metrics log) and so the exact-resume
guarantee: a run resumed from a checkpoint trains the same batches with the same dropout masks
and negatives as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from elmo_model.train.batch_plan import NO_TOKEN_LIMIT, BatchPlan, PoolReader, list_pools, ordered_items, rank_batches
from elmo_model.train.batching import Batch, collate, make_windows
from elmo_model.formats.checkpoint import load_checkpoint, save_checkpoint
from elmo_model.errors import ElmoError
from elmo_model.model.language_model import BiLmWithSoftmax, initialize_like_bilm_tf
from elmo_model.train.stream import TokenStreams, stream_validation_nll
from elmo_model.train.config import TrainConfig
from elmo_model.train.log import MetricsLog, progress_line
from elmo_model.train.trainer import LmTrainer, direction_metrics, local_counts
from elmo_model.formats.vocab import Vocabulary

log = logging.getLogger(__name__)


# ---- what differs between hosts -------------------------------------------------------------


class Collective(Protocol):
    rank: int
    world_size: int

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]: ...
    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]: ...


class SingleProcess:
    """The collective of a world of one."""

    rank, world_size = 0, 1

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        return list(values)

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [tensor]


class TorchDistributed:
    """``torch.distributed`` (gloo or nccl) after whoever started the workers initialised it."""

    def __init__(self, device: torch.device) -> None:
        import torch.distributed as dist

        self.dist, self.device = dist, device
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        self.dist.all_reduce(tensor)
        return tensor.tolist()

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        local = tensor.to(self.device)
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        self.dist.all_gather(parts, local)
        return [p.cpu() for p in parts]


class RunHost(Protocol):
    def before_step(self, step: int) -> None: ...
    def save(self, payload: dict[str, Any], final: bool, metrics: MetricsLog) -> None: ...  # rank 0 only
    def report(self, row: dict[str, Any], checkpointed: bool, final: bool) -> None: ...  # every rank


@dataclasses.dataclass
class TrainData:
    """The ordered training items as pools (windows; whole ``<S> … </S>`` sentences in stream mode),
    their count, and this run's validation batches (window lists, corpus order; whole sentences in
    stream mode) if any."""

    read_epoch: PoolReader
    n_items: int
    valid_batches: Callable[[], Iterable[Sequence[Sequence[str]]]] | None = None


# ---- the loop ------------------------------------------------------------------------------


class TrainingLoop:
    """One worker's share of the run: restore, train, log, evaluate, checkpoint."""

    def __init__(self, trainer: LmTrainer, vocab: Vocabulary, data: TrainData, collective: Collective,
                 host: RunHost) -> None:
        self.trainer, self.config, self.vocab, self.data = trainer, trainer.config, vocab, data
        self.collective, self.host = collective, host
        self.rank, self.world = collective.rank, collective.world_size
        self.max_chars = trainer.model.bilm.options.max_characters_per_token
        self.metrics, self.finished = MetricsLog(), False
        self.base_step = self.base_position = 0
        self.elapsed_before = 0.0
        self.started = time.perf_counter()
        self.last_step_metrics: dict[str, float] = {}
        if data.n_items == 0:
            raise ElmoError("the training corpus is empty (no non-empty sentences)")
        self._reset_interval()

    # ---- state ----------------------------------------------------------------------------

    def position(self, step: int) -> int:
        """Sentence mode: the global batch trained first at ``step`` (0-based); stream mode: the stream step."""
        if self.config.mode == "stream":
            return step
        return self.base_position + (step - self.base_step) * self.world

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint payload (see :meth:`checkpoint_payload`)."""
        extra = payload["extra"]
        saved_world = int(extra.get("world_size", 1))
        if self.config.mode == "stream" and saved_world != self.world:
            raise ElmoError(f"stream mode continues only with the same number of workers: the checkpoint has "
                            f"{saved_world}, this run {self.world}")
        state = dict(payload)
        if extra.get("ranks") is not None and saved_world == self.world:
            state.update(extra["ranks"][self.rank])  # this worker's generators and carried state
        self.trainer.load_state_dict(state)
        if saved_world != self.world:  # fresh dropout streams for the new world (its batches differ anyway)
            self.trainer.rng.dropout.manual_seed(hash((self.config.seed, self.rank, self.trainer.step)) & 0x7FFF_FFFF)
        self.base_step, self.base_position = self.trainer.step, int(extra["position"])
        self.metrics = MetricsLog.load(extra["metrics"], self.trainer.step)
        self.elapsed_before = float(extra.get("elapsed_s", 0.0))
        self.finished = bool(extra.get("final")) and self.trainer.step >= self.config.steps
        if self.rank == 0:
            log.info("resumed at step %d (position %d)", self.trainer.step, self.base_position)

    def _per_rank_state(self) -> list[dict[str, Any]] | None:
        """Every worker's generators and carried state, gathered (a collective: all ranks call it)."""
        own = self.trainer.state_dict()
        gathered_rng = {k: self.collective.all_gather(v) for k, v in own["rng"].items()}
        stream = own.get("stream_state")
        gathered_stream = None if stream is None else {k: self.collective.all_gather(v) for k, v in stream.items()}
        if self.rank != 0:
            return None
        ranks = []
        for r in range(self.world):
            entry: dict[str, Any] = {"rng": {k: v[r] for k, v in gathered_rng.items()}}
            if gathered_stream is not None:
                entry["stream_state"] = {k: v[r] for k, v in gathered_stream.items()}
            ranks.append(entry)
        return ranks

    def checkpoint_payload(self, final: bool) -> dict[str, Any] | None:
        """What a checkpoint holds (rank 0; ``None`` elsewhere). A collective."""
        ranks = self._per_rank_state()
        if self.rank != 0:
            return None
        state = self.trainer.state_dict()
        state["extra"] = {"position": self.position(self.trainer.step), "world_size": self.world,
                          "mode": self.config.mode, "ranks": ranks, "metrics": self.metrics.state(),
                          "elapsed_s": self._elapsed(), "final": final}
        return state

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _reset_interval(self) -> None:
        self.interval_start = time.perf_counter()
        self.sums = [0.0, 0.0, 0.0, 0.0]  # forward NLL, backward NLL, forward and backward targets (this worker)

    # ---- data -----------------------------------------------------------------------------

    def _batches(self) -> Iterable[Batch]:
        config, step = self.config, self.trainer.step
        if config.mode == "stream":
            items = (item for pool in self.data.read_epoch() for item in pool.take(range(len(pool))))
            b = config.batch_size
            streams = TokenStreams(items, self.vocab, config.max_tokens, self.world * b,
                                   range(self.rank * b, (self.rank + 1) * b), self.max_chars)
            while True:
                yield streams.batch(step)
                step += 1
        plan = BatchPlan(self.data.n_items, config.batch_size, config.seed)
        for windows in rank_batches(plan, self.data.read_epoch, self.position(step), self.world, self.rank):
            yield collate(windows, self.vocab, self.max_chars)

    # ---- training -------------------------------------------------------------------------

    def run(self, stop_after: int | None = None) -> None:
        """Steps until ``config.steps`` (or ``stop_after`` steps of this call, then a checkpoint)."""
        config, trainer = self.config, self.trainer
        batches = iter(self._batches())
        done_here = 0
        while trainer.step < config.steps:
            if stop_after is not None and done_here >= stop_after:
                self._report({"step": trainer.step}, checkpoint=True, final=False)
                return
            self.host.before_step(trainer.step + 1)
            batch = next(batches)
            n_forward, n_backward = local_counts(batch)
            totals = self.collective.all_reduce_sum([n_forward, n_backward])
            metrics = trainer.train_step(batch, self.world, (int(totals[0]), int(totals[1])))
            self.sums = [self.sums[0] + metrics["loss_forward"] * n_forward,
                         self.sums[1] + metrics["loss_backward"] * n_backward,
                         self.sums[2] + n_forward, self.sums[3] + n_backward]
            self.last_step_metrics = metrics
            done_here += 1
            self._after_step(trainer.step)
        if not self.finished:
            self._finish()

    def _after_step(self, step: int) -> None:
        config = self.config
        final = step == config.steps
        logged = final or step % max(config.log_every, 1) == 0
        evaluated = self.data.valid_batches is not None and config.eval_every > 0 and step % config.eval_every == 0
        checkpointed = config.checkpoint_every > 0 and step % config.checkpoint_every == 0
        if final:
            self._finish()
        elif logged or evaluated or checkpointed:  # report() may be a barrier: only at these steps
            row = self._row(step, evaluated) if logged or evaluated else {"step": step}
            self._report(row, checkpoint=checkpointed, final=False)

    def _finish(self) -> None:
        """Final row (with validation), final checkpoint, report."""
        row = self._row(self.trainer.step, self.data.valid_batches is not None)
        self._report(row, checkpoint=True, final=True)
        self.finished = True

    def _report(self, row: dict[str, Any], checkpoint: bool, final: bool) -> None:
        if checkpoint:
            payload = self.checkpoint_payload(final)
            if payload is not None:
                self.host.save(payload, final, self.metrics)
        self.host.report(row, checkpoint, final)

    def _row(self, step: int, evaluate: bool) -> dict[str, Any]:
        """A metrics row pooled over all workers (a collective: every rank calls it at the same steps)."""
        fwd, bwd, n_fwd, n_bwd = self.collective.all_reduce_sum(self.sums)
        now = time.perf_counter()
        row: dict[str, Any] = {"step": step}
        if n_fwd > 0:
            row.update(direction_metrics(fwd, bwd, int(n_fwd), int(n_bwd)))
            row.update(tokens=int(n_fwd), tokens_per_s=n_fwd / max(now - self.interval_start, 1e-9),
                       learning_rate=self.last_step_metrics["learning_rate"],
                       grad_norm=self.last_step_metrics["grad_norm"])
        row["elapsed_s"] = self._elapsed()
        if evaluate:
            row.update(self.evaluate())
        self.metrics.add(row)
        self._reset_interval()
        if self.rank == 0 and "loss" in row:
            log.info(progress_line(row, self.config.steps))
        return row

    def evaluate(self) -> dict[str, float]:
        """Full-softmax validation perplexity: per sentence window (each worker takes every W-th
        batch), or in stream mode in the stream measure (:func:`elmo_model.train.stream.stream_validation_nll`:
        the held-out text as ``W × batch_size`` streams with carried state, split over the workers)."""
        if self.config.mode == "stream":
            sequences = [s for batch in self.data.valid_batches() for s in batch]  # whole <S> … </S> sentences
            sums = stream_validation_nll(self.trainer.model, sequences, self.vocab, self.config.max_tokens,
                                         self.world * self.config.batch_size, self.rank, self.world, self.max_chars)
            fwd, bwd, n_fwd, n_bwd = self.collective.all_reduce_sum(sums)
            return direction_metrics(fwd, bwd, int(n_fwd), int(n_bwd), prefix="valid_")
        sums = [0.0, 0.0, 0.0]
        for j, windows in enumerate(self.data.valid_batches()):
            if j % self.world != self.rank:
                continue
            m = self.trainer.evaluate([collate(windows, self.vocab, self.max_chars)])
            n = m["n_targets"]
            sums = [sums[0] + m["loss_forward"] * n, sums[1] + m["loss_backward"] * n, sums[2] + n]
        fwd, bwd, n = self.collective.all_reduce_sum(sums)
        return direction_metrics(fwd, bwd, int(n), int(n), prefix="valid_")


# ---- in this process -------------------------------------------------------------------------


def eval_batches(sentences: Sequence[Sequence[str]], vocab: Vocabulary, config: TrainConfig) -> list[Batch]:
    """Held-out batches in corpus order (no shuffling), for perplexity."""
    return [collate(w, vocab, config.options().max_characters_per_token) for w in eval_windows(sentences, config)]


def eval_windows(sentences: Sequence[Sequence[str]], config: TrainConfig) -> list[list[list[str]]]:
    """Held-out windows in corpus order, ``batch_size`` a batch (stream mode: whole sentences)."""
    windows = make_windows(sentences, NO_TOKEN_LIMIT if config.mode == "stream" else config.max_tokens)
    return [windows[i : i + config.batch_size] for i in range(0, len(windows), config.batch_size)]


def new_model(config: TrainConfig, vocab: Vocabulary) -> BiLmWithSoftmax:
    """bilm-tf's initialisation, seeded by ``config.seed`` (torch's default generator is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = BiLmWithSoftmax(config.options(), len(vocab), config.dropout)
        initialize_like_bilm_tf(model)
    return model


class LocalHost:
    """Checkpoints in one local file; rows to a callback."""

    def __init__(self, checkpoint_path: str | os.PathLike | None, config: TrainConfig, vocab: Vocabulary,
                 on_metrics: Callable[[dict[str, float]], None] | None) -> None:
        self.path, self.config, self.vocab, self.on_metrics = checkpoint_path, config, vocab, on_metrics

    def before_step(self, step: int) -> None:
        pass

    def save(self, payload: dict[str, Any], final: bool, metrics: MetricsLog) -> None:
        if self.path is not None:
            extra = payload.pop("extra")
            save_checkpoint(self.path, payload, self.config.to_dict(), self.vocab.tokens, extra=extra)

    def report(self, row: dict[str, Any], checkpointed: bool, final: bool) -> None:
        if self.on_metrics is not None and "loss" in row:
            self.on_metrics(row)


def train_in_process(
    config: TrainConfig,
    train_sentences: Sequence[Sequence[str]],
    vocab: Vocabulary,
    valid_sentences: Sequence[Sequence[str]] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    model: BiLmWithSoftmax | None = None,
    on_metrics: Callable[[dict[str, float]], None] | None = None,
    stop_after: int | None = None,
    source: str = "",
) -> LmTrainer:
    """Train for ``config.steps`` steps (resuming from ``checkpoint_path`` if it exists).

    The Ray job's loop with a world of one: sentence ``i`` is line ``i`` of ``source`` for the
    data order (so a file given as ``source`` trains on exactly the batches ``elmo train`` with
    one worker would). ``model`` (e.g. from :func:`elmo_model.formats.export.load_pretrained_lm`)
    fine-tunes instead of starting from scratch. ``on_metrics`` receives every logged row.
    ``stop_after`` ends early after that many steps of this call, with a checkpoint (for tests of
    resumption). Returns the trainer (its model is trained).
    """
    max_tokens = NO_TOKEN_LIMIT if config.mode == "stream" else config.max_tokens
    items = ordered_items(train_sentences, max_tokens, config.seed, source)
    plan = BatchPlan(len(items), config.batch_size, config.seed)
    valid = None
    if valid_sentences:
        windows = eval_windows(valid_sentences, config)
        valid = lambda: windows  # noqa: E731
    data = TrainData(list_pools(items, plan.pool_size), len(items), valid)
    trainer = LmTrainer(model or new_model(config, vocab), config)
    loop = TrainingLoop(trainer, vocab, data, SingleProcess(), LocalHost(checkpoint_path, config, vocab, on_metrics))
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        loop.restore(load_checkpoint(checkpoint_path))
        log.info("resumed from %s at step %d", checkpoint_path, trainer.step)
    loop.run(stop_after)
    return trainer
