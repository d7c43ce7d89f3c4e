"""The Ray Train adapter around :class:`elmo_model.train.loop.TrainingLoop`: what a worker needs from Ray.

Each worker receives one plain dict (:func:`train_loop_per_worker`'s ``spec``, built by
:mod:`pipelines.train.job`) and runs the same loop as ``train_in_process`` with:

- the collective of the process group Ray Train started (DDP, gloo or nccl), and the model
  wrapped in DDP (and bf16 autocast on GPU);
- the data: the whole prepared dataset, read in order as Arrow pools (:mod:`pipelines.train.data`);
- a host whose checkpoints are directories (``checkpoint.pt``, at the end the export, and last
  ``meta.json`` listing the other files' sizes) handed to ``ray.train.report``, and whose rows go to
  ``ray.train.report`` too;
- the checkpoint to continue from: the run's newest complete one in storage
  (:func:`pipelines.train.resume.newest_complete_checkpoint`, the driver's choice too).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from elmo_model.formats.checkpoint import load_checkpoint, save_checkpoint
from elmo_model.errors import ElmoError
from elmo_model.formats.export import export_model
from elmo_model.model.precision import Autocast, training_autocast
from elmo_model.train.config import TrainConfig
from elmo_model.train.log import CSV_FILE, JSON_FILE, PLOT_FILE, MetricsLog
from elmo_model.train.batch_plan import POOL_BATCHES
from elmo_model.train.loop import SingleProcess, TorchDistributed, TrainData, TrainingLoop, new_model
from elmo_model.train.trainer import LmTrainer
from elmo_model.formats.vocab import Vocabulary
from pipelines import fault_injection
from pipelines.io.storage import no_space
from pipelines.train import ray_train
from pipelines.train.data import arrow_pools, table_windows
from pipelines.train.resume import (CHECKPOINT_FILE, EXPORT_DIR, META_FILE, check_resume_key, checkpoint_digests,
                                    checkpoint_files)

log = logging.getLogger(__name__)  # Ray Train sends worker logs (root logger, INFO) to the driver's console


def build_model(spec: dict, config: TrainConfig, vocab: Vocabulary) -> nn.Module:
    """The starting model: the fine-tuning model the driver loaded, or bilm-tf's initialisation."""
    if spec.get("init_model") is not None:
        return ray_train.get_object(spec["init_model"])
    return new_model(config, vocab)


