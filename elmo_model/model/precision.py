"""Opt-in lower precision for inference: ``fp32`` (default, exact to ~1e-6), ``bf16``, ``int8``,
or ``auto``.

- ``fp32``: float32 everywhere, on a GPU too (no TF32, no autocast).
- ``bf16``: the matrix products run in bfloat16 with weights converted once (the LSTMs' and the
  token encoder's prepared weights are cached per module), LSTM cells and clipping in float32;
  ops not covered run under ``torch.autocast``. Fast where the hardware has bf16 matrix units
  (CPUs with AMX or AVX512-BF16, GPUs of compute capability ≥ 8; the fixture-sized toy model is
  overhead-bound and slower in bf16); on a CPU without them it is slower than fp32 (0.16–0.27×).
- ``auto``: :func:`resolve_precision` — ``bf16`` where :func:`bf16_matrix_units` says the device
  has them, ``fp32`` elsewhere.
- ``int8``: the LSTM's input, recurrent and projection GEMMs use int8 weights (per output row
  scales) and dynamically quantized activations (per-tensor, 7 bits, ``reduce_range``) through
  ``torch.ops.quantized.linear_dynamic`` (fbgemm on x86); CPU only. The char-CNN stays float32.

:func:`use_precision` sets the precision for the packed LSTM path (:mod:`elmo_model.model.packed_lstm`)
in the current thread; :class:`elmo_model.infer.embedder.SentenceEmbedder` does it for you.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from elmo_model.precision_modes import PRECISION_CHOICES, PRECISIONS, TRAINING_PRECISIONS

__all__ = ["PRECISIONS", "PRECISION_CHOICES", "PRECISION_BOUNDS", "bf16_matrix_units", "cpu_bf16_isa", "cpu_has_amx", "cpu_has_avx512_bf16", "check_precision",
           "current_precision", "layer_errors", "resolve_precision", "training_autocast", "use_precision", "Autocast", "Int8Linear"]

# Stated error bounds against fp32 per layer: (max |diff|, min mean cosine similarity), checked by
# the tests on the fixture and small shapes and measured by benchmarks/precision_bench.py on real
# text. int8 quantizes each GEMM's activations with one scale per call, so its vectors also vary
# (within the bound) with the other sentences of the batch; fp32 and bf16 do not.
PRECISION_BOUNDS = {"fp32": (1e-5, 0.999999), "bf16": (0.25, 0.999), "int8": (0.5, 0.999)}

_PRECISION: contextvars.ContextVar[str] = contextvars.ContextVar("elmo_inference_precision", default="fp32")


def check_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``precision`` if valid on ``device``; ``ValueError`` naming the problem otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    if precision == "int8" and torch.device(device).type != "cpu":
        raise ValueError("precision 'int8' runs on CPU only (use bf16 on a GPU)")
    if precision == "int8" and not torch.backends.quantized.supported_engines:
        raise ValueError("precision 'int8' needs a torch build with quantized CPU kernels (fbgemm/onednn)")
    return precision


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_has(torch_probe: str, flag: str) -> bool:
    """``torch.cpu.<torch_probe>()`` where torch has it and can say, else ``flag`` in ``/proc/cpuinfo``."""
    probe = getattr(torch.cpu, torch_probe, None)
    if probe is not None:
        try:
            return bool(probe())
        except RuntimeError:
            pass
    return flag in _cpu_flags()


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX bf16 tiles, as torch reports it (``/proc/cpuinfo`` where torch cannot say)."""
    return _cpu_has("_is_amx_tile_supported", "amx_bf16")


def cpu_has_avx512_bf16() -> bool:
    """Whether this CPU has AVX512-BF16, as torch reports it (``/proc/cpuinfo`` where torch cannot say)."""
    return _cpu_has("_is_avx512_bf16_supported", "avx512_bf16")


def cpu_bf16_isa() -> str | None:
    """``"AMX"`` or ``"AVX512-BF16"``: this CPU's bf16 matrix instructions; None without either."""
    if cpu_has_amx():
        return "AMX"
    return "AVX512-BF16" if cpu_has_avx512_bf16() else None


