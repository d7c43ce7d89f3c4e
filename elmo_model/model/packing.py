"""The packed, time-major layout of a batch of sentences (like a ``PackedSequence``): rows sorted
longest first, step ``t``'s rows contiguous."""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class Packing:
    """Where each (step, sorted row) of a batch lives in the packed, time-major layout (both the
    inference and the training path run their LSTMs over it).

    ``forward_index``/``backward_index``: flat ``row·T + position`` in the batch that packed entry
    ``e`` reads for the forward / backward direction; ``sorted_index``: ``sorted_row·T + step``
    (where the step-by-step path's dropout mask for that entry lives).
    """

    order: torch.Tensor  # (batch,) original row of each sorted row (longest first, stable)
    batch_sizes: list[int]
    forward_index: torch.Tensor  # (N,)
    backward_index: torch.Tensor  # (N,)
    sorted_index: torch.Tensor  # (N,)
    last_entry: torch.Tensor  # (rows with tokens,) packed entry of each sorted row's last step

    @classmethod
    def build(cls, mask: torch.Tensor) -> Packing:
        batch, steps = mask.shape
        lengths = mask.sum(dim=1)
        order = torch.argsort(lengths, descending=True, stable=True)
        sorted_lengths = lengths[order]
        valid = torch.arange(steps, device=mask.device).unsqueeze(1) < sorted_lengths.unsqueeze(0)  # (T, B)
        t, b = valid.nonzero(as_tuple=True)  # time-major order
        rows = order[b]
        entry = torch.arange(t.numel(), device=mask.device)
        is_last = t == sorted_lengths[b] - 1
        last_entry = torch.empty(int((sorted_lengths > 0).sum()), dtype=torch.long, device=mask.device)
        last_entry[b[is_last]] = entry[is_last]
        return cls(
            order=order,
            batch_sizes=[n for n in valid.sum(dim=1).tolist() if n > 0],
            forward_index=rows * steps + t,
            backward_index=rows * steps + (sorted_lengths[b] - 1 - t),
            sorted_index=b * steps + t,
            last_entry=last_entry,
        )

    @classmethod
    def paired(cls, batch: int, steps: int, device: torch.device) -> Packing:
        """Full windows, ``2·batch`` rows: the forward direction reads rows ``[0, batch)``, the
        backward one rows ``[batch, 2·batch)`` (each right to left); ``batch`` rows per step."""
        t = torch.arange(steps, device=device).repeat_interleave(batch)  # time-major
        b = torch.arange(batch, device=device).repeat(steps)
        return cls(
            order=torch.arange(batch, device=device),
            batch_sizes=[batch] * steps,
            forward_index=b * steps + t,
            backward_index=(batch + b) * steps + (steps - 1 - t),
            sorted_index=b * steps + t,
            last_entry=torch.arange((steps - 1) * batch, steps * batch, device=device),
        )

    @property
    def ended_rows(self) -> torch.Tensor:
        """The original rows with at least one token, in the order of :attr:`last_entry`."""
        return self.order[: self.last_entry.numel()]

    def unpack(self, packed: torch.Tensor, batch: int, steps: int) -> torch.Tensor:
        """``(2, N, dim)`` packed directions → ``(batch, T, 2·dim)`` in batch order, zero padding."""
        dim = packed.shape[2]
        out = packed.new_zeros(batch * steps, 2, dim)
        out[self.forward_index, 0] = packed[0]
        out[self.backward_index, 1] = packed[1]
        return out.view(batch, steps, 2 * dim)  # (batch·T, 2, dim) → (batch, T, 2·dim)

    @staticmethod
    def unpack_direction(packed: torch.Tensor, index: torch.Tensor, batch: int, steps: int) -> torch.Tensor:
        """One direction ``(N, dim)`` packed at ``index`` (its forward or backward index) →
        ``(batch, T, dim)`` in batch order, zero padding."""
        out = packed.new_zeros(batch * steps, packed.shape[1])
        out[index] = packed
        return out.view(batch, steps, packed.shape[1])