class RayHost:
    """Checkpoint directories and rows through ``ray.train.report``; the test-only fault before a step."""

    def __init__(self, spec: dict, trainer: LmTrainer, vocab: Vocabulary, rank: int, world: int) -> None:
        self.spec, self.trainer, self.vocab, self.rank, self.world = spec, trainer, vocab, rank, world
        self.faults = spec.get("faults", fault_injection.NONE)
        self.pending: tempfile.TemporaryDirectory | None = None

    def before_step(self, step: int) -> None:
        fault_injection.exit_train_worker_once(self.faults, step, self.rank)

    def save(self, payload: dict[str, Any], final: bool, metrics: MetricsLog) -> None:
        self.pending = tempfile.TemporaryDirectory(prefix="elmo-ckpt-")
        try:
            self._save(Path(self.pending.name), payload, final, metrics)
        except Exception as exc:  # torch and h5py do not all raise OSError for a full disk
            self.pending.cleanup()
            self.pending = None
            if no_space(exc):
                raise ElmoError(f"{tempfile.gettempdir()}: cannot write the checkpoint before its upload: no space "
                                "left on device (the worker's temporary directory; TMPDIR chooses another)") from None
            raise

    def _save(self, directory: Path, payload: dict[str, Any], final: bool, metrics: MetricsLog) -> None:
        extra = payload.pop("extra")
        extra.update(resume_key=self.spec["resume_key"], n_windows=self.spec["n_windows"])
        save_checkpoint(directory / CHECKPOINT_FILE, payload, self.trainer.config.to_dict(), self.vocab.tokens,
                        extra=extra)
        if final:
            self._write_export(directory / EXPORT_DIR, metrics)
        # Last, with every other file's size and SHA-256: a checkpoint whose files are not all there is not
        # complete (resume.newest_complete_checkpoint), e.g. one being uploaded when the run was stopped,
        # and one whose content changed is passed over too.
        meta = {"step": payload["step"], "position": extra["position"], "world_size": self.world, "final": final,
                "resume_key": self.spec["resume_key"], "files": checkpoint_files(directory),
                "sha256": checkpoint_digests(directory)}
        (directory / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")

    def _write_export(self, directory: Path, metrics: MetricsLog) -> None:
        """options.json + weights.hdf5 + vocab.txt, and the metrics log (CSV, JSON, PNG)."""
        directory.mkdir()
        export_model(self.trainer.model, self.vocab, directory)
        (directory / CSV_FILE).write_text(metrics.to_csv())
        (directory / JSON_FILE).write_text(metrics.to_json(run=self.spec["run_name"], steps=self.trainer.config.steps,
                                                           num_workers=self.world,
                                                           torch_threads=torch.get_num_threads()))
        metrics.plot(directory / PLOT_FILE, title=f"{self.spec['run_name']}: biLM perplexity")

    def report(self, row: dict[str, Any], checkpointed: bool, final: bool) -> None:
        if not checkpointed:
            ray_train.report(row)
            return
        name = f"checkpoint_{self.trainer.step:09d}"
        if self.pending is None:
            ray_train.report(row, None, name)
            return
        try:
            ray_train.report(row, self.pending.name, name, run_url=(self.spec.get("checkpoints") or {}).get("url", ""))
        finally:
            self.pending.cleanup()
            self.pending = None


def make_loop(spec: dict) -> TrainingLoop:
    """This worker's loop: model (DDP-wrapped when W > 1), collective, Arrow pools, Ray host."""
    config = TrainConfig.from_dict(spec["training"])
    vocab = Vocabulary(spec["vocab"], source="job vocabulary")
    rank, world = ray_train.world()
    device = torch.device(ray_train.device())
    torch.set_num_threads(spec.get("threads", 1))  # = the worker's CPUs: no oversubscription
    model = build_model(spec, config, vocab).to(device)

    autocast, why = training_autocast(config.precision, device)
    if rank == 0:
        log.info("training precision: %s (%s)", "bf16 autocast" if autocast else "fp32", why)

    def wrap(module: nn.Module) -> nn.Module:
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        return Autocast(module, device.type) if autocast is not None else module

    trainer = LmTrainer(model, config, device, wrap=wrap, rank=rank)
    train_pools = arrow_pools(lambda: ray_train.dataset("train").iter_batches(
        batch_size=config.batch_size * POOL_BATCHES, batch_format="pyarrow", prefetch_batches=1))
    valid = None
    if spec["has_valid"]:
        valid = lambda: table_windows(ray_train.dataset("valid").iter_batches(  # noqa: E731
            batch_size=config.batch_size, batch_format="pyarrow", prefetch_batches=1))
    data = TrainData(train_pools, spec["n_windows"], valid)
    collective = TorchDistributed(device) if world > 1 else SingleProcess()
    return TrainingLoop(trainer, vocab, data, collective, RayHost(spec, trainer, vocab, rank, world))


def restore(loop: TrainingLoop, spec: dict, restored: tuple[Path, dict[str, Any], str] | None) -> None:
    """Continue from a checkpoint directory after checking it belongs to this run. One that passed
    the checks of its files but still cannot be loaded (a checkpoint from before meta.json recorded
    digests) stops the run with one line naming the folder to remove."""
    if restored is None:
        return
    directory, _, name = restored
    try:
        state = load_checkpoint(directory / CHECKPOINT_FILE)
    except ElmoError:
        folder = f"{(spec.get('checkpoints') or {}).get('url', '<storage>/<name>')}/{name}"
        raise ElmoError(f"{folder}/{CHECKPOINT_FILE}: not a readable checkpoint; remove {folder} and rerun "
                        "to continue from the checkpoint before it") from None
    extra = state["extra"]
    check_resume_key(extra["resume_key"], spec["resume_key"], f"run {spec['run_name']!r}")
    if extra["n_windows"] != spec["n_windows"]:
        raise ElmoError(f"run {spec['run_name']!r}: its checkpoint was trained on {extra['n_windows']} "
                        f"windows, the corpus now gives {spec['n_windows']}; use a new name")
    loop.restore(state)


def train_loop_per_worker(spec: dict) -> None:
    """Ray Train's entry point on every worker: continue from the run's newest complete checkpoint in
    storage (the one the driver named), not from what Ray Train hands over."""
    ray_train.quiet_report_logs()
    loop = make_loop(spec)
    with ray_train.restored_checkpoint(spec.get("checkpoints")) as restored:
        restore(loop, spec, restored)
    loop.run()
