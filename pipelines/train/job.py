"""``elmo train``: the biLM trained data-parallel with Ray Train, checkpoints in object storage.

    check inputs, output, storage; take the run's lease on <storage>/<name> (pipelines.io.lease)
    → vocabulary, fine-tuning model, earlier run (driver, no Ray)
    → Ray Data: sentences → windows, materialized once (pipelines.train.data)
    → TorchTrainer: DDP workers (pipelines.train.worker), checkpoints under <storage>/<name>/
    → the final checkpoint's export is published to <output>: metrics, vocab.txt, weights.hdf5,
      options.json last (every file staged first, then all moved into place)

A full disk (output or storage) stops the run with one line naming the path and "no space left on
device"; a checkpoint is written under a staging name and renamed (on object stores: meta.json
last), so it is whole or absent, and the model's files are all staged before any is moved.

A rerun with the same ``name`` and ``storage`` continues the run from its newest complete
checkpoint (:mod:`pipelines.train.resume`: the driver names it, the workers restore it, whatever
Ray Train's own record of the run says); newer ones that are cut short or whose content changed
are passed over, named in the same line with the reason, and a checkpoint folder deleted by hand is
dropped from Ray Train's record of the run first (one line). A checkpoint made with other model,
vocabulary or data settings stops the job with an error instead. Ctrl-C stops the workers and the
command with one line naming the step a rerun continues from (exit status 130).

One run per name and storage at a time: a second one exits 75 with one line naming the run that
holds the lease, or waits for it (``wait_s``, ``--wait SECONDS``); a run whose lease was taken over
(not renewed within ``lease_ttl_s``) is stopped and says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elmo_model.train.batch_plan import NO_TOKEN_LIMIT
from elmo_model.errors import ElmoError
from elmo_model.formats.export import OPTIONS_FILE, VOCAB_FILE, WEIGHTS_FILE
from elmo_model.train.config import TrainConfig
from elmo_model.formats.vocab import Vocabulary
from pipelines import fault_injection
from pipelines.config import to_dict, write_config
from pipelines.ingest.reader import IngestConfig, InputPlan, plan_inputs
from pipelines.io.model_store import load_model, read_vocab
from pipelines.io.storage import (Location, StorageOptions, check_output, exists, no_space, publish, resolve,
                                  staging_url, storage_errors)
from elmo_model.train.log import CSV_FILE, JSON_FILE, PLOT_FILE
from pipelines.train.resume import EXPORT_DIR, check_resume_key, describe_skipped, newest_complete_checkpoint

log = logging.getLogger(__name__)
PUBLISH_ORDER = [CSV_FILE, JSON_FILE, PLOT_FILE, VOCAB_FILE, WEIGHTS_FILE, OPTIONS_FILE]  # options.json last
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class TrainJobConfig:
    """``elmo train`` settings (TOML: top level, ``[ingest]``, ``[training]``)."""

    name: str = "elmo"  # run name: checkpoints live under <storage>/<name>/; a rerun continues it
    train: tuple[str, ...] = ()  # corpus files or prefixes
    valid: tuple[str, ...] = ()  # held-out text for perplexity (optional)
    vocab: str = ""  # vocab.txt URL; empty: init_from's vocab.txt, else built from `train`
    vocab_max_size: int | None = None  # when building: entries, counting <S>, </S>, <UNK>
    vocab_min_count: int = 1
    output: str = ""  # model directory URL: options.json, weights.hdf5, vocab.txt, metrics
    storage: str = ""  # checkpoint storage URL (default: <output>/checkpoints)
    init_from: str = ""  # model directory to fine-tune (options.json + weights.hdf5)
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    worker_resources: dict[str, float] = field(default_factory=dict)  # extra Ray resources per worker
    max_failures: int = 3  # worker-group restarts from the latest checkpoint (-1: unlimited)
    keep_checkpoints: int = 2
    lease_ttl_s: float = 120.0  # the run's lease on <storage>/<name> expires this long after its last renewal
    wait_s: float = 0.0  # how long to wait for another run of this name and storage (0: exit 75 at once)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    training: TrainConfig = field(default_factory=TrainConfig)

    def storage_url(self) -> str:
        return self.storage or self.output.rstrip("/") + "/checkpoints"

    def validate(self) -> None:
        if not self.train or not self.output:
            raise ElmoError("elmo train needs `train` (corpus URLs) and `output` (model directory URL)")
        if not _NAME.match(self.name):
            raise ElmoError(f"name {self.name!r}: use letters, digits, '.', '_' and '-'")
        if self.num_workers < 1 or self.cpus_per_worker <= 0 or self.keep_checkpoints < 1 or self.max_failures < -1:
            raise ElmoError("num_workers ≥ 1, cpus_per_worker > 0, keep_checkpoints ≥ 1 and max_failures ≥ -1")
        if self.lease_ttl_s < 1 or self.wait_s < 0:
            raise ElmoError("lease_ttl_s ≥ 1 (seconds) and --wait ≥ 0")


@dataclass
class TrainResult:
    output_url: str
    checkpoint_url: str
    metrics: dict[str, Any]  # the final row
    n_windows: int
    vocab_size: int
    resumed_at_steps: list[int]


def _normalized(value: Any) -> Any:
    return json.loads(json.dumps(value))


def resume_key(config: TrainJobConfig, vocab: Vocabulary) -> dict[str, Any]:
    """What a checkpoint must share with this config to be continued (model, vocabulary, data order)."""
    t = config.training
    vocab_hash = hashlib.sha256(vocab.to_text().encode()).hexdigest()[:16]
    stream = {"training.mode": t.mode, "num_workers": config.num_workers} if t.mode == "stream" else {}
    return _normalized({**stream, "training.model": t.model, "training.model_overrides": t.model_overrides,
                        "training.optimizer": t.optimizer, "training.batch_size": t.batch_size,
                        "training.max_tokens": t.max_tokens, "training.seed": t.seed, "train": list(config.train),
                        "ingest": to_dict(config.ingest), "vocab_sha256": vocab_hash, "init_from": config.init_from})


def resolve_vocab(config: TrainJobConfig, out: Location, options: StorageOptions | None) -> tuple[Vocabulary, str]:
    """The configured vocabulary, the fine-tuned model's, or one built from the corpus under <output>/vocab."""
    url = config.vocab
    if not url and config.init_from:
        candidate = resolve(config.init_from, options).join(VOCAB_FILE).url
        url = candidate if exists(candidate, options) else ""
    if not url:
        from pipelines.vocab_job import VocabConfig, build_vocab

        built = build_vocab(VocabConfig(inputs=config.train, output=out.join("vocab").url,
                                        max_size=config.vocab_max_size, min_count=config.vocab_min_count,
                                        ingest=config.ingest), options)
        url = resolve(built.output_url, options).join(VOCAB_FILE).url
    return read_vocab(url, options), url


