"""`python -m benchmarks.run --quick` works end to end and its contenders agree with the reference.

Speed is not tested; this keeps the benchmark runnable and its table honest (every path's vectors
within 1e-5 of the reference oracle)."""

import json

import torch

from benchmarks import run


def test_quick_benchmark_writes_a_table_with_matching_vectors(tmp_path):
    threads = torch.get_num_threads()
    try:
        run.main(["--quick", "--only", "model_bench", "long_line_bench", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)  # the runner sets one thread for the whole process
    result = json.loads((tmp_path / "bench.json").read_text())
    inference = [r for r in result["rows"] if r["benchmark"] == "inference"]
    assert {r["path"] for r in inference} >= {"reference", "plain batched", "production", "embedder"}
    assert {r["shape"] for r in inference} == {"fixture", "small"}
    for row in inference:
        assert row["tokens_per_s"] > 0 and row["max_abs_diff"] < 1e-5, row
    assert any(r["benchmark"] == "long line" for r in result["rows"])
    table = (tmp_path / "bench.md").read_text()
    assert "### inference" in table and "matmul" in table
