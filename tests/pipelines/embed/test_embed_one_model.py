"""One model per output: an `elmo embed` output is bound to one model and one set of output settings.

The case that mixed them: embed a, b, c with model B; delete b; embed with model A, crash after a
commit; rerun — the output held rows of both models. Now a run with another model stops with one
line (exit 2) unless it asks for ``--replace`` (everything re-embedded, switched in one commit,
rows of inputs no longer listed removed); ``--prune`` drops rows of deleted inputs.
"""

from __future__ import annotations

import json

import h5py
import pyarrow.parquet as pq
import pytest

from elmo_model.errors import ElmoError
from pipelines.embed.job import EmbedJobConfig, run_embed
from pipelines.fault_injection import ENV_VAR
from pipelines.io.storage import resolve

from pipelines_support import auto_precision_on_a_worker, local_ray, local_s3_env
from support import run_elmo

pytestmark = pytest.mark.ray
TEXTS = {"a.txt": "the bank raised its rates\nwe sat on the river bank\n",
         "b.txt": "another file with words\n", "c.txt": "a third input here\nand its second line\n"}


@pytest.fixture(scope="module")
def env(tiny_files, tmp_path_factory):
    other = tmp_path_factory.mktemp("model-a") / "weights.hdf5"
    other.write_bytes(tiny_files[1].read_bytes())
    with h5py.File(other, "r+") as f:  # model A: the fixture with one filter changed
        f["CNN/W_cnn_0"][...] = f["CNN/W_cnn_0"][...] + 0.5
    with local_s3_env("omodels", "ocorpus", "oout") as s3, local_ray():
        fs = resolve("s3://omodels").fs
        for name, weights in (("B", tiny_files[1]), ("A", other)):
            fs.put_file(str(tiny_files[0]), f"omodels/{name}/options.json")
            fs.put_file(str(weights), f"omodels/{name}/weights.hdf5")
        yield s3


def _put_texts(prefix: str):
    """:data:`TEXTS` under ``s3://ocorpus/<prefix>/``; returns the bucket's filesystem."""
    fs = resolve("s3://ocorpus").fs
    for name, text in TEXTS.items():
        fs.pipe_file(f"ocorpus/{prefix}/{name}", text.encode())
    return fs


def _config(model: str, output: str, prefix: str, **kw) -> EmbedJobConfig:
    return EmbedJobConfig(model=f"s3://omodels/{model}", inputs=(f"s3://ocorpus/{prefix}",), output=output,
                          actors=(1, 1), cpus_per_actor=0.5, **kw)


def _rows(output: str) -> list[tuple[str, int, str]]:
    loc = resolve(output)
    table = pq.read_table(loc.path, filesystem=loc.arrow_fs)
    return sorted(zip([s.rsplit("/", 1)[1] for s in table.column("source").to_pylist()],
                      table.column("line").to_pylist(), table.column("model").to_pylist()))


def _visible(output: str) -> set[str]:
    loc = resolve(output)
    return {p for p in loc.fs.find(loc.path) if "/_" not in p[len(loc.path):]}


def test_another_model_is_refused_and_replace_switches_everything_in_one_commit(env):
    fs = _put_texts("mix")
    output = "s3://oout/mix"
    run_embed(_config("B", output, "mix"))
    with_b = _rows(output)
    model_b = with_b[0][2]
    assert len(with_b) == 5 and {m for *_, m in with_b} == {model_b}
    fs.rm_file("ocorpus/mix/b.txt")
    before = _visible(output)

    with pytest.raises(ElmoError, match=f"holds vectors of model {model_b} .*this run would add vectors of model"):
        run_embed(_config("A", output, "mix", commit_bytes=1))
    assert _visible(output) == before
    cli = run_elmo("embed", "--model", "s3://omodels/A", "--input", "s3://ocorpus/mix", "--output", output,
                   "--actors", "1,1", "--cpus-per-actor", "0.5", env={"RAY_AUTH_MODE": "disabled"})
    assert cli.returncode == 2 and "--replace" in cli.stderr and "Traceback" not in cli.stderr
    assert len([line for line in cli.stderr.splitlines() if line.startswith("elmo")]) == 1, cli.stderr

    crashed = run_elmo("embed", "--model", "s3://omodels/A", "--input", "s3://ocorpus/mix", "--output", output,
                       "--actors", "1,1", "--cpus-per-actor", "0.5", "--replace", "--set", "commit_bytes=1",
                       env={"RAY_AUTH_MODE": "disabled", ENV_VAR: '{"embed_crash_before_commit": true}'})
    assert crashed.returncode == 17, crashed.stderr[-3000:]
    assert _rows(output) == with_b  # all of model B, b.txt included: nothing of the replacement is visible

    result = run_embed(_config("A", output, "mix", commit_bytes=1, replace=True))
    assert sorted(result.embedded) == ["s3://ocorpus/mix/a.txt", "s3://ocorpus/mix/c.txt"] and result.commits == 1
    with_a = _rows(output)
    assert [(s, line) for s, line, _ in with_a] == [("a.txt", 0), ("a.txt", 1), ("c.txt", 0), ("c.txt", 1)]
    assert {m for *_, m in with_a} == {with_a[0][2]} != {model_b}  # one model, and not B
    manifest = json.loads(resolve(output).fs.cat_file("oout/mix/_manifest.json"))
    assert set(manifest["inputs"]) == {"s3://ocorpus/mix/a.txt", "s3://ocorpus/mix/c.txt"}
    assert manifest["binding"]["model"] == with_a[0][2] and manifest["binding"]["layers"] == "top"
    # other output settings are another binding too
    with pytest.raises(ElmoError, match="pooling mean"):
        run_embed(_config("A", output, "mix", pooling="mean"))


