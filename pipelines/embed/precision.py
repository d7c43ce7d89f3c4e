"""``--precision auto`` for ``elmo embed``: decided once per run, where the actors run.

Every actor of a run computes in the same precision (an output's vectors are never of two
precisions): the driver resolves ``auto`` to ``fp32`` or ``bf16`` before the run binds its output,
and the actors get that precision, not ``auto``. The device looked at is the actors': with a Ray
cluster to join (``RAY_ADDRESS``, or Ray already started in this process), a one-off task with an
actor's resources reports its node's device; on a local Ray it is this machine's. An output
already bound to ``fp32`` or ``bf16`` vectors keeps that precision under ``auto`` (no device asked,
no run refused for a precision it did not choose); ``--replace`` decides afresh.
"""

from __future__ import annotations

import logging

from elmo_model.errors import ElmoError

log = logging.getLogger(__name__)


def _device_precision(precision: str, gpus: float) -> tuple[str, str]:
    from elmo_model.model.precision import resolve_precision

    return resolve_precision(precision, "cuda" if gpus > 0 else "cpu")


#: What ``auto`` can resolve to: an output bound to one of these keeps it.
AUTO_RESULTS = ("fp32", "bf16")


def auto_from_binding(bound: dict | None) -> str | None:
    """The precision ``auto`` keeps for an output bound to ``bound`` (None: decide by the device)."""
    kept = (bound or {}).get("precision")
    return kept if kept in AUTO_RESULTS else None


def resolve_run_precision(precision: str, bound: dict | None, replace: bool, cpus_per_actor: float,
                          gpus_per_actor: float, output_url: str) -> str:
    """The precision a run embeds in: ``auto`` keeps the output's (unless ``replace``), else
    :func:`resolve_pool_precision`."""
    kept = auto_from_binding(bound) if precision == "auto" and not replace else None
    if kept is not None:
        log.info("--precision auto: %s holds %s vectors: this run embeds in %s too", output_url, kept, kept)
        return kept
    return resolve_pool_precision(precision, cpus_per_actor, gpus_per_actor)


def resolve_pool_precision(precision: str, cpus_per_actor: float, gpus_per_actor: float) -> str:
    """``precision``, with ``auto`` resolved for the device of this run's actors (logged)."""
    if precision != "auto":
        return precision
    import ray

    from pipelines.io.worker_env import joins_existing_ray

    try:
        if ray.is_initialized() or joins_existing_ray():
            from pipelines.ray_support import ensure_ray

            ensure_ray()
            probe = ray.remote(_device_precision).options(num_cpus=min(cpus_per_actor, 1.0),
                                                          num_gpus=gpus_per_actor or None)
            chosen, why = ray.get(probe.remote(precision, gpus_per_actor))
        else:
            chosen, why = _device_precision(precision, gpus_per_actor)
    except (ValueError, RuntimeError, AssertionError) as exc:  # e.g. CUDA asked for and not there
        raise ElmoError(f"--precision auto: cannot tell the actors' device: {exc}") from None
    log.info("--precision auto: the actors run %s (%s)", chosen, why)
    return chosen
