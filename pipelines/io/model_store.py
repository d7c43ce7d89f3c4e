"""The one way every command, the embed actors and the trainer load a model.

A model directory (``options.json`` + ``weights.hdf5``, maybe ``vocab.txt``) at a local path or a
URL → :class:`LoadedModel`: the options, the biLM with its weights, the softmax when the file has
one, the vocabulary when asked for, and the model's *digest* (sha256 over the bytes of
``options.json`` then ``weights.hdf5``, 16 hex digits), which identifies it in outputs and
manifests. ``weights.hdf5`` is parsed once.

Local files are read where they are. Files in object storage are downloaded once into a cache
keyed by the digest (``$ELMO_MODEL_CACHE``, default ``<tmp>/elmo-ray-models/<digest>/``, two
files only); a caller that already knows the digest (an embed actor: the driver computed it)
takes the cached copy without downloading, so a node downloads a model once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from elmo_model.model.bilm import BiLm
from elmo_model.errors import ElmoError
from elmo_model.formats.export import OPTIONS_FILE, VOCAB_FILE, WEIGHTS_FILE, lm_from_bilm
from elmo_model.model.options import ElmoOptions
from elmo_model.formats.vocab import Vocabulary
from elmo_model.formats.weights import load_weights, read_options
from pipelines.io.storage import StorageOptions, exists, join_url, read_bytes, resolve

CACHE = Path(os.environ.get("ELMO_MODEL_CACHE", Path(tempfile.gettempdir()) / "elmo-ray-models"))
_CHUNK = 1 << 20


@dataclasses.dataclass
class LoadedModel:
    """A model ready to use; ``source`` names it (its URL) in messages."""

    source: str
    digest: str
    options: ElmoOptions
    bilm: BiLm
    softmax: tuple[Any, Any] | None  # (W, b) numpy arrays, from training exports
    vocab: Vocabulary | None  # vocab.txt beside the model (when asked for and present)

    def language_model(self, vocab: Vocabulary, dropout: float = 0.1) -> Any:
        """The trainable biLM with softmax for ``vocab`` (the file's softmax kept when it fits)."""
        return lm_from_bilm(self.bilm, self.softmax, vocab, dropout, f"{self.source}/{WEIGHTS_FILE}")


def load_model(model_url: str, storage: StorageOptions | None = None, *, expected_digest: str | None = None,
               with_vocab: bool = False) -> LoadedModel:
    """Load the model directory at ``model_url``; errors name the URL.

    ``expected_digest``: take the cached copy with that digest if there is one, and fail if the
    files now hold another model. ``with_vocab``: also read ``vocab.txt`` when it is there.
    """
    url = _canonical(model_url, storage)
    options_url, weights_url = join_url(url, OPTIONS_FILE, storage), join_url(url, WEIGHTS_FILE, storage)
    for file_url in (options_url, weights_url):
        if not (expected_digest and _cached(expected_digest)) and not exists(file_url, storage):
            raise ElmoError(f"{url}: not a model directory ({file_url.rsplit('/', 1)[-1]} is missing; "
                            f"expected {OPTIONS_FILE} and {WEIGHTS_FILE})")
    model = load_model_files(options_url, weights_url, storage, expected_digest=expected_digest, source=url)
    if with_vocab:
        vocab_url = join_url(url, VOCAB_FILE, storage)
        if exists(vocab_url, storage):
            model.vocab = read_vocab(vocab_url, storage)
    return model


def load_model_files(options_url: str, weights_url: str, storage: StorageOptions | None = None, *,
                     expected_digest: str | None = None, source: str | None = None) -> LoadedModel:
    """:func:`load_model` for two files named separately (``elmo dump --options-file --weight-file``)."""
    options_path, weights_path, digest = _fetch(options_url, weights_url, storage, expected_digest)
    options = read_options(options_path, source=options_url)
    bilm = BiLm(options)
    softmax = load_weights(bilm, weights_path, source=weights_url)
    return LoadedModel(source or options_url.rsplit("/", 1)[0], digest, options, bilm, softmax, None)


def read_vocab(url: str, storage: StorageOptions | None = None) -> Vocabulary:
    """A ``vocab.txt`` at any URL (never written into the model cache)."""
    return Vocabulary.parse(read_bytes(url, storage), source=url)


def _canonical(url: str, storage: StorageOptions | None) -> str:
    text = os.fspath(url).rstrip("/")
    return text if text.startswith(("http://", "https://")) else resolve(text, storage).url


def _local_path(url: str) -> Path | None:
    text = os.fspath(url)
    if "://" not in text:
        return Path(text).expanduser()
    return Path(text[len("file://"):]) if text.startswith("file://") else None


def _cached(digest: str) -> Path | None:
    directory = CACHE / digest
    return directory if (directory / WEIGHTS_FILE).is_file() and (directory / OPTIONS_FILE).is_file() else None


def _fetch(options_url: str, weights_url: str, storage: StorageOptions | None,
           expected: str | None) -> tuple[Path, Path, str]:
    """Local paths of the two files and their digest (downloading remote files at most once)."""
    local = [_local_path(options_url), _local_path(weights_url)]
    if local[0] is not None and local[1] is not None:
        digest = _digest_files(local)
        _check_digest(digest, expected, options_url)
        return local[0], local[1], digest
    if expected and (cached := _cached(expected)):
        return cached / OPTIONS_FILE, cached / WEIGHTS_FILE, expected
    contents = [local[i].read_bytes() if local[i] is not None else read_bytes(url, storage)
                for i, url in enumerate((options_url, weights_url))]
    digest = hashlib.sha256(b"".join(contents)).hexdigest()[:16]
    _check_digest(digest, expected, options_url)
    directory = _cached(digest) or _store(digest, contents)
    return directory / OPTIONS_FILE, directory / WEIGHTS_FILE, digest


def _digest_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path, what in zip(paths, ("options file", "weights file")):
        try:
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            raise ElmoError(f"{what} not found: {path}") from None
        except OSError as exc:
            raise ElmoError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()[:16]


def _check_digest(digest: str, expected: str | None, url: str) -> None:
    if expected and digest != expected:
        raise ElmoError(f"{url.rsplit('/', 1)[0]}: the model changed while the job ran "
                        f"(digest {digest}, the job started with {expected})")


def _store(digest: str, contents: list[bytes]) -> Path:
    """Write the two files under ``CACHE/<digest>/`` (staged, then renamed: readers never see half)."""
    target = CACHE / digest
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="_", dir=CACHE))
    for name, data in zip((OPTIONS_FILE, WEIGHTS_FILE), contents):
        (staging / name).write_bytes(data)
    try:
        os.replace(staging, target)
    except OSError:  # another process on this node got there first
        for name in (OPTIONS_FILE, WEIGHTS_FILE):
            (staging / name).unlink(missing_ok=True)
        staging.rmdir()
    return target
