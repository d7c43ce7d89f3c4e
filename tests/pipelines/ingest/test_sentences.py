"""pipelines.ingest.sentences: records → sentences → char ids / token ids, checked against the model core."""

import numpy as np
import pyarrow as pa
import pytest

from elmo_model.infer.elmo import batch_to_ids
from elmo_model.errors import ElmoError
from elmo_model.formats.vocab import Vocabulary
from pipelines.ingest import sentences as st
from pipelines.ingest.text_sources import RECORD_SCHEMA

TRICKY = [["Hello", "wörld", "!"], ["日本語", "x" * 70, "<S>", "</S>"], ["a"], ["ünïcödé" * 9, "🙂"]]


def make_records(texts, source="s3://b/f.txt", doc_ids=None):
    n = len(texts)
    return pa.table({"source": [source] * n, "line": pa.array(range(n), pa.int64()),
                     "doc_id": pa.array(doc_ids or [None] * n, pa.string()), "text": pa.array(texts, pa.string()),
                     "bad_utf8": [False] * n}, schema=RECORD_SCHEMA)


def split_on_pipe(text):
    return text.split("|")


def test_sentence_table_drops_empty_caps_and_keeps_provenance():
    recs = make_records(["a b c d", "", "   ", None, "x|y z||w"], doc_ids=["d0", "d1", "d2", "d3", "d4"])
    out = st.sentence_table(recs, split_on_pipe, str.split, max_tokens=3).to_pylist()
    assert [(r["line"], r["doc_id"], r["sentence_index"], r["tokens"], r["n_tokens"]) for r in out] == [
        (0, "d0", 0, ["a", "b", "c"], 3), (4, "d4", 0, ["x"], 1), (4, "d4", 1, ["y", "z"], 2), (4, "d4", 2, ["w"], 1)]
    assert out[0]["text"] == "a b c d" and out[0]["source"] == "s3://b/f.txt"


def test_text_slices_cover_every_record_once_in_order_within_the_byte_bound():
    texts = ["ab", None, "cdef", "g" * 9, "", "hi", "jk"]  # 9 bytes: longer than the bound, a slice of its own
    slices = list(st.text_slices(make_records(texts), 5))
    assert [s.column("text").to_pylist() for s in slices] == [["ab", None], ["cdef"], ["g" * 9], ["", "hi", "jk"]]
    assert all(sum(len(t or "") for t in s.column("text").to_pylist()) <= 5 for s in slices if s.num_rows > 1)
    whole = make_records(["ab", "cd"])
    assert list(st.text_slices(whole, 4)) == [whole]  # fits: the table itself
    assert [s.num_rows for s in st.text_slices(make_records([]), 4)] == [0]


def test_the_sentence_stage_yields_the_same_rows_slice_by_slice_as_at_once(monkeypatch):
    from pipelines.ingest import reader

    records = make_records([f"line {i} with words\nand a second sentence {i}" for i in range(50)])
    stage = reader.SentenceStage(reader.IngestConfig())
    whole = stage.sentences(records)
    monkeypatch.setattr(reader, "SLICE_TEXT_BYTES", 100)
    pieces = list(stage(records))
    assert len(pieces) > 10 and max(p.num_rows for p in pieces) < whole.num_rows
    assert pa.concat_tables(pieces).equals(whole)


def test_sentence_table_of_nothing_has_the_schema():
    out = st.add_char_ids(st.sentence_table(make_records([""]), st.SPLITTERS["line"], str.split))
    assert out.num_rows == 0
    assert out.schema.field("char_ids").type == pa.list_(pa.list_(pa.int16(), 50))
    assert st.pad_char_ids(out.column("char_ids")).shape == (0, 0, 50)


def test_char_ids_equal_batch_to_ids():
    column = st.char_ids_column(pa.array(TRICKY, pa.list_(pa.string())))
    assert column.type == pa.list_(pa.list_(pa.int16(), 50))
    expected = batch_to_ids(TRICKY).numpy()
    np.testing.assert_array_equal(st.pad_char_ids(column), expected)
    # The same from a numpy batch (object array of per-sentence arrays), as Ray's numpy format gives.
    as_numpy = np.array([np.array([np.asarray(t, np.int16) for t in s], dtype=object)
                         for s in column.to_pylist()], dtype=object)
    np.testing.assert_array_equal(st.pad_char_ids(as_numpy), expected)


def test_char_ids_of_a_sliced_chunked_column():
    chunked = pa.chunked_array([pa.array(TRICKY[:2], pa.list_(pa.string())),
                                pa.array(TRICKY[2:], pa.list_(pa.string()))]).slice(1, 2)
    np.testing.assert_array_equal(st.pad_char_ids(st.char_ids_column(chunked)), batch_to_ids(TRICKY[1:3]).numpy())


def test_token_ids_follow_the_vocabulary():
    vocab = Vocabulary(["<S>", "</S>", "<UNK>", "a", "Hello"])
    column = st.token_ids_column(pa.array(TRICKY, pa.list_(pa.string())), vocab)
    assert column.type == pa.list_(pa.int32())
    assert column.to_pylist() == [vocab.encode(s).tolist() for s in TRICKY]
    padded = st.pad_token_ids(column)
    assert padded.shape == (4, 4) and padded[2].tolist() == [3, 0, 0, 0]


def test_named_and_imported_functions():
    assert st.resolve_fn("whitespace", st.TOKENIZERS, "tokenizer") is str.split
    assert st.resolve_fn("textwrap:dedent", st.TOKENIZERS, "tokenizer").__name__ == "dedent"
    with pytest.raises(ElmoError, match="unknown tokenizer 'bpe' \\(known: whitespace"):
        st.resolve_fn("bpe", st.TOKENIZERS, "tokenizer")
    with pytest.raises(ElmoError, match="tokenizer 'nomodule:f': cannot import it"):
        st.resolve_fn("nomodule:f", st.TOKENIZERS, "tokenizer")
