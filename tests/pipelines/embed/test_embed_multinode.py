"""`elmo embed` on a two-node Ray cluster on this machine (a head and a worker node, 1 CPU each,
separate raylets, via ``ray.cluster_utils.Cluster``): a one-file corpus puts the actors of both
nodes to work, and losing the worker node mid-run still gives every sentence exactly once."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pipelines_support import line_records, patched_env

from pipelines.fault_injection import ENV_VAR, traced_embed_rows

pytestmark = [pytest.mark.slow, pytest.mark.ray]
WORDS = "the bank raised its rates we sat on river a third line here another file with words and".split()


def _corpus(path: Path, n_lines: int, seed: int) -> str:
    rng = random.Random(seed)
    text = "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) + "\n" for _ in range(n_lines))
    path.write_text(text)
    return text


def _embed(address: str, model: Path, corpus: Path, output: Path, trace: Path, actors: str = "2,2") -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": address, ENV_VAR: json.dumps({"embed_actor_trace_dir": str(trace)})}
    # 0.75 CPU per actor: one actor per 1-CPU node, and a read task (0.25) fits beside it.
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "embed", "--model", str(model), "--input",
                             str(corpus), "--output", str(output), "--actors", actors, "--cpus-per-actor", "0.75",
                             "--batch-size", "64"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rows_by_node(trace: Path) -> dict[str, int]:
    rows: dict[str, int] = {}
    for actor, count in traced_embed_rows(trace).items():
        node = actor.rsplit("-", 1)[0]
        rows[node] = rows.get(node, 0) + count
    return rows


@pytest.fixture()
def model(tmp_path) -> Path:
    """The "small" shape with random weights: embedding, not start-up, dominates the run."""
    from benchmarks.embed_cli_bench import _write_model

    return _write_model(tmp_path / "small")


def test_one_file_on_two_nodes_uses_both_and_survives_losing_one(model, tmp_path):
    from ray.cluster_utils import Cluster

    with patched_env({"RAY_AUTH_MODE": "disabled"}):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})  # shutdown() forgets its address
        try:
            node = cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            text = _corpus(tmp_path / "one.txt", 8_000, seed=4)
            trace = tmp_path / "trace"
            trace.mkdir()
            output, _ = _embed(cluster.address, model, tmp_path / "one.txt", tmp_path / "out", trace).communicate(timeout=900)
            rows = _rows_by_node(trace)
            assert len(rows) == 2, (rows, output[-3000:])  # an actor on each node embedded
            assert min(rows.values()) * 2 >= max(rows.values()), rows  # within 2x of each other
            table = pq.read_table(tmp_path / "out")
            assert sorted(zip(table.column("line").to_pylist(), table.column("tokens").to_pylist())) == line_records(text)

            # Remove the worker node as soon as its actor has embedded something; a replacement joins (as an
            # autoscaler's would: a pool whose MIN actors no longer fit waits for one, saying what it waits for).
            text = _corpus(tmp_path / "two.txt", 8_000, seed=5)
            trace2 = tmp_path / "trace2"
            trace2.mkdir()
            proc = _embed(cluster.address, model, tmp_path / "two.txt", tmp_path / "out2", trace2)
            deadline = time.monotonic() + 300
            while len(_rows_by_node(trace2)) < 2 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert proc.poll() is None, "the run ended before both nodes worked"
            cluster.remove_node(node)  # its raylet, workers and actor are gone
            cluster.add_node(num_cpus=1)
            output, _ = proc.communicate(timeout=900)
            assert proc.returncode == 0, output[-4000:]
            table = pq.read_table(tmp_path / "out2")
            keys = list(zip(table.column("line").to_pylist(), table.column("tokens").to_pylist()))
            assert len({line for line, _ in keys}) == len(keys) and sorted(keys) == line_records(text)  # exactly once
        finally:
            cluster.shutdown()
