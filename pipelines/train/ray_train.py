"""The version-sensitive Ray Train (V2, Ray 2.60) calls of the training job, in one place.

Driver: :func:`make_trainer` (TorchTrainer + scaling, storage, failure, checkpoint and data
configs), :func:`put_object` and :func:`fit`. Worker: :func:`world`, :func:`device`, :func:`dataset`,
:func:`get_object`, :func:`restored_checkpoint`, :func:`report`, :func:`quiet_report_logs`. Notes that
matter (``../shared/RAY_NOTES.md``, beside the checkout):

- ``RunConfig(storage_path=...)`` takes the path *without* its scheme when a pyarrow filesystem is
  given (``bucket/prefix`` for ``s3://bucket/prefix``).
- A run whose name already has checkpoints in that storage resumes from the latest one Ray has a
  record of (``checkpoint_manager_snapshot.json``); :func:`restored_checkpoint` makes that the newest
  complete one in storage, the one the driver names (:mod:`pipelines.train.resume`). A record that
  names a checkpoint folder which is gone makes ``fit`` fail with a 59-line
  ``CheckpointManagerInitializationError`` advising to delete the whole run: the driver calls
  :func:`repair_run_record` first.
- Ctrl-C during :func:`fit`: the run is aborted and ``KeyboardInterrupt`` raised (not Ray Train's
  handler, which exits with status 1 and no message).
- Ray Train copies a reported checkpoint straight into ``<run>/checkpoint_…/`` (``pyarrow.fs.copy_files``,
  ``meta.json`` not last): :func:`report` passes ``checkpoint_upload_fn`` (:func:`_staged_upload`),
  which writes it under a staging name and renames it, so that a full disk leaves no half of it.
- Datasets listed in none of ``DataConfig(datasets_to_split=...)`` reach every worker whole; with
  ``preserve_order`` every worker iterates them in the same order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipelines.io.storage import Location
from pipelines.train.resume import complete_checkpoints, content_problem, newest_complete_checkpoint

log = logging.getLogger(__name__)
RUN_RECORD = "checkpoint_manager_snapshot.json"  # Ray Train's record of a run's checkpoints, in its folder


def make_trainer(train_fn: Callable[[dict], None], loop_config: dict, datasets: dict[str, Any], *, name: str,
                 storage: Location, num_workers: int, use_gpu: bool, cpus_per_worker: float,
                 extra_resources: dict[str, float], max_failures: int, keep_checkpoints: int) -> Any:
    """A ``TorchTrainer`` (gloo on CPU, nccl with ``use_gpu``) for ``train_fn(loop_config)``."""
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    resources = {"CPU": cpus_per_worker, **extra_resources}
    scaling = ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources)
    run = RunConfig(name=name, storage_path=storage.path, storage_filesystem=storage.arrow_fs,
                    failure_config=FailureConfig(max_failures=max_failures),
                    checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints),
                    logging_config=LoggingConfig(log_level="WARNING"))  # the workers print progress lines
    data = DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True))
    return TorchTrainer(train_fn, train_loop_config=loop_config, scaling_config=scaling, run_config=run,
                        datasets=datasets, dataset_config=data,
                        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"))


def put_object(value: Any) -> Any:
    """Put ``value`` (e.g. the model to fine-tune) in Ray's object store once; workers :func:`get_object` it."""
    import ray

    return ray.put(value)


def fit(trainer: Any, stop_if: Callable[[], bool] | None = None, poll_s: float = 1.0) -> Any:
    """``trainer.fit()``; returns the Result (failures raise ``ray.train.TrainingFailedError``).

    Ctrl-C (SIGINT) aborts the run — the workers are stopped — and raises ``KeyboardInterrupt``;
    a second Ctrl-C stops waiting for the abort. Ray Train's own handler (registered by
    ``DataParallelTrainer._register_sigint_handler``, Ray 2.60) aborts the run too, but then leaves
    the process with status 1 and no message, and stays installed after ``fit`` returns.
    ``stop_if`` (polled every ``poll_s``) aborts the run the same way once it returns true (e.g. the
    run's lease was taken over); the caller then says why. Both only in the main thread: Ray Train
    hands over its controller there alone.
    """
    import ray

    controllers: list[Any] = []

    def abort(controller: Any) -> None:
        with contextlib.suppress(Exception):
            ray.get(controller.abort.remote(), timeout=60)

    def register(controller: Any) -> None:
        controllers.append(controller)

        def interrupt(signum: int, frame: Any) -> None:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: stop waiting
            abort(controller)
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, interrupt)

    if threading.current_thread() is not threading.main_thread():
        return trainer.fit()  # Ray Train registers no handler either
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_s):
            if controllers and stop_if():
                abort(controllers[0])
                return

    if stop_if is not None:
        threading.Thread(target=watch, name="elmo-train-stop-if", daemon=True).start()
    previous = signal.getsignal(signal.SIGINT)
    trainer._register_sigint_handler = register
    try:
        return trainer.fit()
    finally:
        done.set()
        signal.signal(signal.SIGINT, previous)


