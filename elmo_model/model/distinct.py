"""Distinct rows of a tensor with their inverse index, faster than ``torch.unique(dim=0)``: the
char-CNN runs once per distinct token, the first LSTM layer's input gates once per distinct input."""

from __future__ import annotations

import torch


def distinct_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(rows, dim=0, return_inverse=True)`` without its slow row-wise sort.

    Rows are keyed by a random linear hash (ids < 2^15 times weights < 2^40, summed over at
    most 256 columns: no int64 overflow); a collision is detected exactly and falls back.
    Returns ``(distinct (m, width), inverse (n,))`` with ``distinct[inverse] == rows``.
    """
    n, width = rows.shape
    if n == 0 or width > 256 or int(rows.max()) >= 2**15 or int(rows.min()) < 0:
        return torch.unique(rows, dim=0, return_inverse=True)
    generator = torch.Generator().manual_seed(width)
    weights = torch.randint(0, 2**40, (width,), generator=generator, dtype=torch.int64).to(rows.device)
    found = distinct_by_keys(rows, (rows.long() * weights).sum(dim=1))
    if found is None:  # a hash collision: be exact instead
        return torch.unique(rows, dim=0, return_inverse=True)
    return found


def distinct_by_keys(rows: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The distinct rows of non-empty ``rows (n, width)`` told apart by their ``keys (n,)`` (equal
    rows must have equal keys), each at its first occurrence, and ``inverse``:
    ``(distinct, inverse)`` with ``distinct[inverse] == rows``, or ``None`` if two different rows
    share a key (checked exactly)."""
    _, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), rows.shape[0], dtype=torch.long, device=rows.device)
    first.scatter_reduce_(0, inverse, torch.arange(rows.shape[0], device=rows.device), reduce="amin")
    distinct = rows[first]
    return (distinct, inverse) if torch.equal(distinct[inverse], rows) else None
