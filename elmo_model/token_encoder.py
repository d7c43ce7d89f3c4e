"""Context-independent token representation: char embedding → char-CNN → highway → projection."""

from __future__ import annotations

import torch
from torch import nn

from elmo_model.options import ElmoOptions

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
        """Encode rows of char ids ``(n, max_chars)`` → ``(n, projection_dim)``, in chunks."""
        pieces = [self._encode(chunk) for chunk in char_ids.split(CONV_CHUNK_TOKENS)]
        if not pieces:
            return char_ids.new_zeros((0, self.output_dim), dtype=self.char_embedding.weight.dtype)
        return torch.cat(pieces)

    def _encode(self, char_ids: torch.Tensor) -> torch.Tensor:
        # (n, max_chars) → (n, char_dim, max_chars) for Conv1d
        chars = self.char_embedding(char_ids).transpose(1, 2)
        pooled = [conv(chars).amax(dim=2) for conv in self.convolutions]  # each (n, n_filters_i)
        x = self.activation(torch.cat(pooled, dim=1))  # (n, n_filters)
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
        distinct, inverse = torch.unique(flat, dim=0, return_inverse=True)
        encoded = self.encode_distinct(distinct)[inverse]  # (batch·tokens, dim)
        mask = (flat[:, 0] > 0).unsqueeze(1).to(encoded.dtype)
        return (encoded * mask).reshape(batch, n_tokens, -1)
