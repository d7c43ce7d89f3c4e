"""The run lease of ``elmo embed`` (one run at a time per output URL). It lives in
:mod:`pipelines.io.lease`, shared with ``elmo train``; its names stay importable from here."""

from pipelines.io.lease import (EXIT_LEASE_HELD, LEASE, LeaseHeld, LeaseLost, LeaseRecord,  # noqa: F401
                                RunLease, _machine, _process_start)

__all__ = ["EXIT_LEASE_HELD", "LEASE", "LeaseHeld", "LeaseLost", "LeaseRecord", "RunLease"]
