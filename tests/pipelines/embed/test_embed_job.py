"""`elmo embed` against a moto S3 server and a local Ray: vectors, schema, exactly-once runs."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from elmo_model.infer.embedder import SentenceEmbedder
from elmo_model.errors import ElmoError
from elmo_model.formats.weights import load_bilm
from pipelines.embed.job import EmbedJobConfig, run_embed
from pipelines.fault_injection import ENV_VAR
from pipelines.io.storage import resolve
from pipelines.vocab_job import VocabConfig, build_vocab

from pipelines_support import local_ray, local_s3_env, patched_env
from support import run_elmo

pytestmark = pytest.mark.ray

TEXT_A = "The bank raised its rates .\nWe sat on the river bank .\n\nA third line here\n"
TEXT_B = "Another file with words\nand a second sentence in it\n"
JSONL_C = '{"id": "doc-1", "text": "Records carry ids"}\n{"id": "doc-2", "text": "and text fields"}\n'


@pytest.fixture(scope="module")
def env(tiny_files):
    with local_s3_env("models", "corpus", "out") as s3, local_ray():
        fs = resolve("s3://models").fs
        fs.put_file(str(tiny_files[0]), "models/tiny/options.json")
        fs.put_file(str(tiny_files[1]), "models/tiny/weights.hdf5")
        fs.pipe_file("corpus/in/a.txt", TEXT_A.encode())
        fs.pipe_file("corpus/in/b.txt", TEXT_B.encode())
        yield s3


@pytest.fixture(scope="module")
def embedder(tiny_files):
    return SentenceEmbedder(load_bilm(*tiny_files))


def _config(output: str, **kw) -> EmbedJobConfig:
    base = dict(model="s3://models/tiny", inputs=("s3://corpus/in",), output=output, actors=(1, 1),
                cpus_per_actor=0.5, batch_size=3, sub_batch=2)
    base.update(kw)
    return EmbedJobConfig(**base)


def _read(output: str) -> pa.Table:
    """What a plain pyarrow reader sees under the output URL (no elmo-ray code)."""
    loc = resolve(output)
    return pq.read_table(loc.path, filesystem=loc.arrow_fs)


def _visible(output: str) -> dict[str, str]:
    loc = resolve(output)
    found = loc.fs.find(loc.path, detail=True)
    return {p: str(info.get("ETag")) for p, info in found.items() if "/_" not in p[len(loc.path):]}


def test_vectors_equal_in_process_model_and_schema(env, embedder):
    result = run_embed(_config("s3://out/top"))
    assert sorted(result.embedded) == ["s3://corpus/in/a.txt", "s3://corpus/in/b.txt"]
    table = _read("s3://out/top")
    assert table.schema.field("source").type == pa.string()
    assert table.schema.field("line").type == pa.int64()
    assert table.schema.field("doc_id").type == pa.string()
    assert table.schema.field("tokens").type == pa.list_(pa.string())
    assert table.schema.field("embedding").type == pa.list_(pa.list_(pa.float32(), 32))
    rows = sorted(table.to_pylist(), key=lambda r: (r["source"], r["line"]))
    assert [(r["source"].rsplit("/", 1)[1], r["line"]) for r in rows] == [
        ("a.txt", 0), ("a.txt", 1), ("a.txt", 3), ("b.txt", 0), ("b.txt", 1)]
    expected = embedder([r["tokens"] for r in rows])
    for row, stack in zip(rows, expected):
        np.testing.assert_allclose(np.array(row["embedding"]), stack[-1], atol=1e-5)
        assert row["doc_id"] is None and len(row["model"]) == 16


def test_layers_all_pooling_and_float16(env, embedder):
    run_embed(_config("s3://out/all", layers="all", pooling="mean", dtype="float16"))
    table = _read("s3://out/all")
    assert [f"layer_{j}" for j in range(3)] == [n for n in table.column_names if n.startswith("layer_")]
    assert table.schema.field("layer_2").type == pa.list_(pa.float16(), 32)
    row = table.to_pylist()[0]
    stack = embedder([row["tokens"]])[0]
    for j in range(3):
        np.testing.assert_allclose(np.array(row[f"layer_{j}"], dtype=np.float32), stack[j].mean(0), atol=2e-3)


def test_incremental_runs_are_exactly_once(env):
    output = "s3://out/incr"
    fs = resolve("s3://corpus").fs
    fs.pipe_file("corpus/incr/a.txt", TEXT_A.encode())
    config = _config(output, inputs=("s3://corpus/incr",))
    assert len(run_embed(config).embedded) == 1
    before = _visible(output)
    # nothing new: nothing written, manifest untouched
    again = run_embed(config)
    assert again.embedded == [] and _visible(output) == before
    # one added file: only that one is embedded
    fs.pipe_file("corpus/incr/c.jsonl", JSONL_C.encode())
    added = run_embed(config)
    assert added.embedded == ["s3://corpus/incr/c.jsonl"] and added.skipped == 1
    table = _read(output)
    assert sorted(r for r in table.column("doc_id").to_pylist() if r) == ["doc-1", "doc-2"]
    # a changed input replaces its old rows
    fs.pipe_file("corpus/incr/a.txt", b"Completely new text\n")
    assert run_embed(config).embedded == ["s3://corpus/incr/a.txt"]
    rows = _read(output).to_pylist()
    a_rows = [r["tokens"] for r in rows if r["source"].endswith("a.txt")]
    assert a_rows == [["Completely", "new", "text"]] and len(rows) == 3
    manifest = json.loads(resolve(output).fs.cat_file("out/incr/_manifest.json"))
    assert set(manifest["inputs"]) == {"s3://corpus/incr/a.txt", "s3://corpus/incr/c.jsonl"}


def test_actor_killed_mid_run_still_gives_every_sentence_once(env, tmp_path):
    marker = tmp_path / "failed-once"
    with patched_env({ENV_VAR: json.dumps({"embed_actor_exit_marker": str(marker)})}):
        run_embed(_config("s3://out/killed", batch_size=1))
    assert marker.exists()  # an actor really died
    table = _read("s3://out/killed")
    keys = sorted(zip(table.column("source").to_pylist(), table.column("line").to_pylist()))
    assert len(keys) == 5 and len(set(keys)) == 5


def test_crash_before_commit_leaves_output_unchanged_and_next_run_completes(env):
    output = "s3://out/crash"
    run_embed(_config(output, inputs=("s3://corpus/in/a.txt",)))
    before = _visible(output)
    crashed = run_elmo("embed", "--model", "s3://models/tiny", "--input", "s3://corpus/in", "--output", output,
                       "--actors", "1,1", "--cpus-per-actor", "0.5",
                       env={"RAY_AUTH_MODE": "disabled", ENV_VAR: '{"embed_crash_before_commit": true}'})
    assert crashed.returncode == 17, crashed.stderr[-2000:]
    assert _visible(output) == before
    assert resolve(output).fs.find("out/crash/_staging")  # the crashed run's files, hidden
    result = run_embed(_config(output))
    assert result.embedded == ["s3://corpus/in/b.txt"]
    assert not resolve(output).fs.find("out/crash/_staging")
    assert _read(output).num_rows == 5


def test_bad_inputs_fail_cleanly_and_write_nothing(env, tmp_path):
    fs = resolve("s3://models").fs
    with pytest.raises(ElmoError, match=r"s3://models/none: not a model directory \(options.json is missing"):
        run_embed(_config("s3://out/bad", model="s3://models/none"))
    fs.pipe_file("models/corrupt/options.json", fs.cat_file("models/tiny/options.json"))
    fs.pipe_file("models/corrupt/weights.hdf5", b"\x89HDF\r\n garbage")
    with pytest.raises(ElmoError, match="weights.hdf5: not a readable HDF5"):
        run_embed(_config("s3://out/bad", model="s3://models/corrupt"))
    with pytest.raises(ElmoError, match="s3://nobucket/in: bucket 'nobucket' does not exist"):
        run_embed(_config("s3://out/bad", inputs=("s3://nobucket/in",)))
    with pytest.raises(ElmoError, match="mix"):
        run_embed(_config("s3://out/bad", layers="mix:1,2"))
    assert not resolve("s3://out").fs.find("out/bad")
    result = run_elmo("embed", "--model", "s3://models/none", "--input", "s3://corpus/in", "--output", "s3://out/bad")
    assert result.returncode == 2 and "not a model directory" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("name, data, why", [("blank.txt", b"\n   \n\n", "every line is empty or blank"),
                                             ("zero.txt", b"", "the file is empty")])
def test_an_input_without_sentences_fails_embed_and_vocab_alike_naming_it(env, name, data, why):
    """Embed once said "0 sentences", exit 0, where vocab failed; now both fail, naming the file."""
    prefix = name.split(".")[0]
    fs = resolve("s3://corpus").fs
    fs.pipe_file(f"corpus/{prefix}/a.txt", TEXT_A.encode())
    fs.pipe_file(f"corpus/{prefix}/{name}", data)
    message = rf"^s3://corpus/{prefix}/{name}: no sentences \({why}\)$"
    with pytest.raises(ElmoError, match=message):
        run_embed(_config(f"s3://out/{prefix}", inputs=(f"s3://corpus/{prefix}",)))
    assert not _visible(f"s3://out/{prefix}")  # nothing committed, nothing left
    with pytest.raises(ElmoError, match=message):
        build_vocab(VocabConfig(inputs=(f"s3://corpus/{prefix}",), output=f"s3://out/vocab-{prefix}"))
    assert not resolve("s3://out").fs.find(f"out/vocab-{prefix}")
