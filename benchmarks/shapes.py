"""The three model shapes the benchmarks run, with random weights that keep clipping active."""

from __future__ import annotations

import math

import torch

from elmo_model.model.bilm import BiLm
from elmo_model.model.options import ElmoOptions
from elmo_model.train.config import MODEL_PRESETS

SHAPES: dict[str, ElmoOptions] = {
    "fixture": ElmoOptions(**MODEL_PRESETS["tiny"]),  # tests/fixtures/elmo_tiny/options.json
    "small": ElmoOptions(**MODEL_PRESETS["small"]),
    "original": ElmoOptions(**MODEL_PRESETS["original"]),  # the published 5.5B-token ELMo (93.6M parameters)
}


def random_model(options: ElmoOptions, seed: int = 0) -> BiLm:
    """A biLM with random weights scaled so that activations stay O(1) and the LSTM is not chaotic
    (float32 rounding is not amplified past 1e-5), while ~1 % of first-layer outputs hit ``proj_clip``,
    about what trained weights do."""
    torch.manual_seed(seed)
    model = BiLm(options)
    with torch.no_grad():
        for p in model.token_encoder.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.normal_(0, (0.7 if p.dim() > 1 else 0.5) / math.sqrt(fan_in))
        model.token_encoder.char_embedding.weight.normal_(0, 1.0)
        model.token_encoder.char_embedding.weight[0].zero_()
        for lstm in [*model.forward_layers, *model.backward_layers]:
            lstm.input_weight.normal_(0, 1.0 / math.sqrt(lstm.input_weight.shape[1]))
            lstm.recurrent_weight.normal_(0, 0.5 / math.sqrt(lstm.recurrent_weight.shape[1]))
            lstm.bias.normal_(0, 0.5)
            if lstm.projection is not None:
                lstm.projection.normal_(0, 3.0 / math.sqrt(lstm.projection.shape[1]))
    return model.eval()


def flops_per_position(o: ElmoOptions) -> dict[str, float]:
    """Analytic FLOPs (2 per multiply-add) per token position, by part."""
    conv = sum(2 * (o.max_characters_per_token - w + 1) * o.char_embedding_dim * w * n for w, n in o.filters)
    highway = o.n_highway * 2 * (2 * o.n_filters * o.n_filters)
    token_proj = 2 * o.n_filters * o.projection_dim if o.has_token_projection else 0
    gates = 2 * (o.projection_dim + o.projection_dim) * 4 * o.lstm_dim
    proj = 2 * o.lstm_dim * o.projection_dim if o.has_lstm_projection else 0
    lstm = 2 * o.n_layers * (gates + proj)
    return {"char_cnn": conv + highway + token_proj, "lstm": lstm, "total": conv + highway + token_proj + lstm}