def load_init_model(config: TrainJobConfig, vocab: Vocabulary, options: StorageOptions | None) -> Any:
    """The model to fine-tune (its softmax kept when it matches ``vocab``); errors name the URL."""
    try:
        model = load_model(config.init_from, options)
    except ElmoError as exc:
        raise ElmoError(f"init_from {exc}") from None
    return model.language_model(vocab, config.training.dropout)


def checkpoint_store(store: Location, name: str) -> dict[str, Any]:
    """Where the run's checkpoints are, for :func:`~pipelines.train.resume.newest_complete_checkpoint`
    here and on the workers: the pyarrow filesystem Ray Train writes them with, the run's path, and
    its URL (for messages)."""
    return {"fs": store.arrow_fs, "path": store.join(name).path, "url": store.join(name).url}


def resume_point(store: Location, name: str) -> tuple[tuple[str, dict[str, Any]] | None, list[tuple[str, str]]]:
    """The run's newest complete checkpoint, its content checked (path, ``meta.json``) — the one its
    workers continue from — or ``None``; and the newer ones passed over, with why (path, reason)."""
    where, skipped = checkpoint_store(store, name), []
    found = newest_complete_checkpoint(where["fs"], where["path"], skipped, verify=True)
    return found, skipped


def latest_checkpoint_meta(store: Location, name: str) -> dict[str, Any] | None:
    """``meta.json`` of the run's newest complete checkpoint — the one its workers continue from — or
    ``None`` for a new run."""
    found, _ = resume_point(store, name)
    return None if found is None else found[1]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run; the message says where the same command continues (``elmo`` exits 130)."""


def interrupted(store: Location, name: str) -> TrainingInterrupted:
    """What to say after Ctrl-C: the step a rerun continues from, found as the rerun will find it."""
    meta = latest_checkpoint_meta(store, name)
    if meta is None:
        return TrainingInterrupted("no checkpoint was complete; rerun the same command to start the run again")
    return TrainingInterrupted(f"rerun the same command to continue from step {int(meta['step'])} "
                               "(the newest complete checkpoint)")


def check_existing_run(config: TrainJobConfig, store: Location, key: dict[str, Any]) -> int | None:
    """The step an earlier run of this name reached (it will be continued), after checking it fits;
    says so in one line, naming the newer checkpoints passed over and why (they are not usable).
    Ray Train's own record of the run is then made to agree (:func:`~pipelines.train.ray_train.repair_run_record`)."""
    from pipelines.train import ray_train

    found, skipped = resume_point(store, config.name)
    run_url = store.join(config.name).url
    passed_over = f" (skipped {describe_skipped(skipped)})" if skipped else ""
    if found is not None:
        check_resume_key(found[1].get("resume_key", {}), key, f"run {config.name!r} in {store.url}")
        (log.warning if skipped else log.info)("run %r has a checkpoint at step %d in %s: continuing it%s",
                                               config.name, int(found[1]["step"]), store.url, passed_over)
    elif skipped:
        log.warning("run %r in %s has no usable checkpoint%s: starting it from step 0", config.name, store.url,
                    passed_over)
    where = checkpoint_store(store, config.name)
    unusable = {path.rstrip("/").rsplit("/", 1)[-1] for path, _ in skipped}
    dropped = ray_train.repair_run_record(where["fs"], where["path"], unusable)
    if dropped:
        log.warning("Ray Train's record of run %r (%s/%s) named %s, which %s no longer there: removed %s from "
                    "it (the run continues from the newest complete checkpoint in storage)", config.name, run_url,
                    ray_train.RUN_RECORD, ", ".join(dropped), "is" if len(dropped) == 1 else "are",
                    "it" if len(dropped) == 1 else "them")
    return None if found is None else int(found[1]["step"])


