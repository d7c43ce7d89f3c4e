"""SIGTERM as an exception in the main thread, so that a command cleans up on its way out."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def sigterm_raises(error: Callable[[], BaseException]) -> Iterator[None]:
    """While active, SIGTERM raises ``error()`` in the main thread (elsewhere: no change); the
    previous handler is restored afterwards."""
    def handler(signum: int, frame: object) -> None:
        raise error()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
