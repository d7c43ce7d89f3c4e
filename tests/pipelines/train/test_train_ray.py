"""`elmo train` on a local Ray (2 CPUs, 2 workers × 0.5 CPU) with everything in a moto S3.

Four short Ray Train runs: data parallelism (2 workers × b == 1 worker × 2b after one step), and an
uninterrupted run against one whose rank-1 worker dies once (same per-step losses, same model).
Run names are unique: Ray Train resumes a run of a known name.
"""

import dataclasses
import json
import uuid

import numpy as np
import pytest
import torch
from pipelines_support import local_ray, local_s3_env, patched_env

from elmo_model.infer.elmo import Elmo, batch_to_ids
from elmo_model.errors import ElmoError
from elmo_model.train.config import TrainConfig
from elmo_model.formats.vocab import Vocabulary
from pipelines.io import storage
from pipelines.io.model_store import load_model
from pipelines.fault_injection import ENV_VAR
from pipelines.train.job import TrainJobConfig, run_training

pytestmark = pytest.mark.ray

WORDS = "the cat sat on a mat dog saw log and ran far away from home".split()
TOKENS = sorted(set(WORDS))


def _sentences(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)) + "\n"


@pytest.fixture(scope="module")
def s3():
    with local_s3_env("trainray") as server, patched_env({"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}), local_ray():
        storage.write_text("s3://trainray/vocab.txt", Vocabulary([*("<S>", "</S>", "<UNK>"), *TOKENS]).to_text())
        # 8 sentences of ≤ 10 tokens with max_tokens 16: exactly 8 windows (one pool).
        storage.write_text("s3://trainray/eight/a.txt", _sentences(8, 1).replace("\n", " end\n"))
        storage.write_text("s3://trainray/corpus/a.txt", _sentences(14, 2))
        storage.write_text("s3://trainray/corpus/b.txt", _sentences(10, 3))
        storage.write_text("s3://trainray/valid.txt", _sentences(6, 4))
        storage.write_text("s3://trainray/blank.txt", "\n  \n\n")
        yield server


def _config(tag: str, **kw) -> TrainJobConfig:
    name = f"{tag}-{uuid.uuid4().hex[:8]}"
    training = dict(batch_size=2, max_tokens=16, steps=8, log_every=1, checkpoint_every=3, seed=7, dropout=0.1,
                    softmax="sampled", n_negative_samples_batch=6)
    training.update(kw.pop("training", {}))
    base = dict(name=name, train=("s3://trainray/corpus/",), vocab="s3://trainray/vocab.txt",
                output=f"s3://trainray/out/{name}", storage="s3://trainray/ckpt", num_workers=2,
                cpus_per_worker=0.5, max_failures=2, keep_checkpoints=5, training=TrainConfig(**training))
    base.update(kw)
    return TrainJobConfig(**base)


def _exported(config: TrainJobConfig):
    model = load_model(config.output, with_vocab=True)
    return model.language_model(model.vocab, dropout=0.0)


def test_two_workers_of_b_equal_one_worker_of_2b(s3):
    one_step = dict(steps=1, dropout=0.0, softmax="full", checkpoint_every=0)
    two = _config("dp2", train=("s3://trainray/eight/",), training=dict(batch_size=4, **one_step))
    one = _config("dp1", train=("s3://trainray/eight/",), num_workers=1, training=dict(batch_size=8, **one_step))
    results = [run_training(two), run_training(one)]
    assert [r.n_windows for r in results] == [8, 8]
    a, b = _exported(two).state_dict(), _exported(one).state_dict()
    initial = _exported_initial(one)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-6, rtol=1e-5)
    assert any(not torch.equal(a[n], initial[n]) for n in a)  # the step really changed the model
    assert results[0].metrics["loss"] == pytest.approx(results[1].metrics["loss"], rel=1e-6)


def _exported_initial(config: TrainJobConfig) -> dict:
    from elmo_model.train.loop import new_model

    vocab = Vocabulary(storage.read_text(config.vocab).split())
    return new_model(config.training, vocab).state_dict()


@pytest.fixture(scope="module")
def uninterrupted(s3):
    config = _config("straight", valid=("s3://trainray/valid.txt",), training=dict(eval_every=4))
    return config, run_training(config)


def _rows(config: TrainJobConfig) -> list[dict]:
    return json.loads(storage.read_text(config.output + "/metrics.json"))["rows"]


def test_worker_death_resumes_from_checkpoint_with_the_same_losses(s3, uninterrupted, tmp_path):
    straight_config, straight = uninterrupted
    fault = {"train_exit_before_step": 5, "train_exit_rank": 1, "train_exit_marker": str(tmp_path / "failed-once")}
    config = _config("faulty", valid=straight_config.valid, training=dict(eval_every=4))
    with patched_env({ENV_VAR: json.dumps(fault)}):
        result = run_training(config)
    assert (tmp_path / "failed-once").exists()  # the worker did die
    assert result.resumed_at_steps == [3] and result.metrics["step"] == 8
    expected, got = _rows(straight_config), _rows(config)
    assert [r["step"] for r in got] == list(range(1, 9))
    for want, have in zip(expected, got):
        assert ("valid_perplexity" in have) == ("valid_perplexity" in want) == (have["step"] in (4, 8))
        for key in ("loss_forward", "loss_backward", "grad_norm", "valid_perplexity"):
            if key in want:
                assert have[key] == pytest.approx(want[key], rel=1e-6), (have["step"], key)
    for name, value in _exported(straight_config).state_dict().items():
        torch.testing.assert_close(_exported(config).state_dict()[name], value, atol=1e-6, rtol=1e-6)


def test_outputs_and_the_exported_model_embeds(s3, uninterrupted):
    config, result = uninterrupted
    names = {e.url.rsplit("/", 1)[1] for e in storage.list_files(config.output)}
    assert {"options.json", "weights.hdf5", "vocab.txt", "config.toml", "metrics.csv", "metrics.json",
            "training_curve.png"} <= names
    assert storage.read_bytes(config.output + "/training_curve.png")[:4] == b"\x89PNG"
    assert storage.read_text(config.output + "/metrics.csv").splitlines()[0].startswith("step,loss,")
    assert "valid_perplexity" in result.metrics and result.metrics["step"] == 8
    elmo = Elmo(load_model(config.output).bilm, 1, dropout=0.0)
    out = elmo(batch_to_ids([["the", "cat", "sat"], ["a", "dog"]]))
    assert out["elmo_representations"][0].shape == (2, 3, 32)
    assert torch.isfinite(out["elmo_representations"][0]).all()
    ckpt_dir = f"{config.storage}/{config.name}/checkpoint_000000008"
    local = storage.resolve(ckpt_dir)
    state = torch.load(local.fs.open(local.path + "/checkpoint.pt", "rb"), weights_only=True)
    for name, value in _exported(config).state_dict().items():
        torch.testing.assert_close(state["model"][name], value)
    assert state["step"] == 8 and state["extra"]["position"] == 16


def test_rerun_of_a_finished_run_with_more_steps_continues_it(s3, uninterrupted):
    config, first = uninterrupted
    longer = dataclasses.replace(config, training=dataclasses.replace(config.training, steps=10))
    result = run_training(longer)
    assert result.resumed_at_steps == [8] and result.metrics["step"] == 10
    rows = _rows(longer)
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert rows[7]["loss"] == first.metrics["loss"]  # steps 1–8 kept from the first run
    again = run_training(longer)  # finished: nothing to train, the export is published again
    assert again.metrics == result.metrics and again.resumed_at_steps == [8]
    with pytest.raises(ElmoError, match=rf"^run '{config.name}' in s3://trainray/ckpt already has a checkpoint made "
                                        r"with other settings \(training.seed: 7 → 8\)"):  # found by the driver
        run_training(dataclasses.replace(config, training=dataclasses.replace(config.training, seed=8)))


def test_empty_corpus_is_one_error_before_training(s3):
    with pytest.raises(ElmoError, match=r"s3://trainray/blank.txt: the training corpus has no sentences"):
        run_training(_config("blank", train=("s3://trainray/blank.txt",)))


def _losses(config: TrainJobConfig) -> list[tuple[float, float]]:
    return [(r["loss_forward"], r["loss_backward"]) for r in _rows(config)]


def test_stream_mode_worker_death_resumes_with_the_same_losses(s3, tmp_path):
    """2 workers × 2 streams each, state carried; rank 1 dies before step 5 and the run resumes at 3."""
    stream = dict(mode="stream", max_tokens=6)
    straight = _config("stream", training=stream)
    run_training(straight)
    fault = {"train_exit_before_step": 5, "train_exit_rank": 1, "train_exit_marker": str(tmp_path / "failed")}
    faulty = _config("streamfault", training=stream)
    with patched_env({ENV_VAR: json.dumps(fault)}):
        result = run_training(faulty)
    assert (tmp_path / "failed").exists() and result.resumed_at_steps == [3]
    assert [r["step"] for r in _rows(faulty)] == list(range(1, 9))
    np.testing.assert_allclose(_losses(faulty), _losses(straight), rtol=1e-6)
    for name, value in _exported(straight).state_dict().items():
        torch.testing.assert_close(_exported(faulty).state_dict()[name], value, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["sentence", "stream"])
def test_one_ray_worker_is_the_in_process_loop(s3, mode):
    """The Ray job with one worker and train_in_process on the same lines train the same steps and
    validate alike (stream mode: the held-out text reaches the worker as whole sentences in order)."""
    from elmo_model.train.loop import train_in_process

    config = _config(f"one-{mode}", train=("s3://trainray/corpus/a.txt",), num_workers=1,
                     valid=("s3://trainray/valid.txt",), training=dict(mode=mode, eval_every=4))
    run_training(config)
    sentences = [line.split() for line in storage.read_text("s3://trainray/corpus/a.txt").splitlines()]
    held_out = [line.split() for line in storage.read_text("s3://trainray/valid.txt").splitlines()]
    vocab = Vocabulary(storage.read_text(config.vocab).split())
    rows: list[dict] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker (threads = its CPUs): the same summation order
    try:
        train_in_process(config.training, sentences, vocab, valid_sentences=held_out, on_metrics=rows.append,
                         source="s3://trainray/corpus/a.txt")
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose([(r["loss_forward"], r["loss_backward"]) for r in rows], _losses(config), rtol=1e-6)
    validations = [(r["step"], r["valid_perplexity_forward"], r["valid_perplexity_backward"])
                   for r in rows if "valid_perplexity" in r]
    on_ray = [(r["step"], r["valid_perplexity_forward"], r["valid_perplexity_backward"])
              for r in _rows(config) if "valid_perplexity" in r]
    assert [v[0] for v in validations] == [v[0] for v in on_ray] == [4, 8]
    np.testing.assert_allclose([v[1:] for v in validations], [v[1:] for v in on_ray], rtol=1e-5)
