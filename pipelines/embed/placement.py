"""Placement that cannot hang: does the cluster hold the actor pool, and what is a stalled job waiting for?

Ray Data waits forever for an actor pool whose actors fit on no node ("Cluster resources are not
enough", a warning, then nothing). :func:`check_placement` compares the pool's needs with the
nodes' resources before anything starts and fails in seconds with one line naming the shortfall
(or, given ``wait_for_nodes_s``, waits that long for an autoscaler to add nodes, saying so).
:class:`StallWatch` prints, while the job runs, what it waits for whenever no output appeared for
``stall_s`` seconds.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from elmo_model.errors import ElmoError

log = logging.getLogger(__name__)
_EPS = 1e-9


@dataclass(frozen=True)
class PoolNeeds:
    """What an embedding pool needs to make progress: ``min_actors`` actors and one read task (a
    write task asks the same ``read_cpus``)."""

    min_actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    read_cpus: float

    def describe(self) -> str:
        gpus = f" + {self.gpus_per_actor:g} GPU" if self.gpus_per_actor else ""
        return (f"{self.min_actors} actor(s) × ({self.cpus_per_actor:g} CPU{gpus}) + {self.read_cpus:g} CPU "
                "for reading and writing")


def shortfall(needs: PoolNeeds, nodes: Sequence[dict[str, float]]) -> str | None:
    """Why ``nodes`` (each node's total resources) cannot run the pool, in one line; None if they can.

    Actors are placed greedily, node by node; then one read task must fit in what is left."""
    cpa, gpa = needs.cpus_per_actor, needs.gpus_per_actor
    if not nodes:
        return "the cluster has no alive nodes"
    most_cpus = max(n.get("CPU", 0.0) for n in nodes)
    most_gpus = max(n.get("GPU", 0.0) for n in nodes)
    if cpa > most_cpus + _EPS:
        return f"--cpus-per-actor {cpa:g}: the largest node has {most_cpus:g} CPUs"
    if gpa > most_gpus + _EPS:
        return (f"--gpus-per-actor {gpa:g}: no node has a GPU" if most_gpus == 0
                else f"--gpus-per-actor {gpa:g}: the largest node has {most_gpus:g} GPUs")
    if needs.read_cpus > most_cpus + _EPS:
        return f"read_cpus {needs.read_cpus:g}: the largest node has {most_cpus:g} CPUs"
    left = []
    placed = 0
    for node in nodes:
        cpus, gpus = node.get("CPU", 0.0), node.get("GPU", 0.0)
        fit = math.floor((cpus + _EPS) / cpa) if cpa else needs.min_actors
        if gpa:
            fit = min(fit, math.floor((gpus + _EPS) / gpa))
        fit = min(fit, needs.min_actors - placed)
        placed += fit
        left.append(cpus - fit * cpa)
    total = sum(n.get("CPU", 0.0) for n in nodes)
    if placed < needs.min_actors:
        return (f"--actors {needs.min_actors},… needs {needs.describe()}; the cluster's "
                f"{len(nodes)} node(s) hold only {placed} such actor(s) ({total:g} CPUs in all)")
    if max(left) + _EPS < needs.read_cpus:
        return (f"--actors {needs.min_actors},… with --cpus-per-actor {cpa:g} leaves no room for the reads: "
                f"needs {needs.describe()}, the cluster has {total:g} CPUs (lower MIN of --actors or "
                "--cpus-per-actor)")
    return None


def node_resources() -> list[dict[str, float]]:
    """Total resources of each alive node of the connected Ray cluster."""
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def check_placement(needs: PoolNeeds, wait_for_nodes_s: float = 0.0, poll_s: float = 5.0,
                    nodes: Callable[[], list[dict[str, float]]] = node_resources) -> None:
    """Raise :class:`ElmoError` with the shortfall unless the cluster can run the pool; with
    ``wait_for_nodes_s`` > 0, first wait up to that long for nodes (an autoscaling cluster)."""
    deadline = time.monotonic() + wait_for_nodes_s
    said = False
    while True:
        why = shortfall(needs, nodes())
        if why is None:
            if said:
                log.info("the cluster can now run the actor pool")
            return
        if time.monotonic() >= deadline:
            waited = f" (waited {wait_for_nodes_s:g} s for nodes)" if wait_for_nodes_s else ""
            raise ElmoError(f"the actor pool cannot be placed: {why}{waited}")
        if not said:
            log.warning("waiting up to %g s for the cluster to add nodes: %s", wait_for_nodes_s, why)
            said = True
        time.sleep(poll_s)


def waiting_for(needs: PoolNeeds) -> str:
    """One line on what a stalled pool may be waiting for: its needs against the free resources."""
    import ray

    free = ray.available_resources()
    total = ray.cluster_resources()
    return (f"the pool needs {needs.describe()}; free now: {free.get('CPU', 0):g} of {total.get('CPU', 0):g} CPUs"
            + (f", {free.get('GPU', 0):g} of {total.get('GPU', 0):g} GPUs" if total.get("GPU") else "")
            + " (other jobs on the cluster, or nodes that went away, hold the rest)")


class StallWatch:
    """While active, logs a warning with :func:`waiting_for` whenever ``progress()`` (e.g. the count
    of output files) has not changed for ``stall_s`` seconds; ``stall_s`` = 0 turns it off."""

    def __init__(self, progress: Callable[[], int], needs: PoolNeeds, stall_s: float, poll_s: float = 10.0) -> None:
        self.progress, self.needs, self.stall_s, self.poll_s = progress, needs, stall_s, min(poll_s, stall_s or poll_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="elmo-stall-watch", daemon=True)

    def __enter__(self) -> StallWatch:
        if self.stall_s > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        last, since = None, time.monotonic()
        while not self._stop.wait(self.poll_s):
            try:
                now = self.progress()
            except Exception:  # noqa: BLE001 - a failed listing is not progress; try again
                continue
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= self.stall_s:
                try:
                    detail = waiting_for(self.needs)
                except Exception as exc:  # noqa: BLE001
                    detail = f"(cannot read the cluster's resources: {exc})"
                log.warning("no new output for %.0f s; %s", time.monotonic() - since, detail)
                since = time.monotonic()
