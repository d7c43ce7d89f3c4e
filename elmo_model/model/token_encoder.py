"""Context-independent token representation: char embedding → char-CNN → highway → projection."""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from elmo_model.model.chars import PAD_CHAR
from elmo_model.model.distinct import distinct_rows
from elmo_model.model.options import ElmoOptions
from elmo_model.model.precision import current_precision

PAD_ID = PAD_CHAR + 1  # the in-token padding character, as stored in char ids (+1 offset)

# Distinct tokens are convolved in chunks of this many: keeps the (tokens, chars, filters)
# intermediate small enough to stay in cache and bounds memory on long inputs.
CONV_CHUNK_TOKENS = 128


class Highway(nn.Module):
    """bilm-tf's highway layer: ``g·relu(x W_t + b_t) + (1-g)·x`` with ``g = σ(x W_c + b_c)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.carry = nn.Linear(dim, dim)  # the gate g
        self.transform = nn.Linear(dim, dim)  # the non-linear candidate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.carry(x))
        return gate * torch.relu(self.transform(x)) + (1.0 - gate) * x


class CharCnnTokenEncoder(nn.Module):
    """Maps char ids ``(..., max_chars)`` to token vectors ``(..., projection_dim)``."""

    def __init__(self, options: ElmoOptions) -> None:
        super().__init__()
        # Row 0 is the padding id (a position without a token); the file's rows start at 1.
        self.char_embedding = nn.Embedding(262, options.char_embedding_dim, padding_idx=0)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(options.char_embedding_dim, n_filters, kernel_size=width)
            for width, n_filters in options.filters
        )
        self.activation = torch.tanh if options.activation == "tanh" else torch.relu
        self.highways = nn.ModuleList(Highway(options.n_filters) for _ in range(options.n_highway))
        self.projection = (
            nn.Linear(options.n_filters, options.projection_dim) if options.has_token_projection else None
        )

    def encode_distinct(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Encode rows of char ids ``(n, max_chars)`` → ``(n, projection_dim)``, in chunks.

        The convolutions cover only the windows that can matter (:func:`pool_trimmed`: the numbers
        and gradients of ``Conv1d`` over every character, less work); in a low precision without
        autograd, on weights converted once (:class:`PreparedEncoder`).
        """
        if char_ids.shape[0] == 0:
            return char_ids.new_zeros((0, self.output_dim), dtype=self.char_embedding.weight.dtype)
        low = _low_precision(char_ids.device.type)
        if low is not None and not torch.is_grad_enabled():
            return prepared_weights(self, low).encode(char_ids, CONV_CHUNK_TOKENS)
        pooled = pool_trimmed(self, char_ids, CONV_CHUNK_TOKENS)
        return self._highway_projection(self.activation(pooled))

    def _highway_projection(self, x: torch.Tensor) -> torch.Tensor:
        for highway in self.highways:
            x = highway(x)
        return self.projection(x) if self.projection is not None else x

    @property
    def output_dim(self) -> int:
        return self.projection.out_features if self.projection is not None else self.highways_dim

    @property
    def highways_dim(self) -> int:
        return sum(conv.out_channels for conv in self.convolutions)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """``(batch, tokens, max_chars)`` → ``(batch, tokens, projection_dim)``.

        The CNN runs once per distinct token of the batch (sentences repeat words a lot);
        padding positions (all-zero ids) come out as zeros.
        """
        batch, n_tokens, max_chars = char_ids.shape
        flat = char_ids.reshape(-1, max_chars)  # (batch·tokens, max_chars)
        distinct, inverse = distinct_rows(flat)
        encoded = self.encode_distinct(distinct)[inverse]  # (batch·tokens, dim)
        mask = (flat[:, 0] > 0).unsqueeze(1).to(encoded.dtype)
        return (encoded * mask).reshape(batch, n_tokens, -1)


