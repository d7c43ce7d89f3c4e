"""Conditional writes of one small object: create-if-absent and compare-and-swap.

The object stores decide who wins, so two processes on different machines cannot both succeed:

- ``s3://``: ``PutObject`` with ``If-None-Match: *`` (create) or ``If-Match: <ETag>`` (swap);
  the token is the object's ETag (AWS S3 since 2024; MinIO; moto ≥ 5.2 in server mode).
- local paths: an ``flock`` on a sidecar ``<name>.lock`` serialises read-compare-write on one
  POSIX filesystem; the token is a hash of the content.
- ``gs://``: uploads with ``ifGenerationMatch`` (``0`` to create); the token is the object's
  generation (fake-gcs-server enforces it too, so it is tested against the emulator).

A lost race raises :class:`ConditionFailed`; every other storage error stays an :class:`ElmoError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from elmo_model.errors import ElmoError
from pipelines.io.storage import Location, storage_errors

__all__ = ["ConditionFailed", "Versioned", "read_versioned", "create_exclusive", "replace_if"]


class ConditionFailed(Exception):
    """The object exists (create) or changed since it was read (swap)."""


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the token that a swap must name."""

    data: bytes
    token: str


def _unsupported(loc: Location) -> ElmoError:
    return ElmoError(f"{loc.url}: conditional writes (run lease, manifest compare-and-swap) are implemented for "
                     f"s3://, gs:// and local paths, not {loc.scheme}://")


def read_versioned(loc: Location) -> Versioned | None:
    """The object's content and token, or None if it does not exist."""
    if loc.scheme == "s3":
        return _s3_read(loc)
    if loc.scheme == "gs":
        return _gcs_read(loc)
    if loc.scheme == "file":
        with _locked(loc):
            return _file_read(loc)
    raise _unsupported(loc)


def create_exclusive(loc: Location, data: bytes) -> str:
    """Create the object only if it does not exist; returns its token."""
    if loc.scheme == "s3":
        return _s3_put(loc, data, IfNoneMatch="*")
    if loc.scheme == "gs":
        return _gcs_put(loc, data, "0")
    if loc.scheme == "file":
        with _locked(loc):
            if os.path.exists(loc.path):
                raise ConditionFailed(loc.url)
            return _file_write(loc, data)
    raise _unsupported(loc)


def replace_if(loc: Location, data: bytes, token: str) -> str:
    """Replace the object only if its token is still ``token``; returns the new token."""
    if loc.scheme == "s3":
        return _s3_put(loc, data, IfMatch=token)
    if loc.scheme == "gs":
        return _gcs_put(loc, data, token)
    if loc.scheme == "file":
        with _locked(loc):
            current = _file_read(loc)
            if current is None or current.token != token:
                raise ConditionFailed(loc.url)
            return _file_write(loc, data)
    raise _unsupported(loc)


# --- S3 ------------------------------------------------------------------------------------------

def _bucket_key(loc: Location) -> tuple[str, str]:
    bucket, _, key = loc.path.partition("/")
    return bucket, key


def _is_precondition_failure(exc: BaseException) -> bool:
    """s3fs maps 412 to FileExistsError (If-None-Match) or a plain OSError (If-Match); AWS may also
    answer 409 ConditionalRequestConflict to concurrent conditional writes."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen)
        if isinstance(seen, FileExistsError) or "PreconditionFailed" in text or "pre-conditions" in text \
                or "ConditionalRequestConflict" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _s3_put(loc: Location, data: bytes, **condition: str) -> str:
    bucket, key = _bucket_key(loc)
    try:
        with storage_errors(loc.url, "write"):
            try:
                response = loc.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
            except Exception as exc:
                if _is_precondition_failure(exc):
                    raise ConditionFailed(loc.url) from None
                raise
    finally:
        loc.fs.invalidate_cache(loc.path)
    return response["ETag"]


def _s3_read(loc: Location) -> Versioned | None:
    from fsspec.asyn import sync

    bucket, key = _bucket_key(loc)

    async def get() -> Versioned:
        response = await loc.fs._call_s3("get_object", Bucket=bucket, Key=key)
        async with response["Body"] as body:
            return Versioned(await body.read(), response["ETag"])

    with storage_errors(loc.url, "read"):
        try:
            return sync(loc.fs.loop, get)
        except FileNotFoundError:
            return None


# --- GCS ----------------------------------------------------------------------------------------

def _gcs_object_url(loc: Location, upload: bool = False) -> str:
    from urllib.parse import quote

    bucket, key = _bucket_key(loc)
    if upload:
        return f"{loc.fs._location}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
    return f"{loc.fs._location}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(key, safe='')}"


def _gcs_put(loc: Location, data: bytes, generation: str) -> str:
    """A media upload that succeeds only while the object's generation is ``generation``
    (``"0"``: only if absent); gcsfs maps the 412 answer to FileExistsError."""
    import json

    _, key = _bucket_key(loc)
    boundary = "==elmo-ray-conditional=="
    body = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            f"{json.dumps({'name': key})}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + data + f"\r\n--{boundary}--".encode()
    try:
        with storage_errors(loc.url, "write"):
            try:  # a multipart upload (the emulator, like GCS, checks the precondition on it)
                resource = loc.fs.call("POST", _gcs_object_url(loc, upload=True), uploadType="multipart",
                                       ifGenerationMatch=generation, data=body,
                                       headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
                                       json_out=True)
            except FileExistsError:
                raise ConditionFailed(loc.url) from None
    finally:
        loc.fs.invalidate_cache(loc.path)
    return str(resource["generation"])


def _gcs_read(loc: Location) -> Versioned | None:
    """Content and generation, read as one version: the download names the generation that the
    metadata request saw (a write in between makes it fail, and the read is retried)."""
    for _ in range(10):
        with storage_errors(loc.url, "read"):
            try:
                resource = loc.fs.call("GET", _gcs_object_url(loc), json_out=True)
            except FileNotFoundError:
                return None
            generation = str(resource["generation"])
            try:
                _, content = loc.fs.call("GET", _gcs_object_url(loc), alt="media", ifGenerationMatch=generation)
            except (FileNotFoundError, FileExistsError):
                continue  # replaced or deleted between the two requests
        return Versioned(content, generation)
    raise ElmoError(f"{loc.url}: changed on every read (10 tries)")


# --- local files ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(loc: Location) -> Iterator[None]:
    directory, name = os.path.split(loc.path)
    with storage_errors(loc.url, "lock"):
        os.makedirs(directory, exist_ok=True)
        fd = os.open(os.path.join(directory, f".{name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _file_read(loc: Location) -> Versioned | None:
    try:
        with open(loc.path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    return Versioned(data, hashlib.sha256(data).hexdigest())


def _file_write(loc: Location, data: bytes) -> str:
    staged = f"{loc.path}.{os.getpid()}.tmp"
    with storage_errors(loc.url, "write"):
        with open(staged, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, loc.path)
    return hashlib.sha256(data).hexdigest()
