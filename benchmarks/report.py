"""Benchmark rows → markdown: one table per ``"benchmark"`` group, machine info on top."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

# Column order and headers for the inference rows; other groups show their keys as they come.
INFERENCE_COLUMNS = {
    "shape": "shape", "path": "path", "tokens_per_s": "tokens/s", "x_batched_reference": "× batched reference",
    "x_reference": "× per-step oracle",
    "x_plain_batched": "× plain batched", "pct_matmul_ceiling": "% matmul ceiling",
    "max_abs_diff": "max \\|diff\\| to reference", "peak_rss_mb": "peak RSS MB",
    "work_mb": "working MB", "batches": "batches",
}


def fmt(value) -> str:
    """Numbers to a readable precision; anything else as compact JSON/text."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 1e-3:
            return f"{value:.1e}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":")).replace("|", "\\|")
    return str(value).replace("|", "\\|")


def table(rows: list[dict], columns: dict[str, str] | None = None) -> str:
    """A markdown table of ``rows``; ``columns`` maps keys to headers (default: all keys)."""
    if columns is None:
        keys: list[str] = []
        for row in rows:
            keys += [k for k in row if k != "benchmark" and k not in keys]
        columns = {k: k for k in keys}
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(k, "")) for k in columns) + " |" for row in rows]
    return "\n".join(lines)


def _yes_no(flag: bool | None) -> str:
    return "not recorded" if flag is None else ("yes" if flag else "no")


def markdown(result: dict) -> str:
    """The whole report: machine line, then each group's table."""
    m = result["machine"]
    head = (f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gb', '?')} GB, "
            f"AMX {_yes_no(m.get('amx'))}, AVX512-BF16 {_yes_no(m.get('avx512_bf16'))}; torch "
            f"{m.get('torch')}, {m.get('threads')} threads; 4096² fp32 matmul "
            f"{result['matmul_4096_gflops']:.0f} GFLOP/s (best of start/end); load average at end "
            f"{m.get('load_avg_1m', '?')}; {result['seconds']:.0f} s in all"
            + (" (quick mode)" if result.get("quick") else "") + ".")
    groups: dict[str, list[dict]] = {}
    for row in result["rows"]:
        groups.setdefault(row.get("benchmark", "other"), []).append(row)
    parts = [head]
    for name, rows in groups.items():
        parts.append(f"### {name}\n\n" + table(rows, INFERENCE_COLUMNS if name == "inference" else None))
    if result.get("notes"):
        parts.append("Skipped: " + "; ".join(result["notes"]))
    return "\n\n".join(parts) + "\n"


def print_rows_main(rows: Callable[[bool], list[dict]], description: str) -> None:
    """``python -m benchmarks.<module> [--quick]`` for a row module: its rows as JSON lines."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true")
    for row in rows(parser.parse_args().quick):
        print(json.dumps(row))
