"""Ray Data ingestion and the vocabulary job, end to end: moto S3 on 127.0.0.1 + one local Ray.

One Ray for the whole module (starting it costs seconds); every test reads from ``s3://``.
"""

import gzip
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipelines_support import line_records, local_ray, local_s3_env, token_counter

from elmo_model.infer.elmo import batch_to_ids
from elmo_model.errors import ElmoError
from elmo_model.formats.vocab import Vocabulary
from pipelines import cli
from pipelines.io import storage
from pipelines.ingest.reader import IngestConfig, plan_inputs, read_records, sentence_dataset
from pipelines.ray_support import clean_errors
from pipelines.ingest.sentences import pad_char_ids, pad_token_ids
from pipelines.vocab_job import VocabConfig, build_vocab

pytestmark = pytest.mark.ray

PLAIN = "The cat sat on the mat .\n\n  spaced   out  \r\nÜber café naïve 日本\nthe end"
ZIPPED = "\n".join(f"line {i} of the zipped file {'x' * (i % 7)}" for i in range(300)) + "\n"
DOCS = [{"id": 1, "text": "json says hello"}, {"text": "no id here"}, {"id": "d3", "text": "two lines\nin one record"}]
TABLE = {"id": [10, 11, 12], "text": ["parquet row zero", "", "parquet row two the cat"]}


def _parquet_bytes() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(TABLE), sink)
    return sink.getvalue()


def _expected() -> list[tuple]:
    """(source, line, doc_id, sentence_index, tokens) of every sentence, computed in plain Python."""
    rows = [("s3://corpus/c/a_plain.txt", i, None, 0, t) for i, t in line_records(PLAIN)]
    rows += [("s3://corpus/c/b_zipped.txt.gz", i, None, 0, t) for i, t in line_records(ZIPPED)]
    for line, doc in zip((0, 2, 3), DOCS):
        doc_id = None if "id" not in doc else str(doc["id"])
        parts = [s.split() for s in doc["text"].split("\n") if s.split()]
        rows += [("s3://corpus/c/c_docs.jsonl", line, doc_id, k, t) for k, t in enumerate(parts)]
    rows += [("s3://corpus/c/d_table.parquet", i, str(TABLE["id"][i]), 0, text.split())
             for i, text in enumerate(TABLE["text"]) if text.split()]
    return rows


@pytest.fixture(scope="module")
def s3():
    with local_s3_env("corpus") as server, local_ray():
        files = {"a_plain.txt": PLAIN.encode(), "b_zipped.txt.gz": gzip.compress(ZIPPED.encode()),
                 "c_docs.jsonl": (json.dumps(DOCS[0]) + "\n\n" + "\n".join(map(json.dumps, DOCS[1:]))).encode(),
                 "d_table.parquet": _parquet_bytes(), "_staging.txt": b"never read", "sub/.hidden": b"x"}
        for name, data in files.items():
            storage.write_bytes(f"s3://corpus/c/{name}", data)
        yield server


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("source", "ascending"), ("line", "ascending"), ("sentence_index", "ascending")])


def test_every_format_from_s3_with_provenance_char_ids_and_token_ids(s3):
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "the", "cat", "parquet"])
    ds = sentence_dataset("s3://corpus/c/", IngestConfig(), vocab)
    with clean_errors():
        table = _sorted(pa.concat_tables(ds.iter_batches(batch_size=None, batch_format="pyarrow")))
    got = list(zip(*(table.column(c).to_pylist() for c in ("source", "line", "doc_id", "sentence_index", "tokens"))))
    assert got == sorted(_expected(), key=lambda r: (r[0], r[1], r[3]))
    assert table.schema.field("line").type == pa.int64()
    assert table.schema.field("char_ids").type == pa.list_(pa.list_(pa.int16(), 50))
    assert table.schema.field("token_ids").type == pa.list_(pa.int32())
    tokens = table.column("tokens").to_pylist()
    np.testing.assert_array_equal(pad_char_ids(table.column("char_ids")), batch_to_ids(tokens).numpy())
    np.testing.assert_array_equal(pad_token_ids(table.column("token_ids")),
                                  pad_token_ids([vocab.encode(t) for t in tokens]))
    assert table.column("n_tokens").to_pylist() == [len(t) for t in tokens]


def test_numpy_batches_pad_to_batch_to_ids_and_tokens_are_capped(s3):
    ds = sentence_dataset(plan_inputs("s3://corpus/c/b_zipped.txt.gz"), IngestConfig(max_tokens=4))
    batch = ds.take_batch(50, batch_format="numpy")
    tokens = [list(t) for t in batch["tokens"]]
    assert all(len(t) == 4 for t in tokens) and batch["line"].tolist() == list(range(50))
    np.testing.assert_array_equal(pad_char_ids(batch["char_ids"]), batch_to_ids(tokens).numpy())


def test_records_keep_bad_utf8_flags_and_fail_policy_names_the_line(s3):
    storage.write_bytes("s3://corpus/utf/u.txt", b"good\nbad \xff\nalso good\n")
    flags = read_records("s3://corpus/utf/", IngestConfig(invalid_utf8="skip")).take_all()
    assert [(r["line"], r["text"], r["bad_utf8"]) for r in flags] == [(0, "good", False), (1, None, True),
                                                                      (2, "also good", False)]
    with pytest.raises(ElmoError) as error, clean_errors():
        sentence_dataset("s3://corpus/utf/", IngestConfig(invalid_utf8="fail")).materialize()
    assert str(error.value).startswith("s3://corpus/utf/u.txt:2: invalid UTF-8 at byte 4")
    assert type(error.value) is ElmoError and "\n" not in str(error.value)


