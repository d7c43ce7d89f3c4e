"""Opt-in lower precision for inference: ``fp32`` (default, exact to ~1e-6), ``bf16``, ``int8``.

- ``bf16``: the matrix products run in bfloat16 under ``torch.autocast`` (LSTM cells stay
  float32). Fast where the hardware has bf16 units (recent Xeons with AMX/AVX512-BF16, GPUs);
  on a CPU without them it is slower than fp32.
- ``int8``: the LSTM's input, recurrent and projection GEMMs use int8 weights (per output row
  scales) and dynamically quantized activations (per-tensor, 7 bits, ``reduce_range``) through
  ``torch.ops.quantized.linear_dynamic`` (fbgemm on x86); CPU only. The char-CNN stays float32.

:func:`use_precision` sets the precision for the packed LSTM path (:mod:`elmo_model.packed_lstm`)
in the current thread; :class:`elmo_model.embedder.SentenceEmbedder` does it for you.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from elmo_model.precision_modes import PRECISIONS  # noqa: E402  (re-exported)
# Stated error bounds against fp32 per layer: (max |diff|, min mean cosine similarity), checked by
# the tests on the fixture and small shapes and measured by benchmarks/precision_bench.py on real
# text. int8 quantizes each GEMM's activations with one scale per call, so its vectors also vary
# (within the bound) with the other sentences of the batch; fp32 and bf16 do not.
PRECISION_BOUNDS = {"fp32": (1e-5, 0.999999), "bf16": (0.25, 0.999), "int8": (0.5, 0.999)}

_PRECISION: contextvars.ContextVar[str] = contextvars.ContextVar("elmo_inference_precision", default="fp32")


def check_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``precision`` if valid on ``device``; ``ValueError`` naming the problem otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and torch.device(device).type != "cpu":
        raise ValueError("precision 'int8' runs on CPU only (use bf16 on a GPU)")
    if precision == "int8" and not torch.backends.quantized.supported_engines:
        raise ValueError("precision 'int8' needs a torch build with quantized CPU kernels (fbgemm/onednn)")
    return precision


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
    :class:`~elmo_model.embedder.SentenceEmbedder` returns them.
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
