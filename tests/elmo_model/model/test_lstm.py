"""ProjectedLstm's parameters in TF's layout, and the packed inference run against the step-by-step
oracle on the same parameters."""

import torch

from elmo_model.model.lstm import ProjectedLstm
from elmo_model.model.packed_lstm import run_packed
from elmo_model.testing.step_by_step import lstm_steps


def test_shapes_init_and_the_folded_forget_bias():
    lstm = ProjectedLstm(6, 8, 4, cell_clip=3.0, proj_clip=3.0)
    assert lstm.input_weight.shape == (32, 6) and lstm.recurrent_weight.shape == (32, 4)
    assert lstm.projection.shape == (4, 8) and not lstm.bias.any()
    folded = lstm.folded_bias()
    assert torch.equal(folded[16:24], torch.ones(8)) and not folded[:16].any() and not folded[24:].any()
    assert not lstm.bias.any()  # the parameter itself is untouched
    no_projection = ProjectedLstm(6, 8, None)
    assert no_projection.out_dim == 8 and no_projection.projection is None


def test_packed_run_equals_the_step_by_step_recurrence():
    torch.manual_seed(0)
    lstm = ProjectedLstm(5, 7, 3, cell_clip=0.5, proj_clip=0.3).double()
    with torch.no_grad():
        for p in lstm.parameters():
            p.normal_(0, 1.0)  # big enough for both clips to act
    lengths = [4, 3, 1]
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    batch_sizes = [sum(n > t for n in lengths) for t in range(4)]
    expected, (h, c) = lstm_steps(lstm, x, batch_sizes)
    packed = torch.cat([x[:n, t] for t, n in enumerate(batch_sizes)]).unsqueeze(0)  # (1, N, 5)
    with torch.no_grad():
        out, c_final = run_packed([lstm], packed, batch_sizes, torch.zeros(1, 3, 3, dtype=torch.float64),
                                  torch.zeros(1, 3, 7, dtype=torch.float64))
    got = torch.cat([expected[:n, t] for t, n in enumerate(batch_sizes)])
    torch.testing.assert_close(out[0], got, atol=1e-12, rtol=0)
    torch.testing.assert_close(c_final[0], c, atol=1e-12, rtol=0)
    assert (expected.abs() >= 0.3 - 1e-12).any()  # the projection clip acted
