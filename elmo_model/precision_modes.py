"""The names of the inference precisions (torch-free, so that command-line parsers load fast);
what each does is in :mod:`elmo_model.model.precision`."""

PRECISIONS = ("fp32", "bf16", "int8")
# What a user may ask for: a precision, or "auto" (bf16 where the device has bf16 matrix units,
# fp32 elsewhere; see :func:`elmo_model.model.precision.resolve_precision`).
PRECISION_CHOICES = (*PRECISIONS, "auto")
# The --precision help of elmo embed and elmo dump.
PRECISION_HELP = ("fp32 (default: float32 on CPU and GPU, exact) | bf16 | int8 (CPU) | auto (bf16 where the "
                  "device has bf16 matrix units — CPUs with AMX or AVX512-BF16, GPUs of compute capability ≥ 8 — else fp32): "
                  "low precisions are faster there, with the error stated in docs/performance.md")
# Training: float32, bf16 autocast (master weights and optimizer state float32), or auto.
TRAINING_PRECISIONS = ("fp32", "bf16", "auto")
