"""An AllenNLP-style batched ELMo biLM: what a careful user would run instead of this project.

The algorithm of AllenNLP's ``_ElmoCharacterEncoder`` + ``ElmoLstm`` (``LstmCellWithProjection``),
written independently from the weight file's arrays (bilm-tf layout, see
:mod:`elmo_model.formats.weights`): the char-CNN runs ``conv1d`` over all characters of every token
position of the batch (padding positions included), then highway and projection; each LSTM
(direction × layer) sorts the batch by length and takes one LSTMCell-style step over the rows
still running — ``x_t W_x + h W_h + b``, TF's gates ``i, j, f, o`` with forget bias 1.0, cell
clipping, projection, projection clipping — the forward LSTM left to right with the batch
shrinking, the backward one right to left with the batch growing. Nothing is shared with the
production model (``elmo_model``), so equal outputs check both.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from elmo_model.model.options import ElmoOptions


class BatchedReferenceBiLm:
    """``__call__(char_ids (batch, T, C))`` → L+1 layers ``(batch, T, 2·proj)``, stateless."""

    def __init__(self, options: ElmoOptions, arrays: dict[str, np.ndarray], dtype: torch.dtype = torch.float32) -> None:
        self.o = options
        w = {name: torch.from_numpy(np.asarray(a)).to(dtype) for name, a in arrays.items()}
        # Embedding row 0 = padding position (zeros); the file's rows start at char id 1.
        self.char_table = torch.cat([torch.zeros(1, options.char_embedding_dim, dtype=dtype), w["char_embed"]])
        # conv1d weight (out, in, width) from the file's (1, width, in, out)
        self.convs = [(w[f"CNN/W_cnn_{i}"][0].permute(2, 1, 0).contiguous(), w[f"CNN/b_cnn_{i}"])
                      for i in range(len(options.filters))]
        self.highways = [
            tuple(w[f"CNN_high_{k}/{name}"] for name in ("W_carry", "b_carry", "W_transform", "b_transform"))
            for k in range(options.n_highway)
        ]
        self.token_projection = (w["CNN_proj/W_proj"], w["CNN_proj/b_proj"]) if options.has_token_projection else None
        self.cells = {}
        for d in (0, 1):
            for k in range(options.n_layers):
                p = f"RNN_{d}/RNN/MultiRNNCell/Cell{k}/LSTMCell/"
                kernel = w[p + "W_0"]  # (in + out, 4·cell): [x, h] @ W_0
                n_in = kernel.shape[0] - (options.projection_dim if options.has_lstm_projection else options.lstm_dim)
                # nn.Linear layout (out, in), as AllenNLP's input_linearity / state_linearity
                self.cells[d, k] = (kernel[:n_in].t().contiguous(), kernel[n_in:].t().contiguous(), w[p + "B"],
                                    w[p + "W_P_0"].t().contiguous() if options.has_lstm_projection else None)

    def token_vectors(self, char_ids: torch.Tensor) -> torch.Tensor:
        """``(batch, T, C)`` → ``(batch, T, proj)``; every position convolved, padding zeroed."""
        batch, steps, n_chars = char_ids.shape
        chars = F.embedding(char_ids.reshape(-1, n_chars), self.char_table).transpose(1, 2)  # (B·T, dim, C)
        x = torch.cat([F.conv1d(chars, weight, bias).max(dim=2).values for weight, bias in self.convs], dim=1)
        x = torch.tanh(x) if self.o.activation == "tanh" else torch.relu(x)
        for w_carry, b_carry, w_transform, b_transform in self.highways:
            gate = torch.sigmoid(x @ w_carry + b_carry)
            x = gate * torch.relu(x @ w_transform + b_transform) + (1 - gate) * x
        if self.token_projection is not None:
            x = x @ self.token_projection[0] + self.token_projection[1]
        mask = (char_ids[:, :, 0] > 0).reshape(-1, 1).to(x.dtype)
        return (x * mask).view(batch, steps, -1)

    def _lstm(self, d: int, k: int, x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """One LSTM over ``x (batch, T, in)`` sorted by length (longest first) → ``(batch, T, out)``."""
        w_input, w_state, bias, w_proj = self.cells[d, k]
        batch, steps, _ = x.shape
        out_dim = w_proj.shape[0] if w_proj is not None else w_state.shape[1]
        outputs = x.new_zeros(batch, steps, out_dim)
        h = x.new_zeros(batch, out_dim)
        c = x.new_zeros(batch, w_state.shape[0] // 4)
        forward = d == 0
        active = batch - 1 if forward else -1  # last row index still running
        for index in range(steps):
            t = index if forward else steps - index - 1
            if forward:
                while active >= 0 and lengths[active] <= t:
                    active -= 1
            else:
                while active < batch - 1 and lengths[active + 1] > t:
                    active += 1
            n = active + 1
            if n == 0:
                continue
            gates = F.linear(x[:n, t], w_input) + F.linear(h[:n], w_state, bias)
            i, j, f, o = gates.chunk(4, dim=1)
            cell = torch.sigmoid(f + 1.0) * c[:n] + torch.sigmoid(i) * torch.tanh(j)
            if self.o.cell_clip:
                cell = torch.clamp(cell, -self.o.cell_clip, self.o.cell_clip)
            hidden = torch.sigmoid(o) * torch.tanh(cell)
            if w_proj is not None:
                hidden = F.linear(hidden, w_proj)
                if self.o.proj_clip:
                    hidden = torch.clamp(hidden, -self.o.proj_clip, self.o.proj_clip)
            # As AllenNLP: new full-batch state tensors, rows past ``n`` kept.
            h, c = h.clone(), c.clone()
            h[:n], c[:n] = hidden, cell
            outputs[:n, t] = hidden
        return outputs

    def __call__(self, char_ids: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            tokens = self.token_vectors(char_ids)
            lengths_t = (char_ids[:, :, 0] > 0).sum(dim=1)
            order = torch.argsort(lengths_t, descending=True)
            restore = torch.argsort(order)
            lengths = lengths_t[order].tolist()
            x0 = tokens[order]
            layers = [torch.cat([tokens, tokens], dim=-1)]
            per_direction = []
            for d in (0, 1):
                x, outs = x0, []
                for k in range(self.o.n_layers):
                    out = self._lstm(d, k, x, lengths)
                    if k > 0 and self.o.use_skip_connections:
                        out = out + x
                    outs.append(out)
                    x = out
                per_direction.append(outs)
            mask = (char_ids[:, :, :1] > 0).to(tokens.dtype)
            for forward, backward in zip(*per_direction):
                layers.append(torch.cat([forward, backward], dim=-1)[restore] * mask)
            return layers
