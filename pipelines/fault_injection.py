"""Test-only fault injection, switched on by the ``ELMO_TEST_FAULTS`` environment variable only.

No config key or flag reaches it: a user's config cannot crash a job. The tests set the
variable to a JSON object with any of these keys::

    {"embed_crash_before_commit": true,       # elmo embed exits (status 17) after staging, before commit
     "embed_crash_before_commit_number": 2,   # … before its 2nd commit instead (the 1st is kept)
     "embed_actor_trace_dir": "/tmp/d",       # each embed actor call appends its row count to <dir>/<node>-<pid>
     "embed_actor_exit_marker": "/tmp/m",     # the first embed actor call that finds no file there
                                              # creates it and kills its actor process
     "train_exit_before_step": 5,             # elmo train: worker `train_exit_rank` exits before that
     "train_exit_rank": 1,                    # step, once (while `train_exit_marker` is absent)
     "train_exit_marker": "/tmp/t"}

The driver reads the variable (:func:`planned`) and hands the plan to its Ray workers with their
other arguments: Ray workers may have been started before the variable was set.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from elmo_model.errors import ElmoError

ENV_VAR = "ELMO_TEST_FAULTS"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Faults:
    """The faults to inject (none by default)."""

    embed_crash_before_commit: bool = False
    embed_crash_before_commit_number: int = 0  # 0: the first commit when embed_crash_before_commit is set
    embed_actor_trace_dir: str = ""
    embed_actor_exit_marker: str = ""
    train_exit_before_step: int = 0  # 0: never
    train_exit_rank: int = 1
    train_exit_marker: str = ""


NONE = Faults()


def planned() -> Faults:
    """The faults ``ELMO_TEST_FAULTS`` asks for (:data:`NONE` when it is unset)."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return NONE
    try:
        return Faults(**json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise ElmoError(f"{ENV_VAR}: expected a JSON object with keys of {[f.name for f in dataclasses.fields(Faults)]} "
                        f"({exc})") from None


def crash_before_commit(faults: Faults, number: int = 1) -> None:
    """``elmo embed``'s driver, before its commit ``number`` (1-based): exit (status 17) with that
    group's staging written and not committed."""
    wanted = faults.embed_crash_before_commit_number or (1 if faults.embed_crash_before_commit else 0)
    if wanted and number == wanted:
        log.warning("test-only fault injection: exiting before the commit")
        os._exit(17)


def exit_embed_actor_once(faults: Faults) -> None:
    """An embed actor: die once (the first call anywhere that finds no marker file)."""
    marker = faults.embed_actor_exit_marker
    if marker and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        log.warning("test-only fault injection: this actor exits now")
        os._exit(1)


def trace_embed_actor(faults: Faults, rows: int) -> None:
    """An embed actor call: append its row count to ``<embed_actor_trace_dir>/<node id>-<pid>`` (which
    actors on which nodes worked)."""
    if faults.embed_actor_trace_dir:
        import ray

        name = f"{ray.get_runtime_context().get_node_id()[:12]}-{os.getpid()}"
        with open(os.path.join(faults.embed_actor_trace_dir, name), "a") as trace:
            trace.write(f"{rows}\n")


def traced_embed_rows(trace_dir: str | os.PathLike) -> dict[str, int]:
    """What :func:`trace_embed_actor` wrote under ``trace_dir``: rows embedded per actor,
    ``{"<node id>-<pid>": rows}``."""
    return {entry.name: sum(int(n) for n in open(entry.path).read().split()) for entry in os.scandir(trace_dir)}


def exit_train_worker_once(faults: Faults, next_step: int, rank: int) -> None:
    """A training worker about to train step ``next_step``: rank ``train_exit_rank`` dies once."""
    marker = faults.train_exit_marker
    if (faults.train_exit_before_step and next_step == faults.train_exit_before_step
            and rank == faults.train_exit_rank and marker and not os.path.exists(marker)):
        Path(marker).write_text(f"failed before step {next_step}\n")
        log.warning("fault injection: rank %d exits before step %d", rank, next_step)
        # Ray 2.60 takes a report off a worker's queue before the controller has it: a worker that
        # dies at that instant loses the report (then Ray resumes from an older checkpoint, still
        # exactly). Waiting a few health-check intervals keeps the test's resume point fixed.
        time.sleep(1.0)
        os._exit(1)
