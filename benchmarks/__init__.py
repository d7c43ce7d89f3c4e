"""Benchmarks: the reference oracle vs the production path, run interleaved in one process.

``python -m benchmarks.run`` (``make bench``) collects rows from the modules listed in
:data:`benchmarks.run.ROW_MODULES` and writes a markdown + JSON table under ``benchmarks/results``.
"""
