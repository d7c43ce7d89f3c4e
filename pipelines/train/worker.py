"""The per-worker training loop that Ray Train runs: DDP over :class:`elmo_model.trainer.LmTrainer`.

Each worker receives one plain dict (:func:`train_loop_per_worker`'s ``spec``, built by
:mod:`pipelines.train.job`), reads the whole training dataset and trains its share of every
global step (:mod:`pipelines.train.data`). Per step the workers sum their target counts
(``all_reduce``) so that ``loss_scale = W · n_local / n_global`` makes DDP's averaged gradient the
gradient of the mean loss over all targets of the step — exactly what one worker with all the
windows would compute. Rank 0 writes checkpoints (model, optimizer, step, data position, metrics
log) and, at the end, the export; every rank calls ``report`` at the same steps.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from elmo_model.batching import collate
from elmo_model.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint
from elmo_model.errors import ElmoError
from elmo_model.export import export_model
from elmo_model.train_config import TrainConfig
from elmo_model.train_loop import new_model
from elmo_model.trainer import LmTrainer
from elmo_model.vocab import Vocabulary
from pipelines import fault_injection
from pipelines.train import ray_train
from pipelines.train.data import BatchPlan, rank_batches, rank_eval_batches
from pipelines.train.metrics import CSV_FILE, JSON_FILE, PLOT_FILE, MetricsLog, perplexities, progress_line
from pipelines.train.resume import CHECKPOINT_FILE, EXPORT_DIR, META_FILE, check_resume_key

log = logging.getLogger(__name__)  # Ray Train sends worker logs (root logger, INFO) to the driver's console


class Autocast(nn.Module):
    """Runs the wrapped module's forward under bf16 autocast (GPU workers)."""

    def __init__(self, module: nn.Module, device_type: str = "cuda") -> None:
        super().__init__()
        self.module, self.device_type = module, device_type

    def forward(self, *args: Any) -> Any:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.module(*args)


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over all workers (identity for a single worker)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def build_model(spec: dict, config: TrainConfig, vocab: Vocabulary) -> nn.Module:
    """The starting model: the fine-tuning model the driver loaded, or bilm-tf's initialisation."""
    if spec.get("init_model") is not None:
        return ray_train.get_object(spec["init_model"])
    return new_model(config, vocab)


