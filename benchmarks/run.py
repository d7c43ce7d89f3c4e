"""``make bench``: every benchmark row in one process, one table.

``python -m benchmarks.run [--quick] [--all | --only MODULE ...] [--threads N] [--out DIR]``

Rows come from the modules in :data:`ROW_MODULES` (``--all`` adds :data:`EXTRA_MODULES`, which
take longer than ``make bench``'s ~10 minutes): each one that exists and defines
``rows(quick: bool = False) -> list[dict]`` contributes its rows (dicts with a ``"benchmark"``
key; the other keys become columns). A module that is missing, or has no ``rows``, is skipped
with a note — add a row source by writing such a function and listing its module here.
Writes ``benchmarks/results/bench.json`` and ``bench.md`` (markdown tables, machine info).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import torch

from benchmarks.machine import machine_info, matmul_gflops
from benchmarks.report import markdown

ROW_MODULES = (
    "benchmarks.model_bench",  # reference vs production inference, three shapes
    "benchmarks.precision_bench",  # fp32 / bf16 / int8 inference: speed and error
    "benchmarks.long_line_bench",  # a 100,000-token line: time, LSTM work, peak memory (1M: docs/results/long_line.md)
    "benchmarks.train_bench",  # training tokens/s, in-process
    "benchmarks.train_path_bench",  # training tokens/s, fast vs step-by-step path
)
EXTRA_MODULES = (
    "benchmarks.train_ray_bench",  # training tokens/s on Ray, 1 and 2 workers
    "benchmarks.ingest_bench",  # ingestion lines/s (when it defines rows())
    "benchmarks.embed_cli_bench",  # `elmo embed` vs in-process (when it exists)
    "benchmarks.train_quality_bench",  # held-out perplexity at equal time vs plain PyTorch (5 min each)
)
RESULTS = Path(__file__).parent / "results"


def collect(modules: list[str], quick: bool) -> tuple[list[dict], list[str]]:
    """Rows of every available module, and notes on those skipped or failed."""
    rows, notes = [], []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            notes.append(f"{name}: not present, skipped")
            continue
        if not hasattr(module, "rows"):
            notes.append(f"{name}: defines no rows(), skipped")
            continue
        start = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        module_rows = module.rows(quick=quick)
        print(f"[bench] {name}: {len(module_rows)} rows in {time.perf_counter() - start:.0f} s", flush=True)
        rows += module_rows
    return rows, notes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few small batches (a smoke test)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--all", action="store_true", help="also the longer EXTRA_MODULES")
    group.add_argument("--only", nargs="+", metavar="MODULE", help="just these row modules")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine, runs with as many threads "
                             "as cores swing by several × whenever another job runs; 0 = torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"output directory (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    chosen = args.only or (ROW_MODULES + EXTRA_MODULES if args.all else ROW_MODULES)
    modules = [m if m.startswith("benchmarks.") else f"benchmarks.{m}" for m in chosen]
    start = time.perf_counter()
    ceiling_before = matmul_gflops()
    rows, notes = collect(modules, args.quick)
    ceiling = max(ceiling_before, matmul_gflops())
    for row in rows:
        if "gflop_per_s_equiv" in row:
            row["pct_matmul_ceiling"] = 100 * row["gflop_per_s_equiv"] / ceiling
    result = {
        "machine": machine_info(), "matmul_4096_gflops": ceiling,
        "matmul_4096_gflops_at_start": ceiling_before, "quick": args.quick,
        "seconds": time.perf_counter() - start, "rows": rows, "notes": notes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / "bench.md").write_text(table)
    print(table)
    return result


if __name__ == "__main__":
    main()
