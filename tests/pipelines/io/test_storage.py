"""pipelines.io.storage against a real HTTP S3 endpoint (moto server on 127.0.0.1) and local files."""

import os

import pyarrow.fs
import pytest
from pipelines_support import local_s3_env, patched_env

from elmo_model.errors import ElmoError
from pipelines.io import storage
from pipelines.io.s3_settings import StorageOptions, resolve_s3


@pytest.fixture(scope="module")
def s3():
    with local_s3_env("store") as server:
        yield server


def test_resolve_s3_gives_both_filesystems_on_the_endpoint(s3):
    loc = storage.resolve("s3://store/a/b/")
    assert (loc.url, loc.scheme, loc.path) == ("s3://store/a/b", "s3", "store/a/b")
    assert isinstance(loc.arrow_fs, pyarrow.fs.S3FileSystem)
    with loc.arrow_fs.open_output_stream("store/a/b/x.txt") as out:  # pyarrow honours the endpoint
        out.write(b"hello\n")
    assert loc.fs.cat_file("store/a/b/x.txt") == b"hello\n"  # s3fs reads what pyarrow wrote
    assert loc.join("x.txt").url == "s3://store/a/b/x.txt"


def test_local_paths_and_file_urls_resolve_alike(tmp_path):
    a, b = storage.resolve(tmp_path / "d"), storage.resolve(f"file://{tmp_path}/d")
    assert a.url == b.url == f"file://{tmp_path}/d" and a.path == str(tmp_path / "d")
    assert isinstance(a.arrow_fs, pyarrow.fs.LocalFileSystem)


@pytest.mark.parametrize("url", ["ftp://host/x", "s3://", "s3:///"])
def test_bad_urls_are_named(url):
    with pytest.raises(ElmoError, match=url.replace("/", "/")):
        storage.resolve(url)


def test_list_files_sizes_fingerprints_and_hidden_names(s3):
    for name, data in {"l/b.txt": b"bb", "l/a.txt": b"a", "l/sub/c.txt": b"ccc",
                       "l/_staging.txt": b"x", "l/.hidden": b"x", "l/_tmp/d.txt": b"x"}.items():
        storage.resolve(f"s3://store/{name}").fs.pipe_file(f"store/{name}", data)
    entries = storage.list_files("s3://store/l")
    assert [(e.url, e.size) for e in entries] == [
        ("s3://store/l/a.txt", 1), ("s3://store/l/b.txt", 2), ("s3://store/l/sub/c.txt", 3)]
    assert all(e.fingerprint.startswith("etag:") for e in entries)
    assert [e.url for e in storage.list_files("s3://store/l/b.txt")] == ["s3://store/l/b.txt"]
    assert [e.url for e in storage.list_files("s3://store/l/_staging.txt")] == ["s3://store/l/_staging.txt"]


def test_empty_prefix_missing_bucket_and_missing_dir_are_errors_naming_the_url(s3, tmp_path):
    with pytest.raises(ElmoError, match="s3://store/nothing-here: no input files"):
        storage.list_files("s3://store/nothing-here")
    with pytest.raises(ElmoError, match="s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist"):
        storage.list_files("s3://no-such-bucket/x")
    with pytest.raises(ElmoError, match="no such file or directory"):
        storage.list_files(tmp_path / "missing")
    assert storage.list_files("s3://store/nothing-here", allow_empty=True) == []


def test_missing_credentials_is_one_clear_error_and_keys_never_show(s3):
    with patched_env({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}):
        with pytest.raises(ElmoError, match=r"s3://store/l: no AWS credentials found"):
            storage.list_files("s3://store/l")
        # Explicit options need no environment at all.
        options = s3.storage_options()
        assert [e.url for e in storage.list_files("s3://store/l", options)][0] == "s3://store/l/a.txt"
    secret = StorageOptions(access_key_id="AKIAEXAMPLE", secret_access_key="s3cr3t-value")
    settings = resolve_s3("s3://store", secret)
    for text in (repr(secret), repr(settings), str(settings)):
        assert "s3cr3t-value" not in text and "AKIAEXAMPLE" not in text


def test_endpoint_comes_from_aws_endpoint_url(s3):
    settings = resolve_s3("s3://store")
    assert settings.endpoint_url == s3.endpoint_url
    assert settings.pyarrow_kwargs()["endpoint_override"] == s3.endpoint_url.removeprefix("http://")
    assert settings.pyarrow_kwargs()["scheme"] == "http"


def test_write_is_staged_then_published(s3):
    storage.write_text("s3://store/w/out.txt", "héllo\n")
    assert storage.read_text("s3://store/w/out.txt") == "héllo\n"
    assert [os.path.basename(p) for p in storage.resolve("s3://store/w").fs.ls("store/w")] == ["out.txt"]
    staged = storage.staging_url("s3://store/w/out.txt")
    assert staged.startswith("s3://store/w/_out.txt.") and staged.endswith(".staging")


def test_write_to_a_missing_bucket_fails_naming_it(s3):
    with pytest.raises(ElmoError, match="s3://nobucket/out.txt"):
        storage.write_text("s3://nobucket/out.txt", "x")
    with pytest.raises(ElmoError, match="bucket 'nobucket' does not exist"):
        storage.check_output("s3://nobucket/out")


def test_read_of_a_missing_object_names_it(s3):
    with pytest.raises(ElmoError, match="s3://store/none.txt: cannot read"):
        storage.read_bytes("s3://store/none.txt")


def test_upload_and_download_dir_round_trip(s3, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"\x00\x01")
    (src / "sub" / "b.txt").write_text("b")
    written = storage.upload_dir(src, "s3://store/dir/")
    assert written == ["s3://store/dir/a.bin", "s3://store/dir/sub/b.txt"]
    got = storage.download_dir("s3://store/dir", tmp_path / "dst")
    assert sorted(p.relative_to(tmp_path / "dst").as_posix() for p in got) == ["a.bin", "sub/b.txt"]
    assert (tmp_path / "dst" / "a.bin").read_bytes() == b"\x00\x01"
    storage.write_text("s3://store/dir/_manifest.json", "{}")
    got = storage.download_dir("s3://store/dir", tmp_path / "all", include_hidden=True)
    assert sorted(p.relative_to(tmp_path / "all").as_posix() for p in got) == ["_manifest.json", "a.bin", "sub/b.txt"]


def test_local_write_read_and_exists(tmp_path):
    target = tmp_path / "deep" / "f.txt"
    storage.write_text(target, "x")
    assert storage.read_text(target) == "x" and storage.exists(target)
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]
    (tmp_path / "bad.txt").write_bytes(b"\xff")
    with pytest.raises(ElmoError, match="bad.txt: not valid UTF-8"):
        storage.read_text(tmp_path / "bad.txt")