def bf16_matrix_units(device: torch.device | str = "cpu") -> tuple[bool, str]:
    """Whether ``device`` has bf16 matrix units, and what was found (for the log).

    CUDA: compute capability ≥ 8 (Ampere and later). CPU: AMX or AVX512-BF16 (an AMD EPYC with
    AVX512-BF16 embedded the small and original shapes 1.5–2.1× faster in bf16; CPUs without
    either run bf16 at 0.16–0.27× fp32).
    """
    device = torch.device(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return major >= 8, f"a GPU of compute capability {major}.{minor}"
    if device.type == "cpu":
        isa = cpu_bf16_isa()
        return (True, f"a CPU with {isa}") if isa else (False, "a CPU without AMX or AVX512-BF16")
    return False, f"a {device.type} device"


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> tuple[str, str]:
    """``(precision to run, why)``: ``auto`` becomes ``bf16`` where :func:`bf16_matrix_units`,
    ``fp32`` elsewhere; any other valid precision is itself (``ValueError`` otherwise)."""
    if precision != "auto":
        return check_precision(precision, device), "asked for"
    units, found = bf16_matrix_units(device)
    return ("bf16" if units else "fp32"), f"auto: {found}"


def training_autocast(precision: str | None, device: torch.device | str = "cpu") -> tuple[torch.dtype | None, str]:
    """The autocast dtype of a training worker on ``device`` (None: float32) and why.

    ``precision`` None keeps the workers' defaults: bf16 autocast on a GPU, float32 on a CPU.
    ``bf16``: the forward pass under bf16 autocast — on CPU the char-CNN, highway, input gates,
    recurrent and projection products and the softmax's products in bf16 (forward and backward),
    LSTM cells, the softmax itself, master weights and optimizer state float32. ``auto``: bf16
    where :func:`bf16_matrix_units`.
    """
    device = torch.device(device)
    if precision is None:
        return (torch.bfloat16, "a GPU worker's default") if device.type == "cuda" else (None, "a CPU worker's default")
    if precision not in TRAINING_PRECISIONS:
        raise ValueError(f"training precision must be one of {TRAINING_PRECISIONS}, got {precision!r}")
    chosen, why = resolve_precision("auto", device) if precision == "auto" else (precision, "asked for")
    return (torch.bfloat16 if chosen == "bf16" else None), why


class Autocast(nn.Module):
    """Runs the wrapped module's forward under bf16 autocast on ``device_type`` (training workers
    whose :func:`training_autocast` is bf16: GPU workers by default, CPU ones when asked)."""

    def __init__(self, module: nn.Module, device_type: str = "cuda") -> None:
        super().__init__()
        self.module, self.device_type = module, device_type

    def forward(self, *args):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.module(*args)


def current_precision() -> str:
    """The precision of the packed LSTM path in this thread (``fp32`` unless set)."""
    return _PRECISION.get()


@contextlib.contextmanager
def use_precision(precision: str, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the inference path at ``precision`` inside the block (``bf16`` adds autocast)."""
    token = _PRECISION.set(check_precision(precision, device))
    try:
        if precision == "bf16":
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        _PRECISION.reset(token)


def layer_errors(exact: list[np.ndarray], low: list[np.ndarray]) -> list[tuple[float, float]]:
    """Per layer, ``(max |diff|, mean cosine similarity)`` over all tokens of the sentences.

    ``exact`` and ``low``: per sentence ``(L+1, n_tokens, D)`` arrays, as
    :class:`~elmo_model.infer.embedder.SentenceEmbedder` returns them.
    """
    out = []
    for k in range(exact[0].shape[0]):
        a = np.concatenate([e[k] for e in exact]).astype(np.float64)
        b = np.concatenate([x[k] for x in low]).astype(np.float64)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosine = (a * b).sum(axis=1) / np.maximum(norms, 1e-30)
        out.append((float(np.abs(a - b).max()), float(cosine.mean())))
    return out


class Int8Linear:
    """``x @ weight.T`` with int8 weights (a scale per row of ``weight``) and dynamically
    quantized activations; ``bias`` folded in. ``weight (out, in)`` float."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        weight = weight.detach().float().contiguous()
        scales = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
        zeros = torch.zeros(weight.shape[0], dtype=torch.long)
        engines = torch.backends.quantized.supported_engines
        previous = torch.backends.quantized.engine
        with warnings.catch_warnings():  # torch marks the quantized tensor API as deprecated
            warnings.simplefilter("ignore", UserWarning)
            try:
                if "fbgemm" in engines:  # the x86 int8 kernels (onednn's were slower here)
                    torch.backends.quantized.engine = "fbgemm"
                q = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
                self.packed = torch.ops.quantized.linear_prepack(
                    q, None if bias is None else bias.detach().float().contiguous())
            finally:
                torch.backends.quantized.engine = previous
        self.out_features = weight.shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(rows, in)`` float32 → ``(rows, out)`` float32 (a new tensor)."""
        return torch.ops.quantized.linear_dynamic(x.contiguous(), self.packed, True)
