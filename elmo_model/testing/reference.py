"""A plain, slow, obviously-correct ELMo biLM: the test oracle and the benchmark baseline.

It works straight from the weight file's datasets (bilm-tf layout: ``x @ W``, TF's ``i, j, f, o``
gate order, forget bias 1.0), one time step and one layer at a time, and convolves the characters
of every token position. It shares no code with the production model beyond the option names,
so agreement between the two checks the weight conversion as well as the arithmetic.
"""

from __future__ import annotations

import numpy as np
import torch

from elmo_model.model.options import ElmoOptions


class ReferenceBiLm:
    """``__call__(char_ids (batch, T, C))`` → list of L+1 layers ``(batch, T, 2·proj)``, stateless."""

    def __init__(
        self, options: ElmoOptions, arrays: dict[str, np.ndarray], dtype: torch.dtype = torch.float32
    ) -> None:
        self.o = options
        self.dtype = dtype
        self.w = {name: torch.from_numpy(np.asarray(a)).to(dtype) for name, a in arrays.items()}

    def token_vectors(self, char_ids: torch.Tensor) -> torch.Tensor:
        """``(batch, T, C)`` → ``(batch, T, proj)``; padding positions are zero."""
        table = torch.cat([torch.zeros(1, self.o.char_embedding_dim, dtype=self.dtype), self.w["char_embed"]])
        chars = table[char_ids]  # (batch, T, C, char_dim)
        pooled = []
        for i, (width, _) in enumerate(self.o.filters):
            kernel = self.w[f"CNN/W_cnn_{i}"][0]  # (width, char_dim, n)
            windows = chars.unfold(2, width, 1)  # (batch, T, C-width+1, char_dim, width)
            conv = torch.einsum("btpdw,wdn->btpn", windows, kernel) + self.w[f"CNN/b_cnn_{i}"]
            pooled.append(conv.max(dim=2).values)
        x = torch.cat(pooled, dim=-1)
        x = torch.tanh(x) if self.o.activation == "tanh" else torch.relu(x)
        for k in range(self.o.n_highway):
            p = f"CNN_high_{k}/"
            gate = torch.sigmoid(x @ self.w[p + "W_carry"] + self.w[p + "b_carry"])
            x = gate * torch.relu(x @ self.w[p + "W_transform"] + self.w[p + "b_transform"]) + (1 - gate) * x
        if self.o.has_token_projection:
            x = x @ self.w["CNN_proj/W_proj"] + self.w["CNN_proj/b_proj"]
        return x * (char_ids[:, :, :1] > 0)

    def _cell(self, direction: int, layer: int, x, h, c):
        p = f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell/"
        gates = torch.cat([x, h], dim=-1) @ self.w[p + "W_0"] + self.w[p + "B"]
        i, j, f, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(j)
        if self.o.cell_clip:
            c = c.clamp(-self.o.cell_clip, self.o.cell_clip)
        h = torch.sigmoid(o) * torch.tanh(c)
        if self.o.has_lstm_projection:
            h = h @ self.w[p + "W_P_0"]
            if self.o.proj_clip:
                h = h.clamp(-self.o.proj_clip, self.o.proj_clip)
        return h, c

    def _direction(self, direction: int, tokens: torch.Tensor) -> list[torch.Tensor]:
        """One sentence ``(n, proj)`` in reading order for this direction → per-layer outputs."""
        outputs, x = [], tokens
        for layer in range(self.o.n_layers):
            h = torch.zeros(self.o.projection_dim, dtype=self.dtype)
            c = torch.zeros(self.o.lstm_dim, dtype=self.dtype)
            steps = []
            for t in range(x.shape[0]):
                h, c = self._cell(direction, layer, x[t], h, c)
                steps.append(h)
            out = torch.stack(steps) if steps else torch.zeros(0, self.o.projection_dim, dtype=self.dtype)
            if layer > 0 and self.o.use_skip_connections:
                out = out + x
            outputs.append(out)
            x = out
        return outputs

    def __call__(self, char_ids: torch.Tensor) -> list[torch.Tensor]:
        tokens = self.token_vectors(char_ids)
        batch, steps, proj = tokens.shape
        layers = [torch.cat([tokens, tokens], dim=-1)] + [
            torch.zeros(batch, steps, 2 * proj, dtype=self.dtype) for _ in range(self.o.n_layers)
        ]
        for b in range(batch):
            n = int((char_ids[b, :, 0] > 0).sum())
            forward = self._direction(0, tokens[b, :n])
            backward = self._direction(1, tokens[b, :n].flip(0))
            for k in range(self.o.n_layers):
                layers[k + 1][b, :n] = torch.cat([forward[k], backward[k].flip(0)], dim=-1)
        return layers
