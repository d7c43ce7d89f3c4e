"""The public ``Elmo`` module with AllenNLP's familiar surface, and ``batch_to_ids``."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from elmo_model.model.bilm import BiLm
from elmo_model.model.chars import BOS_TOKEN, EOS_TOKEN, batch_char_ids, token_char_ids
from elmo_model.formats.local_files import LocalPath
from elmo_model.model.scalar_mix import ScalarMix
from elmo_model.infer.stateful import CarriedState
from elmo_model.formats.weights import load_bilm


def batch_to_ids(batch: Sequence[Sequence[str]]) -> torch.Tensor:
    """Token lists → char ids ``(batch, max_tokens, 50)`` int64, no sentence boundaries added."""
    return torch.from_numpy(batch_char_ids(batch)).long()


def add_sentence_boundaries(char_ids: torch.Tensor) -> torch.Tensor:
    """``(batch, T, C)`` → ``(batch, T+2, C)`` with ``<S>`` before and ``</S>`` after each sentence."""
    batch, steps, chars = char_ids.shape
    lengths = (char_ids[:, :, 0] > 0).sum(dim=1)  # (batch,)
    out = char_ids.new_zeros(batch, steps + 2, chars)
    out[:, 1 : steps + 1] = char_ids
    bos = torch.from_numpy(token_char_ids(BOS_TOKEN, chars)).to(char_ids)
    eos = torch.from_numpy(token_char_ids(EOS_TOKEN, chars)).to(char_ids)
    out[:, 0] = bos
    out[torch.arange(batch, device=char_ids.device), lengths + 1] = eos
    return out


class Elmo(nn.Module):
    """ELMo representations: ``num_output_representations`` learned mixes of the biLM layers.

    ``forward(char_ids)`` takes ids from :func:`batch_to_ids` and returns
    ``{"elmo_representations": [(batch, T, 2·proj)] * n, "mask": (batch, T) bool}``.
    Stateless by default; ``stateful=True`` carries the LSTM state of each batch row into the
    next call, as the original did (call :meth:`reset_states` to start over).

    ``Elmo(bilm, n, ...)`` builds the module around a loaded :class:`BiLm`; :meth:`from_files`
    loads ``options.json`` + ``weights.hdf5`` first. AllenNLP's signature,
    ``Elmo(options_file, weight_file, num_output_representations, ...)``, is kept as an alias of
    :meth:`from_files`: a path (``str`` or ``os.PathLike``) as the first argument, or an
    ``options_file=`` keyword, loads the files.
    """

    def __init__(self, bilm: BiLm | LocalPath | None = None, num_output_representations: int | LocalPath | None = None,
                 *args, options_file: LocalPath | None = None, weight_file: LocalPath | None = None, **kwargs) -> None:
        if isinstance(bilm, (str, os.PathLike)):  # AllenNLP's Elmo(options_file, weight_file, n, ...)
            options_file, weight_file = bilm, num_output_representations
            bilm, (num_output_representations, *args) = None, args
        if options_file is not None:
            bilm = load_bilm(options_file, weight_file)
        if bilm is None or num_output_representations is None:
            raise TypeError("Elmo needs a BiLm (or options_file and weight_file) and num_output_representations")
        self._build(bilm, num_output_representations, *args, **kwargs)

    def _build(  # the module's own signature, after the files (if any) are loaded
        self,
        bilm: BiLm,
        num_output_representations: int,
        dropout: float = 0.5,
        do_layer_norm: bool = False,
        requires_grad: bool = False,
        keep_sentence_boundaries: bool = False,
        scalar_mix_parameters: list[float] | None = None,
        stateful: bool = False,
    ) -> None:
        nn.Module.__init__(self)
        self.bilm = bilm
        self.bilm.requires_grad_(requires_grad)
        n_layers = bilm.options.n_layers + 1
        trainable = scalar_mix_parameters is None
        self.scalar_mixes = nn.ModuleList(
            ScalarMix(n_layers, do_layer_norm, scalar_mix_parameters, trainable)
            for _ in range(num_output_representations)
        )
        self.dropout = nn.Dropout(dropout)
        self.keep_sentence_boundaries = keep_sentence_boundaries
        self.carried = CarriedState(bilm) if stateful else None

    @classmethod
    def from_files(cls, options_file: LocalPath, weight_file: LocalPath, num_output_representations: int,
                   **kwargs) -> Elmo:
        """Load ``options.json`` + ``weights.hdf5`` (local files), then build the module."""
        return cls(load_bilm(options_file, weight_file), num_output_representations, **kwargs)

    @classmethod
    def from_bilm(cls, bilm: BiLm, num_output_representations: int, **kwargs) -> Elmo:
        """Wrap an already-built :class:`BiLm` (the same as ``Elmo(bilm, n, ...)``)."""
        return cls(bilm, num_output_representations, **kwargs)

    def reset_states(self) -> None:
        if self.carried is not None:
            self.carried.reset()

    def get_output_dim(self) -> int:
        return self.bilm.options.output_dim

    def forward(self, char_ids: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        with_boundaries = add_sentence_boundaries(char_ids)
        state = None
        if self.carried is not None:
            state = self.carried.take(char_ids.shape[0])
        output = self.bilm(with_boundaries, state)
        if self.carried is not None:
            self.carried.keep(output.state)
        mask = output.mask
        layers = output.layers
        if not self.keep_sentence_boundaries:
            steps = char_ids.shape[1]
            mask = char_ids[:, :, 0] > 0
            layers = [layer[:, 1 : steps + 1] * mask.unsqueeze(-1) for layer in layers]
        representations = [self.dropout(mix(layers, mask)) for mix in self.scalar_mixes]
        return {"elmo_representations": representations, "mask": mask}