def _stacked_kernel(convolutions: nn.ModuleList) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every filter as one matrix over windows of the widest width.

    Returns ``kernel (max_width·char_dim, n_filters)`` (zero rows where a filter is narrower),
    ``bias (n_filters,)`` and ``widths (n_filters,)``.
    """
    max_width = max(conv.kernel_size[0] for conv in convolutions)
    parts = []
    for conv in convolutions:
        # (n_i, char_dim, width) → (width, char_dim, n_i), zero-padded to max_width offsets
        kernel = conv.weight.permute(2, 1, 0)
        parts.append(F.pad(kernel, (0, 0, 0, 0, 0, max_width - kernel.shape[0])))
    stacked = torch.cat(parts, dim=2)  # (max_width, char_dim, n_filters)
    widths = torch.cat([torch.full((conv.out_channels,), conv.kernel_size[0]) for conv in convolutions])
    bias = torch.cat([conv.bias for conv in convolutions])
    return stacked.reshape(-1, stacked.shape[2]), bias, widths.to(bias.device)


def _sorted_by_length(char_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Rows of ``char_ids`` shortest first: the order, the sorted rows and their lengths (the last
    non-padding position, 1-based)."""
    position = torch.arange(1, char_ids.shape[1] + 1, device=char_ids.device)
    lengths = ((char_ids != PAD_ID) * position).amax(dim=1)
    order = torch.argsort(lengths)
    return order, char_ids[order], lengths[order].tolist()


def _length_chunks(sorted_lengths: list[int], chunk: int) -> Iterator[tuple[int, int]]:
    """``[start, end)`` chunks of at most ``chunk`` sorted rows, whose rows are at most about twice
    as long as the first: one long row (e.g. an all-zero padding position, "length" max_chars)
    does not widen a chunk of short ones."""
    start, n = 0, len(sorted_lengths)
    while start < n:
        limit = max(2 * sorted_lengths[start], 16)
        end = max(start + 1, bisect.bisect_right(sorted_lengths, limit, start, min(start + chunk, n)))
        yield start, end
        start = end


def pool_trimmed(encoder: CharCnnTokenEncoder, char_ids: torch.Tensor, chunk: int) -> torch.Tensor:
    """Max-pooled convolutions ``(n, n_filters)`` of char ids ``(n, max_chars)``, skipping work;
    differentiable under autograd.

    Equal to ``Conv1d`` over all ``max_chars`` positions (the oracle's
    :func:`elmo_model.testing.step_by_step.pool_conv1d`), gradients included. Write ``L`` for a
    row's last non-padding position (1-based). Every window starting at ``p ≥ L`` holds only the
    in-token padding character: they all have the same input, hence the same value per filter.
    Here one or more of them are kept (window starts up to the chunk's longest row + 1) and
    windows that would run past ``max_chars``, which do not exist there, are masked out. Windows
    touching real characters are the same set in both, so the max is the same. ``amax``'s
    gradient goes to the positions attaining the max, split evenly; copies of the padding window
    have the same input, so whatever their number, the gradient reaching the filter weights and
    the padding character's embedding row is the same sum. (Only an exact tie between *different*
    windows, probability zero for real-valued weights, would be split differently.)

    Tokens are sorted by length and convolved in chunks, every filter width as one matrix product
    against :func:`_stacked_kernel`.
    """
    kernel, bias, widths = _stacked_kernel(encoder.convolutions)
    return _pool_windows(encoder.char_embedding.weight, kernel, widths, char_ids, chunk) + bias