def test_prune_drops_the_rows_of_deleted_inputs(env):
    fs = _put_texts("prune")
    output = "s3://oout/prune"
    run_embed(_config("B", output, "prune"))
    fs.rm_file("ocorpus/prune/c.txt")
    assert run_embed(_config("B", output, "prune")).embedded == []
    assert {s for s, *_ in _rows(output)} == {"a.txt", "b.txt", "c.txt"}  # kept without --prune
    assert run_embed(_config("B", output, "prune", prune=True)).embedded == []
    assert {s for s, *_ in _rows(output)} == {"a.txt", "b.txt"}
    manifest = json.loads(resolve(output).fs.cat_file("oout/prune/_manifest.json"))
    assert set(manifest["inputs"]) == {"s3://ocorpus/prune/a.txt", "s3://ocorpus/prune/b.txt"}


def test_precision_auto_is_resolved_once_where_the_actors_run_and_bound_to_the_output(env, caplog):
    """``auto`` becomes the precision the actors' device calls for (asked of a Ray task with an
    actor's resources); the output records that precision, and another precision is refused."""
    fs = resolve("s3://ocorpus").fs
    fs.pipe_file("ocorpus/auto/a.txt", TEXTS["a.txt"].encode())
    output = "s3://oout/auto"
    expected = auto_precision_on_a_worker()
    with caplog.at_level("INFO", logger="pipelines.embed.precision"):
        run_embed(_config("B", output, "auto", precision="auto"))
    assert f"--precision auto: the actors run {expected} (auto: a CPU" in caplog.text
    manifest = json.loads(resolve(output).fs.cat_file("oout/auto/_manifest.json"))
    assert manifest["binding"]["precision"] == expected
    assert run_embed(_config("B", output, "auto", precision="auto")).embedded == []  # the same binding
    other = "bf16" if expected == "fp32" else "fp32"
    with pytest.raises(ElmoError, match=f"precision {expected}.*precision {other}"):
        run_embed(_config("B", output, "auto", precision=other))


def test_precision_auto_keeps_the_precision_of_an_output_already_bound(env, caplog):
    """An output bound to fp32 or bf16 vectors keeps that precision under ``auto`` — whatever the
    device would call for, a new input is embedded (not refused) in the output's precision, and an
    up-to-date rerun decides without asking any device; ``--replace`` decides by the device again."""
    fs = resolve("s3://ocorpus").fs
    fs.pipe_file("ocorpus/keep/a.txt", TEXTS["a.txt"].encode())
    output = "s3://oout/keep"
    by_device = auto_precision_on_a_worker()
    other = "bf16" if by_device == "fp32" else "fp32"
    run_embed(_config("B", output, "keep", precision=other))
    fs.pipe_file("ocorpus/keep/b.txt", TEXTS["b.txt"].encode())
    with caplog.at_level("INFO", logger="pipelines.embed.precision"):
        assert run_embed(_config("B", output, "keep", precision="auto")).embedded == ["s3://ocorpus/keep/b.txt"]
    assert f"holds {other} vectors: this run embeds in {other} too" in caplog.text
    assert "the actors run" not in caplog.text  # no device was asked
    manifest = json.loads(resolve(output).fs.cat_file("oout/keep/_manifest.json"))
    assert manifest["binding"]["precision"] == other
    assert {r["settings_hash"] for r in manifest["inputs"].values()} == {manifest["binding"]["settings_hash"]}
    caplog.clear()
    with caplog.at_level("INFO"):
        assert run_embed(_config("B", output, "keep", precision="auto")).embedded == []
    assert "same model files" in caplog.text  # decided from the manifest alone
    run_embed(_config("B", output, "keep", precision="auto", replace=True))
    manifest = json.loads(resolve(output).fs.cat_file("oout/keep/_manifest.json"))
    assert manifest["binding"]["precision"] == by_device
