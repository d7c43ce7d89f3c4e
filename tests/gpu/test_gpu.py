"""GPU checks (``pytest -m gpu``; run by ``benchmarks/gpu_check.sh``). Skipped without CUDA.

- inference on the GPU equals CPU fp32: fp32 within 1e-4 (TF32 off), bf16 within the stated
  bf16 bound (:data:`elmo_model.model.precision.PRECISION_BOUNDS`);
- one ``elmo train --use-gpu`` run of 2 steps on 2 workers (needs 2 GPUs);
- ``elmo embed --gpus-per-actor 1`` on a small local input.
"""

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from elmo_model.infer.embedder import SentenceEmbedder
from elmo_model.model.precision import PRECISION_BOUNDS, layer_errors
from elmo_model.formats.weights import load_bilm

from support import run_elmo

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]

ROOT = Path(__file__).parents[2]
CORPUS = ROOT / "pipelines" / "data" / "demo_corpus.txt"


def _sentences(n):
    return [line.split() for line in CORPUS.read_text(encoding="utf-8").splitlines()[:n]]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gpu_inference_equals_cpu_fp32(tiny_files, precision):
    torch.backends.cuda.matmul.allow_tf32 = False
    sentences = _sentences(64)
    cpu = SentenceEmbedder(load_bilm(*tiny_files))(sentences)
    gpu = SentenceEmbedder(load_bilm(*tiny_files), "cuda", precision=precision)(sentences)
    max_diff, min_cosine = (1e-4, 0.99999) if precision == "fp32" else PRECISION_BOUNDS["bf16"]
    for k, (diff, cosine) in enumerate(layer_errors(cpu, gpu)):
        assert diff <= max_diff and cosine >= min_cosine, (precision, k, diff, cosine)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="2 workers × 1 GPU need 2 GPUs")
def test_train_two_gpu_workers_one_step(tmp_path):
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    (tmp_path / "train.txt").write_text("\n".join(lines[:800]) + "\n")
    result = run_elmo("train", "--config", str(ROOT / "pipelines" / "configs" / "train_tiny.toml"),
                      "--name", "gpu-check", "--train", str(tmp_path / "train.txt"),
                      "--output", str(tmp_path / "model"), "--storage", str(tmp_path / "ckpt"),
                      "--num-workers", "2", "--use-gpu", "--steps", "2", "--set", "vocab_max_size=2000",
                      timeout=900, env={"RAY_AUTH_MODE": "disabled"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert (tmp_path / "model" / "weights.hdf5").exists()


def test_embed_with_gpu_actor(tmp_path, tiny_files):
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(tiny_files[0], model / "options.json")
    shutil.copy(tiny_files[1], model / "weights.hdf5")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("\n".join(" ".join(s) for s in _sentences(200)) + "\n")
    result = run_elmo("embed", "--model", str(model), "--input", str(tmp_path / "in"),
                      "--output", str(tmp_path / "out"), "--gpus-per-actor", "1", "--actors", "1,1",
                      timeout=900, env={"RAY_AUTH_MODE": "disabled"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    files = [p for p in (tmp_path / "out").rglob("*.parquet") if "_staging" not in p.parts]
    assert sum(pq.read_table(p).num_rows for p in files) == 200
