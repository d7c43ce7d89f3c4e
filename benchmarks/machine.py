"""What the numbers were measured on: machine facts, the matmul ceiling, peak memory."""

from __future__ import annotations

import ctypes
import os
import platform
import re
import resource
import time

import torch

MATMUL_N = 4096


def machine_info() -> dict:
    """CPU model, cores, bf16 ISA (AMX, AVX512-BF16), memory, torch build and thread count."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"model name\s*:\s*(.+)", f.read())
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    from elmo_model.model.precision import bf16_matrix_units, cpu_has_amx, cpu_has_avx512_bf16

    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "amx": cpu_has_amx(), "avx512_bf16": cpu_has_avx512_bf16(),
            "bf16_matrix_units": bf16_matrix_units("cpu")[0]}
    try:
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def matmul_gflops(n: int = MATMUL_N, repeats: int = 5) -> float:
    """Best fp32 ``n × n @ n × n`` rate in GFLOP/s (2 FLOPs per multiply-add)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def release_free_memory() -> None:
    """Hand memory that is free inside the C heap back to the OS (glibc), so RSS tracks live data."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_mb() -> float:
    """Resident memory now, MB."""
    return _status_kb("VmRSS") / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process (Linux); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory since the last :func:`reset_peak_rss` (or process start), MB."""
    kb = _status_kb("VmHWM")
    return (kb if kb else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"{field}:\s+(\d+)", f.read())
        return int(match.group(1)) if match else 0
    except OSError:
        return 0