def repair_run_record(fs: Any, run_path: str, unusable: set[str] = frozenset()) -> list[str]:
    """Make Ray Train's record of the run (``<run>/checkpoint_manager_snapshot.json``) name only
    checkpoint folders that exist and are not in ``unusable`` (folder names the driver passed over):
    Ray 2.60 refuses to start a run whose record names a folder that is gone, and would hand the
    workers, and later delete under ``num_to_keep``, ones the run will write again. Returns the
    names dropped because their folder is gone. A record this cannot read is removed (Ray then
    starts with no record; the workers restore from storage all the same)."""
    import pyarrow.fs

    path = f"{run_path.rstrip('/')}/{RUN_RECORD}"
    try:
        if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
            return []
        with fs.open_input_stream(path) as stream:
            record = json.loads(stream.read())
        named = {entry["checkpoint_dir_name"] for entry in record["checkpoint_results"]}
        latest = record.get("latest_checkpoint_result")
        named |= {latest["checkpoint_dir_name"]} if latest else set()
        named |= {entry["checkpoint_dir_name"] for entry in record.get("pending_training_results", [])}
        infos = dict(zip(sorted(named), fs.get_file_info([f"{run_path.rstrip('/')}/{n}" for n in sorted(named)])))
        gone = sorted(n for n, info in infos.items() if info.type != pyarrow.fs.FileType.Directory)
        drop = set(gone) | (named & set(unusable))
        if not drop:
            return []
        _drop_from_record(record, drop)
        staged = f"{path}.{os.getpid()}.staging"
        with fs.open_output_stream(staged) as stream:
            stream.write(json.dumps(record).encode())
        fs.move(staged, path)
    except (KeyError, TypeError, ValueError, AttributeError, AssertionError):
        log.warning("removed Ray Train's record of the run (%s), which could not be read; the run continues from "
                    "the newest complete checkpoint in storage", path)
        fs.delete_file(path)
        return []
    return gone


def _drop_from_record(record: dict[str, Any], drop: set[str]) -> None:
    """Remove the checkpoints named ``drop`` from a Ray 2.60 ``_CheckpointManagerState`` dict."""
    results, indices = record["checkpoint_results"], record["checkpoint_report_indices"]
    assert len(results) == len(indices)
    kept = [(r, i) for r, i in zip(results, indices) if r["checkpoint_dir_name"] not in drop]
    record["checkpoint_results"] = [r for r, _ in kept]
    record["checkpoint_report_indices"] = [i for _, i in kept]
    latest = record.get("latest_checkpoint_result")
    if latest and latest["checkpoint_dir_name"] in drop:
        record["latest_checkpoint_result"] = max(kept, key=lambda pair: pair[1])[0] if kept else None
    pending, specs = record.get("pending_training_results", []), record.get("pending_validation_specs", [])
    assert len(pending) == len(specs)
    kept_pending = [(r, v) for r, v in zip(pending, specs) if r["checkpoint_dir_name"] not in drop]
    record["pending_training_results"] = [r for r, _ in kept_pending]
    record["pending_validation_specs"] = [v for _, v in kept_pending]
    for key in ("validated_checkpoint_dir_names", "timed_out_validation_checkpoint_dir_names",
                "failed_validation_checkpoint_dir_names"):
        if key in record:
            record[key] = [name for name in record[key] if name not in drop]


@contextlib.contextmanager
def checkpoint_directory(fs: Any, path: str) -> Iterator[Path]:
    """The checkpoint at ``path`` on the pyarrow filesystem ``fs`` as a local directory."""
    import ray.train

    with ray.train.Checkpoint(path, filesystem=fs).as_directory() as directory:
        yield Path(directory)


@contextlib.contextmanager
def result_checkpoint(result: Any, store: dict[str, Any] | None = None) -> Iterator[Path | None]:
    """The final checkpoint of a finished run as a local directory (``None`` if it has none): Ray's,
    else the newest complete one in ``store`` (``{"fs", "path"}``) if it is final — a finished run
    whose checkpoint Ray Train has no record of reports none again."""
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as directory:
            yield Path(directory)
        return
    found = None if store is None else newest_complete_checkpoint(store["fs"], store["path"])
    if found is None or not found[1].get("final"):
        yield None
        return
    with checkpoint_directory(store["fs"], found[0]) as directory:
        yield directory


# ---- worker side -------------------------------------------------------------------------


def quiet_report_logs() -> None:
    """Drop Ray Train's INFO line per ``report`` call on this worker (it logs them under the module's
    file path, not a ``ray.train`` name, so ``LoggingConfig`` does not reach them), and its traceback
    of an :class:`~elmo_model.errors.ElmoError` ("Error in training function: …", once per attempt):
    that error reaches the driver, which prints its one line (``ray_support.clean_errors``)."""
    from ray.train.v2._internal import util
    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(logging.WARNING)
    logger = logging.getLogger(util.__name__)
    if not any(isinstance(f, _ElmoErrorTraceback) for f in logger.filters):
        logger.addFilter(_ElmoErrorTraceback())