def test_vocab_job_counts_equal_a_python_counter(s3):
    config = VocabConfig(inputs=("s3://corpus/c/",), output="s3://corpus/vocab/", max_size=8, min_count=2)
    result = build_vocab(config)
    texts = [PLAIN, ZIPPED] + [d["text"] for d in DOCS] + TABLE["text"]
    oracle = token_counter(texts)
    assert result.counts == oracle
    assert result.stats["tokens"] == sum(oracle.values())
    assert result.stats["sentences"] == len(_expected())
    vocab_txt = storage.read_text("s3://corpus/vocab/vocab.txt")
    assert vocab_txt == Vocabulary.from_counts(oracle, max_size=8, min_count=2).to_text()
    assert vocab_txt.split("\n")[:3] == ["<S>", "</S>", "<UNK>"] and len(vocab_txt.split()) == 8
    ranked = sorted(oracle.items(), key=lambda tc: (-tc[1], tc[0]))
    assert storage.read_text("s3://corpus/vocab/counts.tsv") == "".join(f"{t}\t{c}\n" for t, c in ranked)
    names = [e.url.rsplit("/", 1)[1] for e in storage.list_files("s3://corpus/vocab/")]
    assert names == ["config.toml", "counts.tsv", "vocab.txt"]  # nothing staged is left behind
    assert 'output = "s3://corpus/vocab/"' in storage.read_text("s3://corpus/vocab/config.toml")


def test_cli_vocab_on_parquet_with_a_text_field_flag(s3, capsys):
    sink = io.BytesIO()
    pq.write_table(pa.table({"body": ["b a", "a"]}), sink)
    storage.write_bytes("s3://corpus/pq/x.parquet", sink.getvalue())
    code = cli.main(["vocab", "--input", "s3://corpus/pq/x.parquet", "--output", "s3://corpus/pqvocab",
                     "--text-field", "body", "--set", "ingest.max_tokens=10"])
    out = capsys.readouterr().out
    assert code == 0 and "sentences: 2\ntokens: 3\n" in out
    assert storage.read_text("s3://corpus/pqvocab/counts.tsv") == "a\t2\nb\t1\n"


def test_cli_vocab_corrupt_gzip_fails_cleanly_and_writes_nothing(s3, capsys):
    storage.write_bytes("s3://corpus/bad/ok.txt", b"fine words\n")
    storage.write_bytes("s3://corpus/bad/broken.txt.gz", gzip.compress(b"some text\n" * 500)[:-40])
    code = cli.main(["vocab", "--input", "s3://corpus/bad/", "--output", "s3://corpus/badvocab/"])
    err = capsys.readouterr().err
    assert code == 2
    assert "elmo vocab: error: s3://corpus/bad/broken.txt.gz: corrupt or truncated gzip" in err
    assert "Traceback" not in err
    assert storage.list_files("s3://corpus/badvocab/", allow_empty=True) == []



def test_ingest_benchmark_smoke(s3, tmp_path):
    from benchmarks import ingest_bench

    results = ingest_bench.main(["--mb", "0.05", "--files", "2", "--keep", str(tmp_path / "corpus")])
    assert results["files"] == 2 and results["lines"] > 100
    assert results["ray data"]["ratio_to_plain_loop"] > 0


def test_one_large_read_block_reaches_the_next_stage_as_bounded_blocks(s3):
    """A read task hands on blocks of about STAGE_BLOCK_BYTES however large its read block is (the
    sentence stage tokenizes SLICE_TEXT_BYTES of text at a time): what bounds a task's and an
    actor's memory. One 5.5 MB file read as one block; every sentence still arrives once, in order."""
    from pipelines.ingest import reader

    lines = [f"sentence {i} of a large file with several words in it" for i in range(100_000)]
    storage.write_bytes("s3://corpus/large/big.txt", ("\n".join(lines) + "\n").encode())
    plan = plan_inputs("s3://corpus/large/")
    planned = reader.plan_read_blocks(plan, 64 << 20)
    assert len(planned) == 1  # one read block of the whole file
    numbered = reader.number_read_blocks(planned, plan, {planned[0].url: [planned[0].key]})
    sentences = reader.sentences_of(reader.read_blocks(numbered, plan), reader.SentenceStage(IngestConfig(), char_ids=False))
    sizes = sentences.map_batches(lambda t: pa.table({"bytes": [t.nbytes], "rows": [t.num_rows],
                                                      "first": [t.column("line")[0].as_py()]}),
                                  batch_size=None, batch_format="pyarrow")
    with clean_errors():
        blocks = sorted(sizes.take_all(), key=lambda r: r["first"])
    assert sum(b["rows"] for b in blocks) == len(lines)
    assert len(blocks) >= 3 and max(b["bytes"] for b in blocks) <= 2 * reader.STAGE_BLOCK_BYTES, blocks
    firsts = [b["first"] for b in blocks]
    assert firsts[0] == 0 and all(b - a == r["rows"] for a, b, r in zip(firsts, firsts[1:], blocks))
