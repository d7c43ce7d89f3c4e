"""One place that turns a URL into filesystems: pyarrow's (for Ray Data) and fsspec's.

``resolve("s3://bucket/prefix")`` → a :class:`Location` holding the fsspec filesystem, the
pyarrow filesystem and the scheme-less path both of them take. ``s3://`` goes through s3fs and
pyarrow's S3 (endpoint, region and credentials from :mod:`pipelines.io.s3_settings`), ``gs://``
through gcsfs (the ``gcs`` extra; :mod:`pipelines.io.gcs_settings`), also wrapped for pyarrow, plain paths and ``file://`` through the local filesystem;
``http(s)://`` files (published models) can be read with :func:`read_bytes` and :func:`exists`.

Also the small file operations the jobs need — list with fingerprints, read and write small
files, write under a ``_``-prefixed staging name then move into place, copy directories up and
down. Errors a user can cause become :class:`ElmoError` naming the URL.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elmo_model.errors import ElmoError, no_space
from pipelines.io.s3_settings import StorageOptions, resolve_s3

__all__ = ["FileEntry", "Location", "StorageOptions", "resolve", "list_files", "read_bytes", "read_text",
           "write_bytes", "write_text", "check_output", "staging_url", "publish", "exists", "join_url", "upload_dir",
           "download_dir", "no_space"]
_HTTP = ("http://", "https://")  # read-only


@dataclass(frozen=True)
class Location:
    """A resolved URL: ``url`` (canonical, with scheme), ``path`` (what both filesystems take)."""

    url: str
    scheme: str
    path: str
    fs: Any  # fsspec.AbstractFileSystem
    arrow_fs: Any  # pyarrow.fs.FileSystem

    def uri(self, path: str) -> str:
        """The URL of another ``path`` on the same filesystem."""
        return f"file://{path}" if self.scheme == "file" else f"{self.scheme}://{path}"

    def join(self, *parts: str) -> Location:
        path = posixpath.join(self.path.rstrip("/"), *parts)
        return Location(self.uri(path), self.scheme, path, self.fs, self.arrow_fs)


@dataclass(frozen=True)
class FileEntry:
    """A listed file: its URL, filesystem path, size and a change fingerprint (ETag or mtime)."""

    url: str
    path: str
    size: int
    fingerprint: str


def resolve(url: str | os.PathLike, options: StorageOptions | None = None) -> Location:
    """Filesystems and path for ``url`` (``s3://``, ``gs://``, ``file://`` or a local path)."""
    text = os.fspath(url)
    scheme, _, rest = text.partition("://") if "://" in text else ("file", "", text)
    if scheme == "file":
        path = str(Path(rest).expanduser().absolute())
        return Location(f"file://{path}", "file", path, *_local_filesystems())
    if not rest.strip("/") or rest.startswith("/"):
        raise ElmoError(f"{text}: URL names no bucket (expected {scheme}://BUCKET/PREFIX)")
    path = rest.rstrip("/")
    if scheme in ("s3", "s3a"):
        return Location(f"s3://{path}", "s3", path, *_s3_filesystems(text, options))
    if scheme in ("gs", "gcs"):
        return Location(f"gs://{path}", "gs", path, *_gcs_filesystems(text, options))
    raise ElmoError(f"{text}: unsupported URL scheme {scheme!r} (use s3://, gs://, file:// or a path)")


def _local_filesystems() -> tuple[Any, Any]:
    import pyarrow.fs
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem(), pyarrow.fs.LocalFileSystem()


def _s3_filesystems(url: str, options: StorageOptions | None) -> tuple[Any, Any]:
    import pyarrow.fs
    import s3fs

    settings = resolve_s3(url, options)
    return s3fs.S3FileSystem(**settings.s3fs_kwargs()), pyarrow.fs.S3FileSystem(**settings.pyarrow_kwargs())


def _gcs_filesystems(url: str, options: StorageOptions | None) -> tuple[Any, Any]:
    from pipelines.io.gcs_settings import resolve_gcs

    settings = resolve_gcs(url, options)
    fs = settings.gcsfs_filesystem()
    return fs, settings.pyarrow_filesystem(fs)


@contextlib.contextmanager
def storage_errors(url: str, action: str) -> Iterator[None]:
    """Turn the filesystems' errors for ``url`` into one :class:`ElmoError` naming it (a full disk:
    ``URL: cannot write: no space left on device``)."""
    try:
        yield
    except ElmoError:
        raise
    except OSError as exc:
        if no_space(exc):
            reason = "no space left on device"
        elif isinstance(exc, FileNotFoundError):
            if "bucket" in str(exc).lower():
                bucket = url.partition("://")[2].split("/")[0]
                raise ElmoError(f"{url}: bucket {bucket!r} does not exist") from None
            reason = "not found"
        elif isinstance(exc, PermissionError):
            reason = "access denied"
        else:
            reason = str(exc)
        raise ElmoError(f"{url}: cannot {action}: {reason}") from None
    except Exception as exc:  # botocore's credential errors are not OSErrors
        if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            raise ElmoError(f"{url}: cannot {action}: no usable AWS credentials") from None
        raise


def _hidden(relative: str) -> bool:
    """Staging files (``_…``), markers (``_SUCCESS``) and dot files are never inputs."""
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def _fingerprint(info: dict) -> str:
    for key in ("ETag", "etag", "md5Hash", "generation"):
        if info.get(key):
            return f"{key.lower()}:{str(info[key]).strip(chr(34))}"
    for key in ("mtime", "LastModified", "updated"):
        if info.get(key) is not None:
            return f"mtime:{info[key]}"
    return f"size:{info.get('size')}"


def list_files(url: str | os.PathLike, options: StorageOptions | None = None,
               allow_empty: bool = False, include_hidden: bool = False) -> list[FileEntry]:
    """Every visible file under ``url`` (or ``url`` itself if it is a file), sorted by URL.

    Names starting with ``_`` or ``.`` are skipped unless ``include_hidden``. A missing bucket or directory, and (unless
    ``allow_empty``) an empty prefix, raise :class:`ElmoError` naming the URL.
    """
    loc = resolve(url, options)
    with storage_errors(loc.url, "list files"):
        found = loc.fs.find(loc.path, detail=True, withdirs=False)
        if not found and loc.scheme in ("s3", "gs") and not loc.fs.exists(loc.path.split("/")[0]):
            raise ElmoError(f"{loc.url}: bucket {loc.path.split('/')[0]!r} does not exist")
        if not found and loc.scheme == "file" and not os.path.exists(loc.path):
            raise ElmoError(f"{loc.url}: no such file or directory")
    entries = []
    for path, info in sorted(found.items()):
        named_itself = path == loc.path
        if info.get("type", "file") == "file" and (named_itself or include_hidden or not _hidden(path[len(loc.path):])):
            entries.append(FileEntry(loc.uri(path), path, int(info.get("size") or 0), _fingerprint(info)))
    if not entries and not allow_empty:
        raise ElmoError(f"{loc.url}: no input files there (names starting with '_' or '.' are skipped)")
    return entries


def check_output(url: str | os.PathLike, options: StorageOptions | None = None) -> None:
    """Fail early, naming ``url``, if its bucket does not exist or a local directory cannot be
    written (local directories are created, and a probe file is written and removed)."""
    loc = resolve(url, options)
    if loc.scheme == "file":
        _check_local_output(loc)
    if loc.scheme in ("s3", "gs"):
        bucket = loc.path.split("/")[0]
        with storage_errors(loc.url, "write"):
            if not loc.fs.exists(bucket):
                raise ElmoError(f"{loc.url}: bucket {bucket!r} does not exist")


def _http_fs() -> Any:
    import fsspec

    return fsspec.filesystem("https")


def join_url(url: str | os.PathLike, name: str, options: StorageOptions | None = None) -> str:
    """The URL of file ``name`` in the directory ``url``."""
    text = os.fspath(url)
    if text.startswith(_HTTP):
        return text.rstrip("/") + "/" + name
    return resolve(text, options).join(name).url


def _check_local_output(loc: Location) -> None:
    if os.path.exists(loc.path) and not os.path.isdir(loc.path):
        raise ElmoError(f"{loc.url}: cannot write there: it is a file, not a directory")
    try:
        os.makedirs(loc.path, exist_ok=True)
        probe = os.path.join(loc.path, f"_write_probe.{uuid.uuid4().hex[:12]}")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise ElmoError(f"{loc.url}: cannot write there ({exc.strerror or exc})") from None


def exists(url: str | os.PathLike, options: StorageOptions | None = None) -> bool:
    if os.fspath(url).startswith(_HTTP):
        with storage_errors(os.fspath(url), "check"):
            return bool(_http_fs().exists(os.fspath(url)))
    loc = resolve(url, options)
    with storage_errors(loc.url, "check"):
        return bool(loc.fs.exists(loc.path))


def read_bytes(url: str | os.PathLike, options: StorageOptions | None = None) -> bytes:
    if os.fspath(url).startswith(_HTTP):
        with storage_errors(os.fspath(url), "read"):
            return _http_fs().cat_file(os.fspath(url))
    loc = resolve(url, options)
    with storage_errors(loc.url, "read"):
        return loc.fs.cat_file(loc.path)


def read_text(url: str | os.PathLike, options: StorageOptions | None = None) -> str:
    data = read_bytes(url, options)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ElmoError(f"{os.fspath(url)}: not valid UTF-8 (byte {exc.start})") from None


def staging_url(url: str | os.PathLike, options: StorageOptions | None = None) -> str:
    """A fresh hidden name beside ``url``: ``dir/_name.<random>.staging``."""
    loc = resolve(url, options)
    head, name = posixpath.split(loc.path)
    return loc.uri(posixpath.join(head, f"_{name}.{uuid.uuid4().hex[:12]}.staging"))


def publish(staged: str, final: str, options: StorageOptions | None = None) -> None:
    """Make a staged file visible under its final name (a rename locally, copy + delete on S3/GCS)."""
    src, dst = resolve(staged, options), resolve(final, options)
    with storage_errors(dst.url, "publish"):
        if dst.scheme == "file":
            os.replace(src.path, dst.path)
        elif dst.scheme == "gs":  # gcsfs's mv tries GCS's moveTo first, which emulators lack (and log)
            src.fs.copy(src.path, dst.path)
            src.fs.rm_file(src.path)
        else:
            src.fs.mv(src.path, dst.path)


def write_bytes(url: str | os.PathLike, data: bytes, options: StorageOptions | None = None) -> None:
    """Write ``data`` under a staging name, then move it to ``url``; nothing partial is visible."""
    loc = resolve(url, options)
    staged = resolve(staging_url(loc.url, options), options)
    with storage_errors(loc.url, "write"):
        if loc.scheme == "file":
            os.makedirs(posixpath.dirname(loc.path), exist_ok=True)
        try:
            loc.fs.pipe_file(staged.path, data)
            publish(staged.url, loc.url, options)
        except BaseException:
            with contextlib.suppress(Exception):
                loc.fs.rm_file(staged.path)
            raise


def write_text(url: str | os.PathLike, text: str, options: StorageOptions | None = None) -> None:
    write_bytes(url, text.encode("utf-8"), options)


def upload_dir(local_dir: str | os.PathLike, url: str | os.PathLike, options: StorageOptions | None = None) -> list[str]:
    """Copy every file under ``local_dir`` to the same relative name under ``url``; returns URLs."""
    loc = resolve(url, options)
    root = Path(local_dir)
    written = []
    with storage_errors(loc.url, "upload"):
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            target = loc.join(file.relative_to(root).as_posix())
            if loc.scheme == "file":
                os.makedirs(posixpath.dirname(target.path), exist_ok=True)
            loc.fs.put_file(str(file), target.path)
            written.append(target.url)
    return written


def download_dir(url: str | os.PathLike, local_dir: str | os.PathLike, options: StorageOptions | None = None,
                 include_hidden: bool = False) -> list[Path]:
    """Copy every visible file under ``url`` into ``local_dir`` (same relative names); with
    ``include_hidden`` also names starting with ``_`` or ``.`` (e.g. an output's ``_manifest.json``)."""
    loc = resolve(url, options)
    written = []
    for entry in list_files(loc.url, options, include_hidden=include_hidden):
        relative = entry.path[len(loc.path):].lstrip("/") or posixpath.basename(entry.path)
        target = Path(local_dir) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with storage_errors(entry.url, "download"):
            loc.fs.get_file(entry.path, str(target))
        written.append(target)
    return written


def remove_tree(loc: Location) -> None:
    """Delete everything under ``loc`` (objects, and the empty "directory" markers some S3 writers
    leave, which trip s3fs's recursive rm). Missing is fine."""
    if loc.scheme == "file":
        shutil.rmtree(loc.path, ignore_errors=True)
        return
    with storage_errors(loc.url, "delete"):
        keys = loc.fs.find(loc.path, withdirs=True) if loc.fs.exists(loc.path) else []
        if keys:
            with contextlib.suppress(FileNotFoundError):
                loc.fs.rm(keys)
        loc.fs.invalidate_cache(loc.path)