def _pool_windows(embedding: torch.Tensor, kernel: torch.Tensor, widths: torch.Tensor, char_ids: torch.Tensor,
                  chunk: int) -> torch.Tensor:
    """:func:`pool_trimmed` before the bias, in the dtype of ``embedding`` and ``kernel``. Windows
    are strided views without autograd, shifted slices (cheap to differentiate) with it."""
    max_chars = char_ids.shape[1]
    max_width = int(widths.max())
    differentiable = torch.is_grad_enabled() and (embedding.requires_grad or kernel.requires_grad)
    order, sorted_ids, sorted_lengths = _sorted_by_length(char_ids)
    tail = sorted_ids.new_full((1, max_width - 1), PAD_ID)
    pooled = []
    for start, end in _length_chunks(sorted_lengths, chunk):
        ids = sorted_ids[start:end]
        k = ids.shape[0]
        # Window starts kept: every one touching a character, and one all-padding window.
        span = min(max_chars, sorted_lengths[end - 1] + 1)
        padded = torch.cat([ids[:, :span], tail.expand(k, -1)], dim=1)  # (k, span + max_width - 1)
        chars = F.embedding(padded, embedding, padding_idx=0)  # (k, span + max_width - 1, char_dim); row 0 learns nothing
        dim = chars.shape[2]
        # (k, span, max_width·char_dim): window p is chars[p : p + max_width] flattened
        if differentiable:
            windows = torch.cat([chars[:, offset : offset + span] for offset in range(max_width)], dim=2)
        else:
            windows = chars.as_strided((k, span, max_width * dim), (chars.stride(0), dim, 1))
        conv = (windows.reshape(k * span, -1) @ kernel).view(k, span, -1)  # (k, span, n_filters)
        if span - 1 + max_width > max_chars:  # windows running past the token: not in the original
            starts = torch.arange(span, device=conv.device).unsqueeze(1)  # (span, 1)
            conv = conv.masked_fill(starts + widths.unsqueeze(0) > max_chars, float("-inf"))
        pooled.append(conv.amax(dim=1))
    return torch.cat(pooled)[torch.argsort(order)]  # (n, n_filters), back in the rows' order


def _low_precision(device_type: str) -> torch.dtype | None:
    """The dtype of the matrix products in force (``use_precision("bf16")`` or autocast), or None."""
    if current_precision() == "bf16":
        return torch.bfloat16
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


class PreparedEncoder:
    """The token encoder's weights converted once to a low precision ``dtype`` (inference).

    The matrix products (char-CNN windows, highway gates and candidates, projection) run in
    ``dtype`` on weights laid out transposed and contiguous; biases, the max-pool's output, the
    activations and the highway mix stay float32.
    """

    def __init__(self, encoder: CharCnnTokenEncoder, dtype: torch.dtype) -> None:
        kernel, bias, widths = _stacked_kernel(encoder.convolutions)
        self.dtype = dtype
        self.embedding = encoder.char_embedding.weight.detach().to(dtype)
        self.kernel = kernel.detach().to(dtype).contiguous()
        self.bias, self.widths = bias.detach().float(), widths
        self.activation = encoder.activation
        self.highways = [(h.carry.weight.detach().t().to(dtype).contiguous(), h.carry.bias.detach().float(),
                          h.transform.weight.detach().t().to(dtype).contiguous(), h.transform.bias.detach().float())
                         for h in encoder.highways]
        projection = encoder.projection
        self.projection = None if projection is None else (
            projection.weight.detach().t().to(dtype).contiguous(), projection.bias.detach().float())

    def encode(self, char_ids: torch.Tensor, chunk: int) -> torch.Tensor:
        """``(n, max_chars)`` char ids → float32 ``(n, projection_dim)``."""
        with torch.autocast(char_ids.device.type, enabled=False):
            x = self.activation(_pool_windows(self.embedding, self.kernel, self.widths, char_ids, chunk).float()
                                + self.bias)
            for carry_t, carry_b, transform_t, transform_b in self.highways:
                low = x.to(self.dtype)
                gate = torch.sigmoid(torch.mm(low, carry_t).float() + carry_b)
                candidate = torch.relu(torch.mm(low, transform_t).float() + transform_b)
                x = gate * candidate + (1.0 - gate) * x
            if self.projection is not None:
                weight_t, bias = self.projection
                x = torch.mm(x.to(self.dtype), weight_t).float() + bias
            return x


# Prepared weights per encoder, rebuilt when its parameters change (in place or moved).
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def prepared_weights(encoder: CharCnnTokenEncoder, dtype: torch.dtype) -> PreparedEncoder:
    """``encoder``'s :class:`PreparedEncoder` for ``dtype``, converted once per version of its weights."""
    version = tuple((p._version, p.data_ptr(), p.device) for p in encoder.parameters())
    cached = _PREPARED.get(encoder)
    if cached is None or cached[0] != (version, dtype):
        cached = ((version, dtype), PreparedEncoder(encoder, dtype))
        _PREPARED[encoder] = cached  # one prepared copy per encoder: bounded memory
    return cached[1]
