"""Helpers for the pipelines tests: an embedded S3 with its environment, a local Ray, oracles."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator

from pipelines.io.local_s3 import LocalS3

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
