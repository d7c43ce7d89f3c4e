"""The few version-sensitive Ray calls of the data stages, in one place (Ray pinned to 2.60).

- :func:`ensure_ray` starts (or joins, with ``RAY_ADDRESS``) Ray once per process; a Ray it starts
  is watched by :mod:`pipelines.ray_watchdog`, which kills its processes if the driver dies
  without shutting it down (SIGKILL, OOM kill); a Ray it joins gets the driver's storage settings
  in the job's runtime environment (:mod:`pipelines.io.worker_env`).
- :func:`keep_user_errors` makes a dataset raise the UDF's own exception (not Ray Data's generic
  ``UserCodeException``), so an :class:`ElmoError` raised in a worker reaches the driver.
- :func:`clean_errors` turns such a remote error back into one plain :class:`ElmoError` whose
  message is the worker's message, without Ray's traceback and retry notes.
- :func:`items_dataset`, :func:`actor_pool`, :func:`preserve_order`, :func:`quiet_progress`: the
  Ray Data source, compute strategy and dataset-context settings the jobs use;
  :func:`shutdown_ray` ends what :func:`ensure_ray` started.

Ray Train's calls live in :mod:`pipelines.train.ray_train`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from elmo_model.errors import ElmoError

logger = logging.getLogger(__name__)
_RAY_NOTE = re.compile(r"\nFailed to .* after \d+/\d+ attempts", re.S)  # appended by Ray Data's retry logic
_TRACEBACK_ELMO = re.compile(r"ElmoError: (.+)")


def ensure_ray(num_cpus: int | None = None) -> None:
    """``ray.init`` unless Ray is already initialised in this process."""
    import ray

    from pipelines import ray_noise
    from pipelines.io.worker_env import job_runtime_env, joins_existing_ray

    if not ray.is_initialized():
        ray_noise.on_ray_start()
        # Without RAY_ADDRESS, a Ray of our own: a plain ray.init() would join any `ray start` cluster
        # on this machine (its ray_current_cluster file), someone else's included.
        address = None if joins_existing_ray() else "local"
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env=job_runtime_env())
        if address == "local":
            start_watchdog()
        ray_noise.after_ray_start()


def start_watchdog() -> subprocess.Popen | None:
    """A process (own session, no inherited pipes) that kills this driver's Ray processes once the
    driver is gone; None where ``/proc`` is missing (not Linux)."""
    from pipelines import ray_watchdog

    start = ray_watchdog.start_time(os.getpid())
    if start is None:
        return None
    return subprocess.Popen([sys.executable, ray_watchdog.__file__, str(os.getpid()), start],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def shutdown_ray() -> None:
    """``ray.shutdown`` (what :func:`ensure_ray` started in this process)."""
    import ray

    ray.shutdown()


class _DropElmoTracebacks(logging.Filter):
    """Ray Data logs a remote error's whole traceback (and, for an exception that is not its own
    UserCodeException, a note calling it a Ray bug); an ElmoError's message says it all, and so
    does the one line a full disk becomes (``elmo embed``). Kept
    when the root logger is at DEBUG (``elmo -v``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        current = record.exc_info[1] if record.exc_info else sys.exc_info()[1]  # logged while handling it
        if current is None:
            return True
        from pipelines.io.storage import no_space

        return _elmo_message(current) is None and not no_space(current)  # both end as one ElmoError line


_NOISY_LOGGERS = ("ray.data._internal.execution.streaming_executor_state", "ray.data.exceptions")
_FILTER = _DropElmoTracebacks()


def keep_user_errors(ds: Any) -> Any:
    """Let ``ds`` (and datasets derived from it) raise the UDFs' own exceptions."""
    ds.context.raise_original_map_exception = True
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)  # idempotent: a filter is added once
    return ds


def items_dataset(rows: list[dict]) -> Any:
    """A dataset of ``rows``, one block per row, raising its UDFs' own errors (:func:`keep_user_errors`)."""
    import ray.data

    return keep_user_errors(ray.data.from_items(rows, override_num_blocks=len(rows)))


def actor_pool(min_size: int, max_size: int) -> Any:
    """An autoscaling actor pool for ``map_batches`` (Ray Data restarts dead actors, retries their tasks)."""
    import ray.data

    return ray.data.ActorPoolStrategy(min_size=min_size, max_size=max_size)


def preserve_order(ds: Any) -> Any:
    """Make ``ds`` (and datasets derived from it) keep block order through every stage."""
    ds.context.execution_options.preserve_order = True
    return ds


def quiet_progress(ds: Any) -> Any:
    """No progress bars for ``ds`` (iterated many times, e.g. once per epoch by every worker)."""
    ds.context.enable_progress_bars = False
    return ds


def _elmo_message(exc: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if isinstance(current, ElmoError) and not isinstance(cause, BaseException):
            return _RAY_NOTE.split(str(current))[0]
        current = cause if isinstance(cause, BaseException) else current.__cause__
    match = _TRACEBACK_ELMO.search(str(exc))  # the original only survives as text
    return match.group(1) if match else None


@contextlib.contextmanager
def clean_errors() -> Iterator[None]:
    """Re-raise an :class:`ElmoError` from a Ray worker as a plain one with the worker's message."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, ElmoError) and type(exc).__module__ == ElmoError.__module__:
            raise
        message = _elmo_message(exc)
        if message is None:
            raise
        raise ElmoError(message) from None
