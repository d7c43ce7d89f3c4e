"""What of Ray's own output an ``elmo`` user sees: only what matters.

Ray 2.60 prints, on every successful run, lines that ask nothing of the user:

- ``core_worker.cc: Actor with class name … has constructor arguments in the object store and
  max_restarts > 0`` at *error* level — from the driver's C++ core worker whenever Ray Data
  starts an actor pool (it always ``ray.put``\\ s the map function) and from Ray Train's
  controller for its own ``PreemptionWatcher``;
- ``(PlacementGroupCleaner pid=…) Failed to query Ray Train Controller actor state`` once a
  second: Ray Train V2's cleaner asks the dashboard's state API, which a Ray started without the
  dashboard (as ``elmo`` starts it) does not have; with two local Rays on one machine the same
  actor dies with "Found multiple active Ray instances". It can never act here (the watchdog of
  :mod:`pipelines.ray_watchdog` cleans up after a dead driver instead), so all its lines go;
- the token-authentication notice of ``ray.init``, Ray Data's "Truncating long operator name",
  "Progress bars disabled" and "Dataset … execution finished" from the workers;
- Ray Data's INFO log (execution plan, a progress line every few seconds when stderr is not a
  terminal, "Data sink Parquet finished"): its logger is set to WARNING.

Some of these are written by C++ or forwarded from worker processes by Ray's log monitor, so no
:mod:`logging` filter sees them: :class:`NoiseFilter` puts a pipe in front of a file descriptor
(2, and 1: Ray forwards a worker's lines to the driver's stream of the same kind) and drops
exactly the lines that match :data:`NOISE` (everything else passes through unchanged, in order). The ``elmo`` command installs it unless ``-v`` is given; the Python API never touches
the caller's file descriptors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import threading
import time
import uuid
from collections.abc import Iterator
from types import TracebackType

# One pattern per kind of line; each matches inside a single line (ANSI colour codes included).
NOISE = re.compile(
    rb"core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in the object store"
    rb"|\(PlacementGroupCleaner pid=\d+\)"
    rb"|Token authentication is enabled for this Ray cluster"
    rb"|Truncating long operator name to \d+ characters"
    rb"|Progress bars disabled\. To enable, set"
    rb"|\(\w+ pid=\d+\)\S* .*Dataset \S+ execution finished in"
)
_IDLE_FLUSH_S = 0.2  # a line still without its newline after this long is passed on as it is


class NoiseFilter:
    """Drops lines matching ``pattern`` from everything written to file descriptor ``fd`` (2 by
    default; by Python, C/C++ code in this process, or children started while it is installed)
    until :meth:`close`."""

    def __init__(self, pattern: re.Pattern[bytes] = NOISE, fd: int = 2) -> None:
        self.pattern, self.fd = pattern, fd
        self._real_fd: int | None = None
        self._sentinel = b"\0elmo-noise-filter-" + uuid.uuid4().hex.encode() + b"\n"
        self._drained = threading.Event()
        self._thread: threading.Thread | None = None

    def install(self) -> NoiseFilter:
        """Route the descriptor through the filter (a no-op if already installed)."""
        if self._real_fd is not None:
            return self
        _flush_python_streams()
        read_fd, write_fd = os.pipe()
        self._real_fd = os.dup(self.fd)
        os.dup2(write_fd, self.fd)
        os.close(write_fd)
        self._thread = threading.Thread(target=self._pump, args=(read_fd, self._real_fd),
                                        name=f"elmo-noise-filter-{self.fd}", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Pass on what is still in the pipe, then give the descriptor back."""
        if self._real_fd is None:
            return
        _flush_python_streams()
        os.write(self.fd, self._sentinel)
        self._drained.wait(timeout_s)
        os.dup2(self._real_fd, self.fd)  # the pipe's last writer in this process goes: the pump sees EOF
        self._real_fd = None

    def __enter__(self) -> NoiseFilter:
        return self.install()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _pump(self, read_fd: int, out_fd: int) -> None:
        pending, pending_since = b"", 0.0
        try:
            while True:
                wait = _IDLE_FLUSH_S if not pending else max(0.0, pending_since + _IDLE_FLUSH_S - time.monotonic())
                ready, _, _ = select.select([read_fd], [], [], wait)
                if ready:
                    chunk = os.read(read_fd, 65536)
                    if not chunk:
                        break
                    *lines, rest = (pending + chunk).split(b"\n")
                    for line in lines:
                        if line + b"\n" == self._sentinel:
                            self._drained.set()
                        elif not self.pattern.search(line):
                            _write_all(out_fd, line + b"\n")
                    if rest and (not pending or lines):
                        pending_since = time.monotonic()
                    pending = rest
                if pending and time.monotonic() - pending_since >= _IDLE_FLUSH_S:
                    _write_all(out_fd, pending)  # a progress bar (\r, no newline) or a prompt
                    pending = b""
        except OSError:
            pass
        finally:
            if pending:
                try:
                    _write_all(out_fd, pending)
                except OSError:
                    pass
            self._drained.set()
            os.close(read_fd)
            try:
                os.close(out_fd)
            except OSError:
                pass


def _flush_python_streams() -> None:
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def quiet_ray_data_console() -> None:
    """Ray Data's INFO lines (execution plans, periodic progress) off the console; its warnings
    stay, and its log file in the Ray session folder keeps everything."""
    import ray.data  # noqa: F401  (configures the "ray.data" logger's handlers on import)

    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(max(handler.level, logging.WARNING))


_enabled = False
_active: list[NoiseFilter] = []


def on_ray_start() -> None:
    """Called by :func:`pipelines.ray_support.ensure_ray` before ``ray.init``: inside
    :func:`quiet_cli_output` (the ``elmo`` command without ``-v``), start filtering."""
    if _enabled and not _active:
        _active.extend(NoiseFilter(fd=fd).install() for fd in (2, 1))


def after_ray_start() -> None:
    """Called after ``ray.init``: inside :func:`quiet_cli_output`, Ray Data's console to WARNING."""
    if _enabled:
        quiet_ray_data_console()


@contextlib.contextmanager
def quiet_cli_output(verbose: bool) -> Iterator[None]:
    """The ``elmo`` command's scope: unless ``verbose``, Ray's noise is dropped from the first
    Ray use until the command returns (its own error line is printed after, unfiltered)."""
    global _enabled
    _enabled = not verbose
    try:
        yield
    finally:
        _enabled = False
        if _active:  # this command started Ray: end it while filtering, as its log monitor prints
            import ray  # lines it held back for de-duplication ("[repeated 2x across cluster]") then

            with contextlib.suppress(Exception):
                ray.shutdown()
        while _active:
            _active.pop().close()
