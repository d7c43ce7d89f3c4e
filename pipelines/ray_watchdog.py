"""Kill the Ray processes a driver started once the driver is gone (even after SIGKILL).

A local Ray started by ``ray.init`` shares the driver's fate only in part: on Linux the GCS and the
raylet get a parent-death signal, but the agents the raylet starts (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) outlive a SIGKILLed driver and ignore SIGTERM. This watchdog runs as a
separate process in its own session (started by :func:`pipelines.ray_support.ensure_ray`): once a
second it records the driver's descendant processes (pid + kernel start time, from ``/proc``);
when the driver's process is gone it SIGKILLs every recorded process that still runs — the same
pid *and* start time, so a reused pid is never hit — and their descendants, then exits. Only
processes whose command line mentions Ray are touched. Linux only (elsewhere it exits at once).

Run as a script (stdlib only, no package import): ``python ray_watchdog.py DRIVER_PID DRIVER_START``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

Table = dict[int, tuple[int, str]]  # pid -> (parent pid, start time in clock ticks since boot)


def process_table() -> Table:
    """Every process visible in /proc: parent and start time."""
    table: Table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(name)] = (int(fields[1]), fields[19])
    return table


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid``, None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def descendants(roots: set[int], table: Table) -> set[int]:
    """Every process below ``roots`` in ``table`` (not the roots themselves)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found - roots


def _is_ray(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"ray" in handle.read().lower()
    except OSError:
        return False


def watch(driver: int, driver_start: str, poll_s: float = 1.0) -> list[int]:
    """Block until ``driver`` is gone, then kill what it left; returns the pids killed."""
    me = os.getpid()
    known: dict[int, str] = {}
    while start_time(driver) == driver_start:
        table = process_table()
        for pid in descendants({driver}, table) - {me}:
            known[pid] = table[pid][1]
        known = {pid: start for pid, start in known.items() if table.get(pid, (0, None))[1] == start}
        time.sleep(poll_s)
    killed: list[int] = []
    for _ in range(5):
        table = process_table()
        alive = {pid for pid, start in known.items() if table.get(pid, (0, None))[1] == start}
        targets = {pid for pid in alive | descendants(alive, table) if pid != me and _is_ray(pid)}
        if not targets:
            break
        for pid in targets:
            known.setdefault(pid, table[pid][1])
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.5)
    return killed


def main(argv: list[str]) -> int:
    if not os.path.isdir("/proc/self"):
        return 0
    driver, driver_start = int(argv[0]), argv[1]
    watch(driver, driver_start)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