class WorkerRun:
    """One worker's share of the run: restore, train, log, evaluate, checkpoint, export."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.config = config = TrainConfig.from_dict(spec["training"])
        self.vocab = Vocabulary(spec["vocab"], source="job vocabulary")
        self.rank, self.world = ray_train.world()
        self.device = torch.device(ray_train.device())
        torch.set_num_threads(spec.get("threads", 1))  # = the worker's CPUs: no oversubscription
        model = build_model(spec, config, self.vocab).to(self.device)
        wrapped: nn.Module = model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.device.type == "cuda":
            wrapped = Autocast(wrapped)
        self.trainer = LmTrainer(model, config, self.device, forward_module=wrapped, rank=self.rank)
        self.plan = BatchPlan(spec["n_windows"], config.batch_size, config.seed)
        self.max_chars = model.bilm.options.max_characters_per_token
        self.metrics, self.finished = MetricsLog(), False
        self.base_step = self.base_position = 0
        self.elapsed_before = 0.0
        self.started = time.perf_counter()
        self._reset_interval()

    # ---- state ------------------------------------------------------------------------------

    def position(self, step: int) -> int:
        """Global batch index trained first at ``step`` (0-based) by this world size."""
        return self.base_position + (step - self.base_step) * self.world

    def restore(self, directory: Path | None) -> None:
        """Continue from a checkpoint directory (model, optimizer, step, data position, metrics log)."""
        if directory is None:
            return
        state = load_checkpoint(directory / CHECKPOINT_FILE)
        extra = state["extra"]
        check_resume_key(extra["resume_key"], self.spec["resume_key"], f"run {self.spec['run_name']!r}")
        if extra["n_windows"] != self.plan.n_windows:
            raise ElmoError(f"run {self.spec['run_name']!r}: its checkpoint was trained on {extra['n_windows']} "
                            f"windows, the corpus now gives {self.plan.n_windows}; use a new name")
        self.trainer.load_state_dict(state)
        restore_rng_state(state["rng"])
        self.base_step, self.base_position = self.trainer.step, int(extra["position"])
        self.metrics = MetricsLog.load(extra["metrics"], self.trainer.step)
        self.elapsed_before = float(extra.get("elapsed_s", 0.0))
        self.finished = bool(extra.get("final")) and self.trainer.step >= self.config.steps
        if self.rank == 0:
            log.info("resumed at step %d (global batch %d)", self.trainer.step, self.base_position)

    def _extra(self, final: bool) -> dict[str, Any]:
        return {"resume_key": self.spec["resume_key"], "n_windows": self.plan.n_windows,
                "position": self.position(self.trainer.step), "world_size": self.world,
                "metrics": self.metrics.state(), "elapsed_s": self._elapsed(), "final": final}

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _reset_interval(self) -> None:
        self.interval_start = time.perf_counter()
        self.sums = [0.0, 0.0, 0.0]  # forward NLL, backward NLL, targets (this worker, this interval)

    # ---- training ---------------------------------------------------------------------------

    def _read_epoch(self) -> Any:
        data = ray_train.dataset("train")
        return data.iter_batches(batch_size=self.plan.pool_size, batch_format="pyarrow", prefetch_batches=1)

    def train(self) -> None:
        """Steps until ``config.steps``; logs, evaluates and checkpoints on schedule; exports at the end."""
        config, trainer = self.config, self.trainer
        batches = rank_batches(self.plan, self._read_epoch, self.position(trainer.step), self.world, self.rank)
        while trainer.step < config.steps:
            fault_injection.exit_train_worker_once(self.spec.get("faults", fault_injection.NONE), trainer.step + 1,
                                                   self.rank)
            windows = next(batches)
            n_local = sum(len(w) - 1 for w in windows)
            (n_global,) = all_reduce_sum([n_local], self.device)
            metrics = trainer.train_step(collate(windows, self.vocab, self.max_chars),
                                         loss_scale=self.world * n_local / n_global)
            n = metrics["n_targets"]
            self.sums = [self.sums[0] + metrics["loss_forward"] * n, self.sums[1] + metrics["loss_backward"] * n,
                         self.sums[2] + n]
            self.last_step_metrics = metrics
            self._after_step(trainer.step)
        if not self.finished:
            self._finish()

    def _after_step(self, step: int) -> None:
        config = self.config
        final = step == config.steps
        logged = final or step % max(config.log_every, 1) == 0
        evaluated = self.spec["has_valid"] and config.eval_every > 0 and step % config.eval_every == 0
        checkpointed = config.checkpoint_every > 0 and step % config.checkpoint_every == 0
        if final:
            self._finish()
        elif logged or evaluated or checkpointed:  # report() is a barrier: only at these steps
            row = self._row(step, evaluated) if logged or evaluated else {"step": step}
            self._report(row, checkpoint=checkpointed, final=False)

    def _finish(self) -> None:
        """Final row (with validation), final checkpoint with the export, report."""
        row = self._row(self.trainer.step, self.spec["has_valid"])
        self._report(row, checkpoint=True, final=True)
        self.finished = True

    def _row(self, step: int, evaluate: bool) -> dict[str, Any]:
        """A metrics row pooled over all workers (a collective: every rank calls it at the same steps)."""
        fwd, bwd, n = all_reduce_sum(self.sums, self.device)
        now = time.perf_counter()
        row: dict[str, Any] = {"step": step}
        if n > 0:
            row.update(perplexities("", fwd, bwd, int(n)))
            row.update(tokens=int(n), tokens_per_s=n / max(now - self.interval_start, 1e-9),
                       learning_rate=self.trainer.learning_rate,
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
        """Full-softmax validation perplexity; each worker takes every W-th batch, sums pooled."""
        tables = ray_train.dataset("valid").iter_batches(batch_size=self.config.batch_size, batch_format="pyarrow",
                                                        prefetch_batches=1)
        sums = [0.0, 0.0, 0.0]
        for windows in rank_eval_batches(tables, self.world, self.rank):
            m = self.trainer.evaluate([collate(windows, self.vocab, self.max_chars)])
            n = m["n_targets"]
            sums = [sums[0] + m["loss_forward"] * n, sums[1] + m["loss_backward"] * n, sums[2] + n]
        fwd, bwd, n = all_reduce_sum(sums, self.device)
        return perplexities("valid_", fwd, bwd, int(n))

    # ---- checkpoints and export -------------------------------------------------------------

    def _report(self, row: dict[str, Any], checkpoint: bool, final: bool) -> None:
        if not checkpoint:
            ray_train.report(row)
            return
        name = f"checkpoint_{self.trainer.step:09d}"
        if self.rank != 0:
            ray_train.report(row, None, name)
            return
        with tempfile.TemporaryDirectory(prefix="elmo-ckpt-") as tmp:
            self._write_checkpoint(Path(tmp), final)
            ray_train.report(row, tmp, name)

    def _write_checkpoint(self, directory: Path, final: bool) -> None:
        step = self.trainer.step
        save_checkpoint(directory / CHECKPOINT_FILE, self.trainer.state_dict(), self.config.to_dict(),
                        self.vocab.tokens, extra=self._extra(final))
        meta = {"step": step, "position": self.position(step), "world_size": self.world, "final": final,
                "resume_key": self.spec["resume_key"]}
        (directory / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        if final:
            self._write_export(directory / EXPORT_DIR)

    def _write_export(self, directory: Path) -> None:
        """options.json + weights.hdf5 + vocab.txt, and the metrics log (CSV, JSON, PNG)."""
        directory.mkdir()
        export_model(self.trainer.model, self.vocab, directory)
        (directory / CSV_FILE).write_text(self.metrics.to_csv())
        (directory / JSON_FILE).write_text(self.metrics.to_json(run=self.spec["run_name"], steps=self.config.steps,
                                                                num_workers=self.world,
                                                                torch_threads=torch.get_num_threads()))
        self.metrics.plot(directory / PLOT_FILE, title=f"{self.spec['run_name']}: biLM perplexity")


def train_loop_per_worker(spec: dict) -> None:
    """Ray Train's entry point on every worker."""
    ray_train.quiet_report_logs()
    run = WorkerRun(spec)
    with ray_train.restored_checkpoint() as directory:
        run.restore(directory)
    run.train()
