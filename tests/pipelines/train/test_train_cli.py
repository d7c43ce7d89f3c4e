"""`elmo train` through the real command, end to end: the committed tiny config, everything on a moto S3.

The run builds the vocabulary, trains 6 steps on 2 workers (in bf16) with validation and publishes the model;
`elmo dump` reads the export. (A rerun continuing a run is tested in ``test_train_ray.py``.)
"""

import json
import uuid
from pathlib import Path

import h5py
import pytest
from pipelines_support import local_s3_env
from support import run_elmo

from pipelines.io import storage

pytestmark = pytest.mark.ray

ROOT = Path(__file__).parents[3]
CONFIG = ROOT / "pipelines" / "configs" / "train_tiny.toml"


@pytest.fixture(scope="module")
def s3():
    with local_s3_env("traincli") as server:
        lines = (ROOT / "pipelines" / "data" / "demo_corpus.txt").read_text().splitlines()
        storage.write_text("s3://traincli/corpus/train.txt", "\n".join(lines[:1500]) + "\n")
        storage.write_text("s3://traincli/corpus/valid/part-0.txt", "\n".join(lines[-100:]) + "\n")
        yield server


def _train(name: str, *extra: str):
    result = run_elmo("train", "--config", str(CONFIG), "--name", name, "--train", "s3://traincli/corpus/train.txt",
                      "--valid", "s3://traincli/corpus/valid/", "--output", f"s3://traincli/models/{name}",
                      "--storage", "s3://traincli/checkpoints", "--set", "training.log_every=2",
                      "--set", "training.checkpoint_every=3", "--set", "vocab_max_size=2000", *extra, timeout=600,
                      env={"RAY_AUTH_MODE": "disabled", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def test_train_command_end_to_end(s3, tmp_path):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    first = _train(name, "--steps", "6", "--precision", "bf16")  # bf16 autocast on CPU workers
    assert "training precision: bf16 autocast (asked for)" in first.stdout + first.stderr
    assert "steps: 6" in first.stdout and "valid perplexity:" in first.stdout
    assert "resumed at steps" not in first.stdout
    assert "step 6/6 loss" in first.stdout + first.stderr  # the workers' progress lines reach the console
    noise = [line for line in (first.stdout + first.stderr).splitlines()  # Ray's own
             if any(s in line for s in ("PlacementGroupCleaner", "core_worker.cc", "logging_progress", "execution finished"))]
    assert noise == []
    model = f"s3://traincli/models/{name}"
    names = {e.url.rsplit("/", 1)[1] for e in storage.list_files(model)}
    assert {"options.json", "weights.hdf5", "vocab.txt", "config.toml", "metrics.csv", "metrics.json",
            "training_curve.png", "counts.tsv"} <= names
    assert len(storage.read_text(f"{model}/vocab.txt").split()) == 2000
    assert 'name = "' + name + '"' in storage.read_text(f"{model}/config.toml")
    rows = json.loads(storage.read_text(f"{model}/metrics.json"))["rows"]
    assert [r["step"] for r in rows] == [2, 4, 6]


    (tmp_path / "in.txt").write_text("The President spoke .\nIt was a dark night\n")
    dumped = run_elmo("dump", str(tmp_path / "in.txt"), str(tmp_path / "out.hdf5"), "--options-file",
                      f"{model}/options.json", "--weight-file", f"{model}/weights.hdf5", "--top")
    assert dumped.returncode == 0, dumped.stderr
    with h5py.File(tmp_path / "out.hdf5") as f:
        assert f["0"].shape == (4, 128) and f["1"].shape == (5, 128)  # train_tiny.toml: projection 64