def remove_staged_checkpoints(store: Location, name: str) -> None:
    """Remove checkpoints a stopped run left half written under their staging names
    (``<run>/_staging.checkpoint_…``, :func:`~pipelines.train.ray_train._staged_upload`): no other run
    is writing there (this one holds the lease)."""
    import pyarrow.fs

    from pipelines.train.ray_train import STAGING_PREFIX

    where = checkpoint_store(store, name)
    try:
        entries = where["fs"].get_file_info(pyarrow.fs.FileSelector(where["path"], allow_not_found=True))
    except OSError:
        return
    for entry in entries:
        if entry.base_name.startswith(STAGING_PREFIX) and entry.type == pyarrow.fs.FileType.Directory:
            log.info("removing %s/%s (a checkpoint that was never finished)", where["url"], entry.base_name)
            with contextlib.suppress(OSError):
                where["fs"].delete_dir(entry.path)


def publish_outputs(export_dir: Path, out: Location, options: StorageOptions | None) -> list[str]:
    """Copy the export to ``out``: every file written under a staging name first, then all moved into
    place, ``options.json`` last. A write that fails (a full disk) removes the staged files: nothing
    of this model is visible, and an earlier model there is left whole."""
    names = [name for name in PUBLISH_ORDER if (export_dir / name).exists()]
    staged: dict[str, Location] = {}
    try:
        for name in names:
            final = out.join(name)
            staged[name] = resolve(staging_url(final.url, options), options)
            with storage_errors(final.url, "write"):
                out.fs.put_file(str(export_dir / name), staged[name].path)
    except BaseException:
        for loc in staged.values():
            with contextlib.suppress(Exception):
                loc.fs.rm_file(loc.path)
        raise
    for name in names:
        publish(staged[name].url, out.join(name).url, options)
    return [out.join(name).url for name in names]


def prepare_datasets(config: TrainJobConfig, plan: InputPlan, valid_plan: InputPlan | None,
                     options: StorageOptions | None) -> tuple[dict[str, Any], int]:
    """The materialized window datasets (``train``, maybe ``valid``) and the training window count."""
    from pipelines.train.data import prepare_windows

    t = config.training
    max_tokens = NO_TOKEN_LIMIT if t.mode == "stream" else t.max_tokens  # stream mode: whole sentences, in order
    train, n_windows = prepare_windows(plan, config.ingest, max_tokens, t.seed, shuffle=True, options=options)
    if n_windows == 0:
        raise ElmoError(f"{', '.join(config.train)}: the training corpus has no sentences")
    datasets = {"train": train}
    if valid_plan is not None:
        valid, n_valid = prepare_windows(valid_plan, config.ingest, max_tokens, t.seed, shuffle=False,  # corpus order
                                         options=options)
        if n_valid == 0:
            raise ElmoError(f"{', '.join(config.valid)}: the validation corpus has no sentences")
        datasets["valid"] = valid
    return datasets, n_windows


