"""One run at a time per place: an exclusive, renewed, expiring lease — ``elmo embed`` takes one on
its output URL, ``elmo train`` on its run's checkpoints (``<storage>/<name>``).

``<place>/_lease.json`` holds the run id, host, pid, start and expiry. It is taken with a
conditional create (or, when the record there is released or expired, a compare-and-swap on the
token read), so of any number of contenders exactly one wins; see :mod:`pipelines.io.conditional`.
The holder renews it from a heartbeat thread (a compare-and-swap again) and marks it released at
the end. A lease whose holder ran on this machine and whose process is gone is treated as expired
at once, so a crashed scheduled run does not block the next one for ``ttl_s``.

The lease keeps honest runs apart; the embed manifest's own compare-and-swap
(:mod:`pipelines.embed.manifest`) makes sure that a run which lost its lease anyway (paused past its
expiry) cannot commit, and ``elmo train`` stops a run whose lease was taken over
(:meth:`RunLease.lost`). A store that does not answer for longer than the TTL loses the lease too:
the heartbeat says so and calls ``on_lost`` (``elmo embed`` then stops with one line).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from elmo_model.errors import ElmoError
from pipelines.io.conditional import ConditionFailed, create_exclusive, read_versioned, replace_if
from pipelines.io.storage import Location

log = logging.getLogger(__name__)

LEASE = "_lease.json"
EXIT_LEASE_HELD = 75  # EX_TEMPFAIL: "try again later", for schedulers


class LeaseHeld(ElmoError):
    """Another live run holds the output's lease."""

    exit_code = EXIT_LEASE_HELD


class LeaseLost(ElmoError):
    """This run's lease was taken over (it was not renewed in time)."""


def _machine() -> str:
    """This host and PID namespace: a PID recorded under the same value can be checked here."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id",):
        try:
            with open(path) as handle:
                parts.append(handle.read().strip())
        except OSError:
            pass
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass
    return "|".join(parts)


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    return stat[stat.rindex(")") + 2:].split()[19]


@dataclass(frozen=True)
class LeaseRecord:
    run_id: str
    host: str
    pid: int
    pid_start: str | None
    machine: str
    started: float
    expires: float
    released: bool = False

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"run {self.run_id} (host {self.host}, pid {self.pid}, started {started})"

    def holder_gone(self) -> bool:
        """True when the holder ran on this machine and its process no longer exists."""
        if self.machine != _machine():
            return False
        start = _process_start(self.pid)
        return start is None or (start != "?" and self.pid_start not in (None, start))

    def free(self, now: float) -> bool:
        return self.released or self.expires <= now or self.holder_gone()


class RunLease:
    """The lease of one run on one place (an output, a training run's checkpoints); use
    :meth:`acquire`, then :meth:`check` / :meth:`release`. ``command`` names the kind of run in
    messages (``another elmo embed is writing there``)."""

    def __init__(self, output: Location, run_id: str, ttl_s: float, command: str = "elmo embed",
                 on_lost: Callable[[], None] | None = None) -> None:
        self.loc = output.join(LEASE)
        self._on_lost = on_lost  # called (from the heartbeat thread) once the lease is lost
        self._renewed = time.monotonic()
        self.output_url, self.run_id, self.ttl_s, self.command = output.url, run_id, ttl_s, command
        self._token: str | None = None
        self._started = time.time()
        self._lost: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self, now: float, released: bool = False) -> bytes:
        record = LeaseRecord(self.run_id, socket.gethostname(), os.getpid(), _process_start(os.getpid()),
                             _machine(), self._started, now + self.ttl_s, released)
        return json.dumps(asdict(record), indent=1).encode()

    def acquire(self, wait_s: float = 0.0, poll_s: float = 2.0) -> RunLease:
        """Take the lease, waiting up to ``wait_s`` for a live holder; :class:`LeaseHeld` otherwise."""
        deadline = time.monotonic() + wait_s
        while True:
            holder = self._try_take()
            if holder is None:
                break
            if time.monotonic() >= deadline:
                remaining = max(0, int(holder.expires - time.time()))
                raise LeaseHeld(f"{self.output_url}: another {self.command} is writing there: {holder.describe()}; "
                                f"its lease expires in {remaining} s unless renewed (retry later, or --wait SECONDS)")
            time.sleep(max(0.05, min(poll_s, deadline - time.monotonic())))
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._heartbeat, name=f"{self.command.replace(' ', '-')}-lease",
                                        daemon=True)
        self._thread.start()
        return self

    def _try_take(self) -> LeaseRecord | None:
        """None once taken; the live holder's record otherwise."""
        now = time.time()
        current = read_versioned(self.loc)
        try:
            if current is None:
                self._token = create_exclusive(self.loc, self._record(now))
                return None
            try:
                holder = LeaseRecord(**json.loads(current.data))
            except (ValueError, TypeError):
                raise ElmoError(f"{self.loc.url}: not a lease record; remove it if no {self.command} is running"
                              ) from None
            if not holder.free(now):
                return holder
            self._token = replace_if(self.loc, self._record(now), current.token)
            if not holder.released:
                log.warning("took over the lease of %s from %s (expired or its process is gone)",
                            self.output_url, holder.describe())
            return None
        except ConditionFailed:  # another contender won this round: look again
            time.sleep(0.05)
            return self._try_take()

    def _heartbeat(self) -> None:
        interval = max(0.2, self.ttl_s / 4)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LeaseLost:
                self._lease_lost()
                return
            except Exception as exc:  # storage hiccup: keep trying (every ttl/4) until the lease runs out
                silent = time.monotonic() - self._renewed
                if silent < self.ttl_s:
                    log.warning("could not renew the lease on %s: %s", self.output_url, exc)
                    continue
                with self._lock:
                    self._lost = (f"{self.output_url}: this run ({self.run_id}) lost its lease: the store did not "
                                  f"answer for {silent:.0f} s, past the lease's {self.ttl_s:g} s ({exc}); stopped, "
                                  "nothing more is committed (rerun when the store is back)")
                log.error(self._lost)
                self._lease_lost()
                return

    def _lease_lost(self) -> None:
        if self._on_lost is not None:
            self._on_lost()

    def renew(self) -> None:
        with self._lock:
            if self._lost:
                raise LeaseLost(self._lost)
            try:
                self._token = replace_if(self.loc, self._record(time.time()), self._token or "")
                self._renewed = time.monotonic()
            except ConditionFailed:
                self._lost = (f"{self.output_url}: this run ({self.run_id}) lost its lease: another run took it "
                              "over (this one was not renewed in time); nothing more is committed")
                log.error(self._lost)
                raise LeaseLost(self._lost) from None

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the lease was taken over."""
        if self._lost:
            raise LeaseLost(self._lost)

    @property
    def lost_reason(self) -> str | None:
        """Why the lease was lost (taken over, or the store unreachable past the TTL); None if held."""
        return self._lost

    def lost(self) -> bool:
        """Whether the lease was taken over (:meth:`check` raises then)."""
        return self._lost is not None

    def release(self) -> None:
        """Stop renewing and mark the lease released (only if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._lost or self._token is None:
                return
            try:
                replace_if(self.loc, self._record(time.time(), released=True), self._token)
            except ConditionFailed:
                log.warning("the lease on %s was taken over before this run released it", self.output_url)
            except Exception as exc:
                log.warning("could not release the lease on %s: %s (it expires in %.0f s)",
                            self.output_url, exc, self.ttl_s)
            self._token = None

    def __enter__(self) -> RunLease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
