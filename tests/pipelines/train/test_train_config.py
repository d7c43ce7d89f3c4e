"""`elmo train` configuration and the errors users cause — all caught before Ray starts."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from elmo_model.errors import ElmoError
from elmo_model.formats.export import export_model
from elmo_model.train.config import TrainConfig
from elmo_model.train.loop import new_model
from elmo_model.formats.vocab import Vocabulary
from pipelines import cli
from pipelines.config import load_config, write_config
from pipelines.train.job import TrainJobConfig

CONFIGS = Path(__file__).parents[3] / "pipelines" / "configs"


@dataclasses.dataclass(frozen=True)
class Tables:
    free: dict[str, Any] = dataclasses.field(default_factory=dict)
    weights: dict[str, float] = dataclasses.field(default_factory=dict)


def test_dict_fields_take_tables_and_set_overrides():
    config = load_config(Tables, overrides=["free.filters=[[1, 4], [2, 8]]", "free.name=x", "weights.GPU=1"])
    assert config == Tables(free={"filters": [[1, 4], [2, 8]], "name": "x"}, weights={"GPU": 1.0})
    with pytest.raises(ElmoError, match=r"config key 'weights.a': expected float, got 'x'"):
        load_config(Tables, overrides=["weights.a=x"])
    with pytest.raises(ElmoError, match=r"config key 'free': expected a table, got 3"):
        load_config(Tables, overrides=["free=3"])


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_committed_configs_load_validate_and_round_trip(name, tmp_path):
    config = load_config(TrainJobConfig, str(CONFIGS / name))
    config.validate()
    config.training.options()
    write_config(config, str(tmp_path / "config.toml"))
    assert load_config(TrainJobConfig, str(tmp_path / "config.toml")) == config


def test_model_overrides_reach_the_model_shape():
    config = load_config(TrainJobConfig, overrides=["train=x.txt", "output=out", "training.model_overrides.lstm_dim=48",
                                                    "training.model_overrides.n_layers=1", "worker_resources.node_a=1"])
    assert config.training.options().lstm_dim == 48 and config.training.options().n_layers == 1
    assert config.worker_resources == {"node_a": 1.0}
    assert config.storage_url() == "out/checkpoints"


def _fails(capsys, *args: str) -> str:
    import ray

    assert cli.main(["train", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and not ray.is_initialized(), err
    return err[0]


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "corpus.txt").write_text("the cat sat\nthe dog ran\n")
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "the", "cat", "sat", "dog", "ran"])
    (tmp_path / "vocab.txt").write_text(vocab.to_text())
    (tmp_path / "bad_vocab.txt").write_text("the\ncat\n")
    export_model(new_model(TrainConfig(), Vocabulary(["<S>", "</S>", "<UNK>", "x"])),
                 Vocabulary(["<S>", "</S>", "<UNK>", "x"]), tmp_path / "pretrained")
    return tmp_path


def test_missing_corpus_names_the_url(files, capsys):
    line = _fails(capsys, "--train", str(files / "nope.txt"), "--output", str(files / "out"))
    assert line == f"elmo train: error: file://{files}/nope.txt: no such file or directory"


def test_bad_vocab_names_the_url(files, capsys):
    line = _fails(capsys, "--train", str(files / "corpus.txt"), "--output", str(files / "out"),
                  "--vocab", str(files / "bad_vocab.txt"))
    assert line.startswith(f"elmo train: error: {files}/bad_vocab.txt: vocabulary lacks the special tokens")


def test_options_vocab_mismatch_on_init_from_names_the_model(files, capsys):
    line = _fails(capsys, "--train", str(files / "corpus.txt"), "--output", str(files / "out"),
                  "--vocab", str(files / "vocab.txt"), "--init-from", str(files / "pretrained"))
    assert line.startswith(f"elmo train: error: file://{files}/pretrained/weights.hdf5: softmax has 4 rows")
    line = _fails(capsys, "--train", str(files / "corpus.txt"), "--output", str(files / "out"),
                  "--vocab", str(files / "vocab.txt"), "--init-from", str(files))
    assert line == (f"elmo train: error: init_from file://{files}: not a model directory (options.json is missing; "
                    "expected options.json and weights.hdf5)")


def test_bad_config_key_and_value(files, capsys):
    line = _fails(capsys, "--train", "x.txt", "--output", "out", "--set", "training.lerning_rate=0.1")
    assert line.startswith("elmo train: error: unknown config key 'training.lerning_rate' (known keys: training.model,")
    line = _fails(capsys, "--train", "x.txt", "--output", "out", "--set", "training.optimizer=sgd")
    assert line == "elmo train: error: optimizer must be one of ('adamw', 'adagrad'), got 'sgd'"
    assert _fails(capsys, "--output", "out").startswith("elmo train: error: elmo train needs `train`")


def test_rerun_with_other_settings_is_refused(files, capsys):
    args = ["--train", str(files / "corpus.txt"), "--output", str(files / "out"), "--vocab", str(files / "vocab.txt"),
            "--name", "r1"]
    config = load_config(TrainJobConfig, overrides=[f"train={json.dumps(str(files / 'corpus.txt'))}",
                                                    f"vocab={json.dumps(str(files / 'vocab.txt'))}"])
    from pipelines.io.model_store import read_vocab
    from pipelines.train.job import resume_key

    key = resume_key(config, read_vocab(str(files / "vocab.txt")))
    checkpoint = files / "out" / "checkpoints" / "r1" / "checkpoint_000000004"
    checkpoint.mkdir(parents=True)
    (checkpoint / "meta.json").write_text(json.dumps({"step": 4, "resume_key": {**key, "training.batch_size": 8}}))
    line = _fails(capsys, *args)
    assert line.startswith(f"elmo train: error: run 'r1' in file://{files}/out/checkpoints already has a checkpoint "
                           "made with other settings (training.batch_size: 8 → 64)")


def test_the_kuberay_training_config_is_a_valid_job_config():
    import yaml

    from pipelines.config import from_dict, tomllib

    manifest = Path(__file__).parents[3] / "cluster" / "kuberay" / "rayjob-train.yaml"
    if not manifest.exists():
        pytest.skip("no cluster/kuberay/rayjob-train.yaml in this checkout")
    config_map = next(d for d in yaml.safe_load_all(manifest.read_text()) if d and d.get("kind") == "ConfigMap")
    config = from_dict(TrainJobConfig, tomllib.loads(config_map["data"]["train.toml"]))
    config.validate()
    assert config.use_gpu and config.storage_url() == config.output + "/checkpoints"
