"""Reading model files from a local path or a URL.

Local paths need nothing extra. URLs (``s3://``, ``gs://``, ``https://`` ...) are read through
fsspec when it is installed (the ``pipelines`` extra brings it); the model code itself never needs
to know where the bytes came from.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from elmo_model.errors import ElmoError

PathOrUrl = str | os.PathLike


def is_url(path: PathOrUrl) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def local_path(path: PathOrUrl) -> Path:
    text = str(path)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


def read_bytes(path: PathOrUrl, what: str = "file") -> bytes:
    """All bytes of ``path``; a missing or unreadable file raises :class:`ElmoError` naming it."""
    if not is_url(path):
        try:
            return local_path(path).read_bytes()
        except FileNotFoundError:
            raise ElmoError(f"{what} not found: {path}") from None
        except OSError as exc:
            raise ElmoError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        import fsspec
    except ImportError:  # pragma: no cover - depends on the install
        raise ElmoError(f"reading {path} needs fsspec: pip install 'elmo-ray[pipelines]'") from None
    try:
        with fsspec.open(str(path), "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ElmoError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ElmoError(f"cannot read {what} {path}: {exc}") from None


def open_binary(path: PathOrUrl, what: str = "file") -> BinaryIO:
    """A seekable binary handle on ``path`` (URLs are read into memory once)."""
    return io.BytesIO(read_bytes(path, what))


def write_atomically(target: str | os.PathLike, write: Callable[[Path], object]) -> None:
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
