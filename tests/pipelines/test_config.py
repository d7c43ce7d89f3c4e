"""pipelines.config: TOML file + flags + ``--set`` overrides into frozen dataclasses."""

import argparse
import dataclasses
from typing import Literal

import pytest

from elmo_model.errors import ElmoError
from pipelines.config import add_config_arguments, apply_override, load_config, parse_value, to_toml, write_config
from pipelines.ingest.reader import IngestConfig
from pipelines.vocab_job import VocabConfig


@dataclasses.dataclass(frozen=True)
class Optim:
    lr: float = 0.1
    betas: tuple[float, ...] = (0.9, 0.999)


@dataclasses.dataclass(frozen=True)
class Job:
    name: str = "run"
    steps: int = 10
    device: Literal["cpu", "cuda"] = "cpu"
    limit: int | None = None
    verbose: bool = False
    optim: Optim = dataclasses.field(default_factory=Optim)


@pytest.mark.parametrize("raw, value", [("3", 3), ("2.5", 2.5), ("true", True), ("[1, 2]", [1, 2]),
                                        ('"quoted"', "quoted"), ("s3://bucket/x", "s3://bucket/x"),
                                        ("plain words", "plain words"), ("1e-3", 0.001)])
def test_values_parse_as_toml_literals_else_strings(raw, value):
    assert parse_value(raw) == value


def test_defaults_then_file_then_flags_then_set(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('name = "from-file"\nsteps = 5\n[optim]\nlr = 1\n')
    job = load_config(Job, str(path), {"steps": 7, "limit": None}, ["optim.betas=[0.5, 0.6]", "device=cuda"])
    assert job == Job(name="from-file", steps=7, device="cuda", optim=Optim(lr=1.0, betas=(0.5, 0.6)))
    assert isinstance(job.optim.lr, float)
    assert load_config(Job) == Job()


@pytest.mark.parametrize("override, message", [
    ("stepz=3", r"unknown config key 'stepz' \(known keys: name, steps"),
    ("optim.momentum=0.9", r"unknown config key 'optim.momentum' \(known keys: optim.lr, optim.betas\)"),
    ("steps=1.5", r"config key 'steps': expected int, got 1.5"),
    ("steps=true", r"config key 'steps': expected int, got True"),
    ("device=tpu", r"config key 'device': 'tpu' is not one of \['cpu', 'cuda'\]"),
    ("limit=many", r"config key 'limit': expected int, got 'many'"),
    ("optim=3", r"config key 'optim': expected a table"),
    ("optim.betas=[1, 'x']", r"config key 'optim.betas\[1\]': expected float"),
    ("steps", r"expected KEY=VALUE"),
    ("a..b=1", r"expected KEY=VALUE"),
])
def test_bad_overrides_fail_naming_the_key(override, message):
    with pytest.raises(ElmoError, match=message):
        load_config(Job, overrides=[override])


def test_nested_set_through_a_scalar_fails():
    data = {"name": 1}
    with pytest.raises(ElmoError, match="name is not a table"):
        apply_override(data, "name.x=1")


def test_invalid_toml_file_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("steps = = 3\n")
    with pytest.raises(ElmoError, match="bad.toml: not a valid TOML config"):
        load_config(Job, str(path))


def test_written_config_loads_back_identical(tmp_path):
    config = VocabConfig(inputs=("s3://b/x", "/data"), output="s3://b/out", max_size=100,
                         ingest=IngestConfig(format="jsonl", max_tokens=20, invalid_utf8="skip"))
    write_config(config, str(tmp_path / "config.toml"))
    assert load_config(VocabConfig, str(tmp_path / "config.toml")) == config
    assert to_toml(config).startswith("# resolved VocabConfig\n")


def test_config_arguments_on_a_parser():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--config", "c.toml", "--set", "a=1", "--set", "b.c=x"])
    assert (args.config, args.overrides) == ("c.toml", ["a=1", "b.c=x"])


def test_test_only_faults_are_no_config_keys(monkeypatch):
    from pipelines import fault_injection
    from pipelines.embed.job import EmbedJobConfig
    from pipelines.train.job import TrainJobConfig

    with pytest.raises(ElmoError, match="unknown config key 'testing'"):
        load_config(TrainJobConfig, overrides=["testing.fail_at_step=3"])
    with pytest.raises(ElmoError, match="unknown config key 'test_crash_before_commit'"):
        load_config(EmbedJobConfig, overrides=["test_crash_before_commit=true"])
    monkeypatch.delenv(fault_injection.ENV_VAR, raising=False)
    assert fault_injection.planned() == fault_injection.NONE
    monkeypatch.setenv(fault_injection.ENV_VAR, '{"train_exit_before_step": 5, "train_exit_marker": "/m"}')
    assert fault_injection.planned() == fault_injection.Faults(train_exit_before_step=5, train_exit_marker="/m")
    monkeypatch.setenv(fault_injection.ENV_VAR, '{"no_such_fault": 1}')
    with pytest.raises(ElmoError, match="ELMO_TEST_FAULTS: expected a JSON object"):
        fault_injection.planned()


@pytest.mark.parametrize("spelling", ['""', "false"])
def test_id_field_can_be_unset_from_toml_and_cli_and_round_trips(tmp_path, spelling):
    """A corpus with no id column: `id_field = ""` (or false) means none, from TOML and from --set / --id-field."""
    from pipelines.commands import vocab as vocab_command
    from pipelines.commands.ingest_flags import ingest_flags
    from pipelines.ingest.text_sources import read_jsonl_file

    path = tmp_path / "vocab.toml"
    path.write_text(f'inputs = ["x"]\noutput = "y"\n[ingest]\nid_field = {spelling}\n')
    from_toml = load_config(VocabConfig, str(path))
    from_set = load_config(VocabConfig, None, {"inputs": ("x",), "output": "y"}, [f"ingest.id_field={spelling}"])
    parser = argparse.ArgumentParser()
    vocab_command.register(parser.add_subparsers())
    args = parser.parse_args(["vocab", "--id-field", ""])
    from_flag = load_config(VocabConfig, None, {"inputs": ("x",), "output": "y", **ingest_flags(args)})
    for config in (from_toml, from_set, from_flag):
        assert config.ingest.id_field == ""
        resolved = tmp_path / "resolved.toml"
        resolved.write_text(to_toml(config))
        assert load_config(VocabConfig, str(resolved)) == config  # not back to the default "id"
    assert IngestConfig(id_field=None) == IngestConfig(id_field="")
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"id": "doc-1", "text": "a b"}\n')
    import pyarrow.fs

    table = next(read_jsonl_file(pyarrow.fs.LocalFileSystem(), str(jsonl), str(jsonl), "text", from_toml.ingest.id_field))
    assert table.column("doc_id").to_pylist() == [None]
    default = next(read_jsonl_file(pyarrow.fs.LocalFileSystem(), str(jsonl), str(jsonl), "text", IngestConfig().id_field))
    assert default.column("doc_id").to_pylist() == ["doc-1"]
