"""The training run's generators: reproducible by seed and rank, saved and restored, and the
default generator left as it was."""

import torch

from elmo_model.train.rng import TrainRng


def test_dropout_scope_draws_from_its_own_generator_and_restores_the_default():
    torch.manual_seed(7)
    expected_default = torch.rand(3)
    torch.manual_seed(7)
    a, b = TrainRng(seed=1, rank=0), TrainRng(seed=1, rank=0)
    with a.dropout_scope():
        first = torch.rand(4)
    assert torch.equal(torch.rand(3), expected_default)  # untouched by the scope
    with b.dropout_scope():
        assert torch.equal(torch.rand(4), first)  # same seed and rank: same masks
    with a.dropout_scope():
        assert not torch.equal(torch.rand(4), first)  # the generator advanced
    with TrainRng(seed=1, rank=1).dropout_scope():
        assert not torch.equal(torch.rand(4), first)  # another rank: other masks


def test_state_round_trip_and_sampling_shared_by_ranks():
    a = TrainRng(seed=3, rank=0)
    saved = a.state_dict()
    draws = torch.rand(5, generator=a.sampling)
    b = TrainRng(seed=99, rank=1)
    b.load_state_dict(saved)
    assert torch.equal(torch.rand(5, generator=b.sampling), draws)
    assert torch.equal(torch.rand(2, generator=TrainRng(3, 0).sampling), torch.rand(2, generator=TrainRng(3, 5).sampling))
