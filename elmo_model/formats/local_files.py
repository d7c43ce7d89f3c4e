"""Local files only: read one whole, or write one atomically.

The model package does no storage I/O: it takes local paths, bytes or open binary files. Object
storage (``s3://``, ``gs://``) is the job of :mod:`pipelines.io` — e.g.
``pipelines.io.model_store.load_model(url)`` fetches a model directory and loads it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from elmo_model.errors import ElmoError

LocalPath = str | os.PathLike


def local_path(path: LocalPath, what: str = "file") -> Path:
    """``path`` as a :class:`Path` (``file://`` stripped); any other URL raises :class:`ElmoError`."""
    text = os.fspath(path)
    if "://" in text and not text.startswith("file://"):
        raise ElmoError(f"{what} {text}: elmo_model reads local files only; fetch URLs with pipelines.io "
                        "(e.g. pipelines.io.model_store.load_model) or the elmo command")
    return Path(text.removeprefix("file://"))


def read_bytes(path: LocalPath, what: str = "file", max_bytes: int | None = None) -> bytes:
    """All bytes of the local file ``path``; a missing or unreadable file, or one over ``max_bytes``,
    raises :class:`ElmoError` (without reading more than ``max_bytes + 1`` bytes)."""
    file = local_path(path, what)
    try:
        with open(file, "rb") as handle:
            data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise ElmoError(f"{what} not found: {file}") from None
    except OSError as exc:
        raise ElmoError(f"cannot read {what} {file}: {exc.strerror or exc}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise ElmoError(f"{file}: larger than {max_bytes:,} bytes; not an {what}")
    return data


def write_atomically(target: LocalPath, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` on a hidden name beside ``target``, then rename it into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"_{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