class _ElmoErrorTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("Error in training function") and "elmo_model.errors.ElmoError: " in text)


def world() -> tuple[int, int]:
    """(rank, world size) of this training worker."""
    import ray.train

    context = ray.train.get_context()
    return context.get_world_rank(), context.get_world_size()


def device() -> Any:
    """The torch device Ray Train assigned to this worker (``cpu`` or ``cuda:N``)."""
    import ray.train.torch

    return ray.train.torch.get_device()


def get_object(ref: Any) -> Any:
    """The value behind a :func:`put_object` reference."""
    import ray

    return ray.get(ref)


def dataset(name: str) -> Any:
    """This worker's iterator over dataset ``name`` (the whole dataset: nothing is split)."""
    import ray.train

    return ray.train.get_dataset_shard(name)


@contextlib.contextmanager
def restored_checkpoint(store: dict[str, Any] | None = None) -> Iterator[tuple[Path, dict[str, Any], str] | None]:
    """The checkpoint to resume from (after a failure or on a rerun of the same name) as a local
    directory, its ``meta.json`` and its folder's name (``checkpoint_000000010``), or ``None``:
    with ``store`` (``{"fs", "path"}``: the run's directory) the newest complete one in storage
    whose files have the recorded SHA-256 — the rule the driver applies, checked here on the
    downloaded copy — never Ray Train's own choice, which after an interrupted run can be an older
    one, none (its record unwritten), or one cut short."""
    import ray.train

    if store is None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as directory:
            yield Path(directory), {}, checkpoint.path.rstrip("/").rsplit("/", 1)[-1]
        return
    for path, meta in complete_checkpoints(store["fs"], store["path"]):
        with ray.train.Checkpoint(path, filesystem=store["fs"]).as_directory() as directory:
            if content_problem(meta, lambda name: open(Path(directory) / name, "rb")) is None:
                yield Path(directory), meta, path.rstrip("/").rsplit("/", 1)[-1]
                return
    yield None


def report(metrics: dict[str, Any], checkpoint_dir: str | os.PathLike | None = None,
           dir_name: str | None = None, run_url: str = "") -> None:
    """Report metrics (every rank must call this at the same steps); rank 0 may attach a checkpoint,
    stored by :func:`_staged_upload` (``run_url`` names the run's folder in its messages)."""
    import ray.train

    checkpoint = None if checkpoint_dir is None else ray.train.Checkpoint.from_directory(os.fspath(checkpoint_dir))
    upload = None if checkpoint is None else lambda ckpt, name: _staged_upload(ckpt, name, run_url)
    ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=dir_name, checkpoint_upload_fn=upload)


STAGING_PREFIX = "_staging."  # <run>/_staging.checkpoint_000000030.<random>: a checkpoint being written


def _staged_upload(checkpoint: Any, dir_name: str, run_url: str = "") -> Any:
    """Ray Train's ``checkpoint_upload_fn``: the local checkpoint directory into ``<run>/<dir_name>``,
    complete or not at all. On a local filesystem it is written under a staging name in the run's
    folder, then renamed (a checkpoint folder of that name left from before — one the run passed
    over — is replaced); on an object store (no renames) straight to its name, ``meta.json`` last,
    so that until then it is never complete (:mod:`pipelines.train.resume`). A failed write removes
    what it wrote; a full disk is one :class:`ElmoError` line naming the folder."""
    import uuid

    import pyarrow.fs
    import ray.train

    from elmo_model.errors import ElmoError
    from pipelines.io.storage import no_space
    from pipelines.train.resume import META_FILE

    storage = ray.train.get_context().get_storage()
    fs, run = storage.storage_filesystem, storage.experiment_fs_path.rstrip("/")
    final = f"{run}/{dir_name}"
    local = isinstance(fs, pyarrow.fs.LocalFileSystem)
    target = f"{run}/{STAGING_PREFIX}{dir_name}.{uuid.uuid4().hex[:8]}" if local else final
    source = Path(checkpoint.path)
    files = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    files = [f for f in files if f != META_FILE] + [f for f in files if f == META_FILE]  # meta.json last
    try:
        if not local:
            _delete_dir(fs, final)  # a stale one of that name: never mixed with this one's files
        for name in files:
            if local:
                fs.create_dir(f"{target}/{name}".rsplit("/", 1)[0])
            pyarrow.fs.copy_files(str(source / name), f"{target}/{name}",
                                  source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs)
        if local:
            _delete_dir(fs, final)
            fs.move(target, final)
    except OSError as exc:
        with contextlib.suppress(Exception):
            _delete_dir(fs, target)
        if no_space(exc):
            where = f"{run_url}/{dir_name}" if run_url else final
            raise ElmoError(f"{where}: cannot write the checkpoint: no space left on device") from None
        raise
    return ray.train.Checkpoint(final, filesystem=fs)


def _delete_dir(fs: Any, path: str) -> None:
    import pyarrow.fs

    if fs.get_file_info(path).type == pyarrow.fs.FileType.Directory:
        fs.delete_dir(path)
