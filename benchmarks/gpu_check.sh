#!/usr/bin/env bash
# GPU check: the GPU-marked tests, then GPU throughput of the original shape against the README's
# projections. Exits 0 with a message on a machine without a CUDA GPU.
# Usage: benchmarks/gpu_check.sh   (or `make gpu-check`); PYTHON overrides the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu-check: no CUDA GPU visible to torch on this machine; skipped (nothing run)."
    exit 0
fi
"$PY" -c "import torch; print('gpu-check:', torch.cuda.device_count(), 'GPU(s):', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
"$PY" -m pytest -m gpu -q tests/gpu
"$PY" -m benchmarks.gpu_bench