def worker_spec(config: TrainJobConfig, vocab: Vocabulary, n_windows: int, key: dict[str, Any],
                init_ref: Any, has_valid: bool, store: Location) -> dict[str, Any]:
    """The plain dict every worker receives."""
    return {"run_name": config.name, "training": config.training.to_dict(), "vocab": vocab.tokens,
            "n_windows": n_windows, "has_valid": has_valid, "resume_key": key, "init_model": init_ref,
            "faults": fault_injection.planned(), "threads": max(1, int(config.cpus_per_worker)),
            "checkpoints": checkpoint_store(store, config.name)}


def run_lease(config: TrainJobConfig, store: Location) -> Any:
    """The run's lease on ``<storage>/<name>`` (:mod:`pipelines.io.lease`, as ``elmo embed`` has on its
    output), taken, waiting up to ``wait_s`` for another run of the same name and storage:
    :class:`~pipelines.io.lease.LeaseHeld` (exit 75) names that run otherwise."""
    from pipelines.io.lease import RunLease

    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    return RunLease(store.join(config.name), run_id, config.lease_ttl_s, command="elmo train").acquire(config.wait_s)


def run_training(config: TrainJobConfig, options: StorageOptions | None = None) -> TrainResult:
    """Check everything a user can get wrong, then train on Ray and publish the model to ``output``.
    One run per name and storage at a time: the run holds a lease on ``<storage>/<name>`` throughout."""
    config.validate()
    out, store = resolve(config.output, options), resolve(config.storage_url(), options)
    check_output(out.url, options)
    check_output(store.url, options)
    with run_lease(config, store) as lease:
        return _run_leased(config, out, store, lease, options)


def _run_leased(config: TrainJobConfig, out: Location, store: Location, lease: Any,
                options: StorageOptions | None) -> TrainResult:
    plan = plan_inputs(config.train, config.ingest, options)
    valid_plan = plan_inputs(config.valid, config.ingest, options) if config.valid else None
    vocab, vocab_url = resolve_vocab(config, out, options)
    log.info("vocabulary: %d entries from %s", len(vocab), vocab_url)
    init_model = load_init_model(config, vocab, options) if config.init_from else None
    key = resume_key(config, vocab)
    check_existing_run(config, store, key)
    remove_staged_checkpoints(store, config.name)
    write_config(config, out.join("config.toml").url, options)
    try:
        return _train_on_ray(config, vocab, plan, valid_plan, init_model, key, out, store, lease, options)
    except KeyboardInterrupt:  # Ctrl-C: the workers were stopped (ray_train.fit)
        raise interrupted(store, config.name) from None


def _train_on_ray(config: TrainJobConfig, vocab: Vocabulary, plan: InputPlan, valid_plan: InputPlan | None,
                  init_model: Any, key: dict[str, Any], out: Location, store: Location, lease: Any,
                  options: StorageOptions | None) -> TrainResult:
    from pipelines.train import ray_train
    from pipelines.ray_support import clean_errors, ensure_ray
    from pipelines.train.worker import train_loop_per_worker  # the entry point Ray Train runs on each worker

    ensure_ray()
    with clean_errors():
        datasets, n_windows = prepare_datasets(config, plan, valid_plan, options)
        init_ref = None if init_model is None else ray_train.put_object(init_model)
        spec = worker_spec(config, vocab, n_windows, key, init_ref, "valid" in datasets, store)
        trainer = ray_train.make_trainer(
            train_loop_per_worker, spec, datasets, name=config.name, storage=store,
            num_workers=config.num_workers, use_gpu=config.use_gpu, cpus_per_worker=config.cpus_per_worker,
            extra_resources=dict(config.worker_resources), max_failures=config.max_failures,
            keep_checkpoints=config.keep_checkpoints)
        try:
            with clean_errors():  # a worker's ElmoError (e.g. a checkpoint that did not fit) as its one line
                result = ray_train.fit(trainer, stop_if=lease.lost)  # another run took the lease over: stop
        except Exception as exc:  # Ray Train's own writes to a full disk (its record of the run)
            if isinstance(exc, ElmoError) or not no_space(exc):
                raise
            raise ElmoError(f"{store.join(config.name).url}: cannot write: no space left on device") from None
        finally:
            lease.check()
    with ray_train.result_checkpoint(result, checkpoint_store(store, config.name)) as directory:
        if directory is None or not (directory / EXPORT_DIR / OPTIONS_FILE).exists():
            raise ElmoError(f"run {config.name!r} finished without a final checkpoint in {store.url}")
        publish_outputs(directory / EXPORT_DIR, out, options)
        logged = json.loads((directory / EXPORT_DIR / JSON_FILE).read_text())
    final = logged["rows"][-1] if logged["rows"] else {}
    return TrainResult(out.url, store.join(config.name).url, final, n_windows, len(vocab),
                       logged["resumed_at_steps"])
