"""A model directory (``options.json`` + ``weights.hdf5``, maybe ``vocab.txt``) in object storage.

The embedding actors and the CLI fetch it to a local cache once; its hash (of both files'
bytes) identifies the model in outputs and manifests.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from elmo_model.errors import ElmoError
from elmo_model.export import OPTIONS_FILE, WEIGHTS_FILE
from pipelines.io.storage import StorageOptions, exists, read_bytes, resolve

CACHE = Path(os.environ.get("ELMO_MODEL_CACHE", Path(tempfile.gettempdir()) / "elmo-ray-models"))


def _required(model_url: str, storage: StorageOptions | None) -> list[str]:
    loc = resolve(model_url, storage)
    urls = [loc.join(OPTIONS_FILE).url, loc.join(WEIGHTS_FILE).url]
    for url in urls:
        if not exists(url, storage):
            raise ElmoError(f"{loc.url}: not a model directory ({url.rsplit('/', 1)[-1]} is missing; "
                            f"expected {OPTIONS_FILE} and {WEIGHTS_FILE})")
    return urls


def model_hash(model_url: str, storage: StorageOptions | None = None) -> str:
    """sha256 over options.json and weights.hdf5, 16 hex digits."""
    digest = hashlib.sha256()
    for url in _required(model_url, storage):
        digest.update(read_bytes(url, storage))
    return digest.hexdigest()[:16]


def fetch_model_dir(model_url: str, storage: StorageOptions | None = None) -> Path:
    """A local directory with the model's two files (the URL itself when it is local)."""
    loc = resolve(model_url, storage)
    urls = _required(model_url, storage)
    if loc.scheme == "file":
        return Path(loc.path)
    contents = [read_bytes(url, storage) for url in urls]
    digest = hashlib.sha256(b"".join(contents)).hexdigest()[:16]
    target = CACHE / digest
    if not (target / WEIGHTS_FILE).exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="_", dir=CACHE))
        for name, data in zip((OPTIONS_FILE, WEIGHTS_FILE), contents):
            (staging / name).write_bytes(data)
        try:
            os.replace(staging, target)
        except OSError:  # another actor on this node got there first
            pass
    return target
