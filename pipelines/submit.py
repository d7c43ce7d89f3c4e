"""Submit an ``elmo`` subcommand to a Ray cluster as a Ray job, stream its logs, return its status.

A thin layer over ``ray.job_submission.JobSubmissionClient`` (the ``ray[default]`` part of the
``pipelines`` extra). The job's entrypoint is ``python -m pipelines.cli <subcommand ...>`` — the
same as ``elmo <subcommand ...>`` wherever the package is importable: installed on the cluster, or
uploaded with the job as its ``working_dir`` (from a checkout this project's directory is the
default, without ``.venv``, ``data/cache``, ``runs``, ``.git``).

The runtime environment carries the S3 and GCS settings that say *where* storage is
(:data:`FORWARDED_ENV`, when set here: endpoint, region, profile name, emulator, project — the same
list a driver joining a cluster with ``RAY_ADDRESS`` forwards, :mod:`pipelines.io.worker_env`) and
whatever ``--env`` names. Credentials are forwarded only when named explicitly, with a warning of
where they will appear (Ray records a job's runtime environment in plain text: the job table and
the head's ``runtime_env_agent.log``), and no value is ever printed: on a real cluster the workers
use the cluster's own credentials (instance profile, IRSA, a mounted credentials file).

Exit status: the job's — 0 when it SUCCEEDED, the entrypoint's own exit status when it FAILED
(1 if Ray does not know it), 1 when someone STOPPED it. Ctrl-C here stops the job and returns 130;
SIGTERM does the same and returns 143.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from elmo_model.errors import ElmoError
from pipelines.io.worker_env import CREDENTIAL_VARS, FORWARDED_VARS, exposure_warning
from pipelines.sigterm import sigterm_raises

# Where storage is (S3 and GCS), not who may use it: forwarded whenever set in the submitting shell.
FORWARDED_ENV = FORWARDED_VARS
# gitignore-style patterns, relative to the working dir (Ray also honours .gitignore files there).
DEFAULT_EXCLUDES = (".git", ".venv", "/data/cache", "/runs", "/build", "__pycache__", "*.egg-info",
                    ".pytest_cache", "*.partial")
# Ray's client lets these override any address it is given; the address is resolved here instead.
_ADDRESS_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
ENTRYPOINT = ("python", "-m", "pipelines.cli")
INTERRUPTED = 130  # Ctrl-C (SIGINT) stopped the job
TERMINATED = 143  # SIGTERM (e.g. the pod or CI step running elmo submit was cancelled) stopped it


class _Terminated(KeyboardInterrupt):
    """SIGTERM while following a job: handled like Ctrl-C."""


@dataclass(frozen=True)
class Submission:
    """What to run where: the dashboard address, the ``elmo`` arguments, the runtime environment."""

    address: str
    command: tuple[str, ...]  # elmo's arguments, e.g. ("vocab", "--input", "s3://...")
    working_dir: str | None = None
    pip: tuple[str, ...] = ()
    env_vars: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold credentials

    @property
    def entrypoint(self) -> str:
        return shlex.join([*ENTRYPOINT, *self.command])

    def runtime_env(self) -> dict[str, Any]:
        env: dict[str, Any] = {}
        if self.working_dir is not None:
            env.update(working_dir=self.working_dir, excludes=list(DEFAULT_EXCLUDES))
        if self.pip:
            env["pip"] = list(self.pip)
        if self.env_vars:
            env["env_vars"] = dict(self.env_vars)
        return env

    def describe(self) -> list[str]:
        """What will be submitted, for the console: names of forwarded variables, never values."""
        lines = [f"cluster: {self.address}", f"entrypoint: {self.entrypoint}",
                 f"working dir: {self.working_dir or '(none: the package must be installed on the cluster)'}"]
        if self.pip:
            lines.append(f"pip: {' '.join(self.pip)}")
        if self.env_vars:
            lines.append(f"environment: {', '.join(sorted(self.env_vars))} (values not shown)")
        credentials = sorted(set(self.env_vars) & set(CREDENTIAL_VARS))
        if credentials:
            lines.append(f"warning: {exposure_warning(credentials, self.address)}")
        return lines


def resolve_address(flag: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """``--address``, else ``RAY_API_SERVER_ADDRESS``, else ``RAY_ADDRESS``, else an error."""
    for value in (flag, *(environ.get(name) for name in _ADDRESS_VARS)):
        if value and value.strip():
            return value.strip()
    raise ElmoError("no Ray cluster address: pass --address http://HEAD:8265 or set RAY_ADDRESS "
                    "(the dashboard's URL, e.g. from `ray dashboard cluster/aws.yaml`)")


def elmo_command(argv: Sequence[str], build_parser: Callable[[], argparse.ArgumentParser]) -> tuple[str, ...]:
    """The ``elmo`` arguments after ``--`` (a leading ``elmo`` is dropped), checked by elmo's parser.

    ``build_parser`` builds elmo's parser (:func:`pipelines.cli.build_parser`, passed in: this module
    sits below the CLI). An unknown subcommand or flag fails here (after argparse's message), before
    anything is submitted.
    """
    args = list(argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if args[:1] == ["elmo"]:
        args = args[1:]
    if not args:
        raise ElmoError("nothing to submit: give the command after --, e.g. elmo submit -- vocab --input URL ...")
    if args[0] == "submit":
        raise ElmoError("elmo submit cannot submit itself")
    try:
        build_parser().parse_args(args)  # argparse prints what is wrong
    except SystemExit as exc:
        if exc.code:
            raise ElmoError(f"not a valid elmo command line: {shlex.join(args)}") from None
        raise  # --help
    return tuple(args)


def env_vars(assignments: Sequence[str], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """:data:`FORWARDED_ENV` (those set here), then each ``--env KEY=VALUE`` or ``--env KEY`` (copied from here)."""
    result = {name: environ[name] for name in FORWARDED_ENV if environ.get(name)}
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise ElmoError(f"--env {key or item!r}: expected KEY=VALUE or KEY (a variable name)")
        if not sep:
            if key not in environ:
                raise ElmoError(f"--env {key}: {key} is not set in this environment")
            value = environ[key]
        result[key] = value
    return result


def project_dir() -> Path | None:
    """This checkout's root (the directory holding ``pyproject.toml`` and ``pipelines/``), if any."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "pipelines" / "cli.py").is_file() else None


@contextlib.contextmanager
def _without(names: Sequence[str]) -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def connect(address: str) -> Any:
    """A ``JobSubmissionClient`` for ``address``; an unreachable cluster is an :class:`ElmoError`."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise ElmoError("elmo submit needs Ray's job client: pip install 'elmo-ray[pipelines]'") from None
    try:
        with _without(_ADDRESS_VARS):  # or Ray would prefer them to the address resolved here
            return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ElmoError(f"cannot reach the Ray cluster at {address}: {first}") from None


def submit(client: Any, submission: Submission) -> str:
    try:
        return client.submit_job(entrypoint=submission.entrypoint, runtime_env=submission.runtime_env(),
                                 metadata={"elmo_command": submission.command[0]})
    except (RuntimeError, ValueError) as exc:  # a rejected request, a bad runtime env, an upload failure
        raise ElmoError(f"{submission.address}: the job was not accepted: {str(exc).strip()}") from None


async def _tail(client: Any, job_id: str, out: TextIO) -> None:
    async for chunk in client.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()


def _stream_logs(client: Any, job_id: str, out: TextIO) -> None:
    """Run :func:`_tail` in a daemon thread; return when the stream ends, re-raising its error.

    The main thread only waits, so Ctrl-C (and SIGTERM's handler) interrupt it at once. With the
    event loop in the main thread, ``asyncio.run`` turns Ctrl-C into a cancellation of the log
    stream instead, which the websocket code of Ray's SDK can delay indefinitely (seen here).
    """
    failure: list[BaseException] = []

    def tail() -> None:
        try:
            asyncio.run(_tail(client, job_id, out))
        except BaseException as exc:  # noqa: BLE001 — handed to the main thread
            failure.append(exc)

    thread = threading.Thread(target=tail, name=f"logs-{job_id}", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if failure:
        raise failure[0]


def follow(client: Any, job_id: str, out: TextIO, poll_s: float = 0.5) -> Any:
    """Stream the job's logs to ``out`` until it ends; its final ``JobInfo``. Ctrl-C propagates."""
    try:
        _stream_logs(client, job_id, out)
    except RuntimeError as exc:  # the log stream broke off; the job itself may be fine
        print(f"elmo submit: log stream of {job_id} ended early ({exc}); waiting for the job",
              file=sys.stderr)
    while True:  # the status can trail the end of the log stream by a moment
        try:
            info = client.get_job_info(job_id)
        except (RuntimeError, OSError) as exc:
            raise ElmoError(f"lost contact with the cluster while following {job_id} (it may still be running): "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
        if info.status.is_terminal():
            return info
        time.sleep(poll_s)


def exit_status(job_id: str, info: Any) -> tuple[int, str]:
    """The exit status for a finished job and the line that explains it."""
    status = str(info.status)
    if status == "SUCCEEDED":
        return 0, f"elmo submit: job {job_id} succeeded"
    reason = (info.message or "").strip().splitlines()
    # "Job entrypoint command failed with exit code N, last available logs ...": the logs were just shown
    reason_text = f": {reason[0]}" if reason and not reason[0].startswith("Job entrypoint command failed") else ""
    if status == "FAILED":
        code = info.driver_exit_code
        code = code if isinstance(code, int) and 0 < code < 256 else 1
        return code, f"elmo submit: job {job_id} failed (exit status {code}){reason_text}"
    return 1, f"elmo submit: job {job_id} was {status.lower()}{reason_text}"


def stop(client: Any, job_id: str, wait_s: float = 10.0) -> str:
    """Ask Ray to stop the job; its status after up to ``wait_s`` seconds."""
    try:
        client.stop_job(job_id)
        deadline = time.monotonic() + wait_s
        while True:
            status = client.get_job_status(job_id)
            if status.is_terminal() or time.monotonic() > deadline:
                return str(status)
            time.sleep(0.25)
    except RuntimeError as exc:
        return f"unknown ({exc})"


def run(submission: Submission, wait: bool = True, out: TextIO | None = None) -> int:
    """Submit, then (unless ``wait`` is false) stream logs and return the job's exit status."""
    for line in submission.describe():
        print(f"elmo submit: {line}", file=sys.stderr)
    sdk_logger = logging.getLogger("ray.dashboard.modules.job.sdk")
    if sdk_logger.level == logging.NOTSET:  # it logs the log stream's closing at INFO level
        sdk_logger.setLevel(logging.WARNING)
    client = connect(submission.address)
    job_id = submit(client, submission)
    print(f"elmo submit: submitted {job_id}", file=sys.stderr)
    if not wait:
        print(f"elmo submit: follow it with: ray job logs --follow --address {submission.address} {job_id}",
              file=sys.stderr)
        return 0
    try:
        with sigterm_raises(_Terminated):
            info = follow(client, job_id, out or sys.stdout)
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, _Terminated) else "interrupted"
        print(f"\nelmo submit: {what}: stopping job {job_id}", file=sys.stderr)
        status = stop(client, job_id)
        print(f"elmo submit: job {job_id}: {status}", file=sys.stderr)
        return TERMINATED if isinstance(exc, _Terminated) else INTERRUPTED
    code, message = exit_status(job_id, info)
    print(message, file=sys.stderr)
    return code
