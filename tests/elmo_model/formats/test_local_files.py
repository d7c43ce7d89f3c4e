"""elmo_model reads local files only, with one clear error per problem, and writes atomically."""

import pytest

from elmo_model.errors import ElmoError
from elmo_model.formats.local_files import local_path, read_bytes, write_atomically


def test_local_paths_and_file_urls_are_files_other_urls_are_refused(tmp_path):
    assert local_path(f"file://{tmp_path}/a.json") == tmp_path / "a.json"
    assert local_path(tmp_path / "b") == tmp_path / "b"
    with pytest.raises(ElmoError, match=r"weights s3://bucket/w.hdf5: elmo_model reads local files only"):
        local_path("s3://bucket/w.hdf5", "weights")


def test_read_bytes_names_the_file_in_each_error(tmp_path):
    (tmp_path / "x").write_bytes(b"12345")
    assert read_bytes(tmp_path / "x") == b"12345"
    with pytest.raises(ElmoError, match=f"options file not found: {tmp_path / 'missing'}"):
        read_bytes(tmp_path / "missing", "options file")
    with pytest.raises(ElmoError, match=f"{tmp_path / 'x'}: larger than 4 bytes; not an options file"):
        read_bytes(tmp_path / "x", "options file", max_bytes=4)
    with pytest.raises(ElmoError, match="cannot read file"):
        read_bytes(tmp_path)  # a directory


def test_write_atomically_replaces_the_target_or_leaves_it_untouched(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_atomically(target, lambda p: p.write_text("first"))
    assert target.read_text() == "first"

    def fails(path):
        path.write_text("half")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        write_atomically(target, fails)
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]  # no staging file left
