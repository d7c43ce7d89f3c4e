"""The training data plan without Ray: windows, the global batch sequence, ranks, resumption."""

import itertools

import numpy as np
import pyarrow as pa
import pytest

from elmo_model.train.batching import sentence_windows
from elmo_model.errors import ElmoError
from elmo_model.train.batch_plan import POOL_BATCHES, BatchPlan, global_batches, rank_batches, rank_eval_batches
from pipelines.train.data import ArrowPool, table_windows, window_table


def _windows(n: int, seed: int = 0) -> pa.Table:
    """``n`` windows of random lengths, each token naming its window (``w7``) so batches are checkable."""
    lengths = np.random.default_rng(seed).integers(2, 30, n)
    tokens = [[f"w{i}"] * int(k) for i, k in enumerate(lengths)]
    return pa.table({"tokens": pa.array(tokens, pa.list_(pa.string())), "n_tokens": pa.array(lengths, pa.int32())})


def _reader(table: pa.Table, plan: BatchPlan):
    def read_epoch():
        for start in range(0, table.num_rows, plan.pool_size):
            yield ArrowPool(table.slice(start, plan.pool_size))
    return read_epoch


def _ids(windows: list[list[str]]) -> list[int]:
    return [int(w[0][1:]) for w in windows]


def test_window_table_cuts_sentences_and_keys_depend_on_seed():
    tokens = [f"t{i}" for i in range(9)]
    sentences = pa.table({"source": ["s3://b/a.txt", "s3://b/a.txt"], "line": [0, 4], "sentence_index": [0, 0],
                          "tokens": [tokens, ["x"]]})
    table = window_table(sentences, max_tokens=4, seed=1)
    assert table.column("tokens").to_pylist() == [*sentence_windows(tokens, 4), ["<S>", "x", "</S>"]]
    assert table.column("n_tokens").to_pylist() == [len(w) for w in table.column("tokens").to_pylist()]
    assert table.column("window").to_pylist() == [0, 1, 2, 3, 0]
    again, other = window_table(sentences, 4, seed=1), window_table(sentences, 4, seed=2)
    assert again.column("key").equals(table.column("key"))
    assert not other.column("key").equals(table.column("key"))
    assert len(set(table.column("key").to_pylist())) == 5


def test_every_window_once_per_epoch_in_length_sorted_batches():
    table = _windows(3 * 4 * POOL_BATCHES + 37)  # 3 full pools and a partial one
    plan = BatchPlan(table.num_rows, batch_size=4, seed=3)
    epoch = list(itertools.islice(global_batches(plan, _reader(table, plan), 0), plan.batches_per_epoch))
    assert [g for g, _, _ in epoch] == list(range(plan.batches_per_epoch))
    seen = sorted(i for _, pool, idx in epoch for i in _ids(pool.take(idx)))
    assert seen == list(range(table.num_rows))
    spreads = [np.ptp(pool.lengths()[idx]) for _, pool, idx in epoch]
    assert np.mean(spreads) < 2  # batches of similar length (random batches would spread ~20)
    second = list(itertools.islice(global_batches(plan, _reader(table, plan), plan.batches_per_epoch), 5))
    assert [g for g, _, _ in second] == list(range(plan.batches_per_epoch, plan.batches_per_epoch + 5))
    assert [list(b) for _, _, b in second] != [list(b) for _, _, b in epoch[:5]]  # reshuffled per epoch


def test_resuming_at_any_position_continues_the_same_sequence():
    table = _windows(2 * 3 * POOL_BATCHES + 11, seed=1)
    plan = BatchPlan(table.num_rows, batch_size=3, seed=0)
    total = plan.batches_per_epoch * 2 + 7
    full = [(g, list(b)) for g, _, b in itertools.islice(global_batches(plan, _reader(table, plan), 0), total)]
    for start in (1, 49, 50, plan.batches_per_epoch, plan.batches_per_epoch + 3):
        tail = itertools.islice(global_batches(plan, _reader(table, plan), start), total - start)
        assert [(g, list(b)) for g, _, b in tail] == full[start:]


def test_ranks_split_each_global_step_and_together_equal_one_worker():
    table = _windows(101, seed=2)
    plan = BatchPlan(table.num_rows, batch_size=2, seed=5)
    one = [_ids(b) for b in itertools.islice(rank_batches(plan, _reader(table, plan), 0, 1, 0), 90)]
    for start in (0, 8):
        ranks = [list(itertools.islice(rank_batches(plan, _reader(table, plan), start, 3, r), 10)) for r in range(3)]
        interleaved = [_ids(ranks[r][s]) for s in range(10) for r in range(3)]
        assert interleaved == one[start : start + 30]


def test_changed_data_is_detected():
    table = _windows(50)
    plan = BatchPlan(60, batch_size=4, seed=0)
    with pytest.raises(ElmoError, match="training data changed: pool 0 has 50 windows, expected 60"):
        next(global_batches(plan, _reader(table, plan), 0))


def test_eval_batches_are_shared_out_round_robin():
    tables = [pa.table({"tokens": [[f"w{j}"]]}) for j in range(7)]
    assert [b[0][0] for b in rank_eval_batches(table_windows(tables), 3, 1)] == ["w1", "w4"]
    assert sum(len(list(rank_eval_batches(table_windows(tables), 3, r))) for r in range(3)) == 7
