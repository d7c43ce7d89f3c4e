"""pipelines.io.model_store: one loading path for local and S3 model directories (moto, no Ray)."""

import hashlib

import h5py
import pytest
import torch
from pipelines_support import local_s3_env

from elmo_model.infer.elmo import Elmo, batch_to_ids
from elmo_model.errors import ElmoError
from elmo_model.formats.weights import load_bilm
from pipelines.io import model_store, storage


def _digest(*files) -> str:
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


@pytest.fixture
def model_dir(tmp_path, tiny_files):
    (tmp_path / "m").mkdir()
    (tmp_path / "m/options.json").write_bytes(tiny_files[0].read_bytes())
    (tmp_path / "m/weights.hdf5").write_bytes(tiny_files[1].read_bytes())
    return tmp_path / "m"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(model_store, "CACHE", tmp_path / "cache")
    return tmp_path / "cache"


def test_local_directory_loads_in_place_with_its_digest(model_dir, tiny_files, cache):
    model = model_store.load_model(str(model_dir))
    assert model.digest == _digest(*tiny_files)
    assert model.softmax is None and model.vocab is None
    assert model.source == f"file://{model_dir}"
    expected = load_bilm(*tiny_files).state_dict()
    for name, value in model.bilm.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert not cache.exists()  # local files are read where they are


def test_weights_are_parsed_once(model_dir, cache, monkeypatch):
    opened = []
    real = h5py.File

    def counting(*args, **kwargs):
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(h5py, "File", counting)
    model_store.load_model(str(model_dir), with_vocab=True)
    assert len(opened) == 1


def test_s3_model_is_downloaded_once_per_digest_and_vocab_stays_out_of_the_cache(model_dir, tiny_files, cache):
    with local_s3_env("models"):
        storage.upload_dir(model_dir, "s3://models/tiny")
        storage.write_text("s3://models/tiny/vocab.txt", "<S>\n</S>\n<UNK>\nthe\n")
        first = model_store.load_model("s3://models/tiny", with_vocab=True)
        assert first.digest == _digest(*tiny_files) and first.vocab.tokens == ["<S>", "</S>", "<UNK>", "the"]
        assert sorted(p.name for p in (cache / first.digest).iterdir()) == ["options.json", "weights.hdf5"]
        # An actor that knows the digest takes the cached copy: it works with the bucket emptied.
        storage.resolve("s3://models/tiny").fs.rm("models/tiny", recursive=True)
        again = model_store.load_model("s3://models/tiny", expected_digest=first.digest)
        assert again.digest == first.digest
        with pytest.raises(ElmoError, match="s3://models/tiny: not a model directory"):
            model_store.load_model("s3://models/tiny")


def test_a_model_changed_under_a_running_job_is_an_error(model_dir, cache):
    with local_s3_env("models"):
        storage.upload_dir(model_dir, "s3://models/m")
        with pytest.raises(ElmoError, match="the model changed while the job ran"):
            model_store.load_model("s3://models/m", expected_digest="0" * 16)


def test_bad_weights_name_the_url(model_dir, cache):
    with local_s3_env("models"):
        storage.upload_dir(model_dir, "s3://models/bad")
        storage.write_bytes("s3://models/bad/weights.hdf5", b"\x89HDF\r\n garbage")
        with pytest.raises(ElmoError, match=r"^s3://models/bad/weights.hdf5: not a readable HDF5"):
            model_store.load_model("s3://models/bad")
        whole = (model_dir / "weights.hdf5").read_bytes()  # truncated: named by its URL, not the cache path
        storage.write_bytes("s3://models/bad/weights.hdf5", whole[: len(whole) // 2])
        with pytest.raises(ElmoError, match=r"^s3://models/bad/weights.hdf5: not a readable HDF5"):
            model_store.load_model("s3://models/bad")


def test_elmo_from_files_from_a_loaded_model_and_allennlp_signature_agree(tiny_files, model_dir):
    ids = batch_to_ids([["The", "bank", "closed"], ["A"]])
    kwargs = dict(dropout=0.0, scalar_mix_parameters=[0.1, 0.2, 0.3])
    outputs = [
        Elmo(*tiny_files, 1, **kwargs),  # AllenNLP's signature
        Elmo(options_file=tiny_files[0], weight_file=tiny_files[1], num_output_representations=1, **kwargs),
        Elmo.from_files(*tiny_files, 1, **kwargs),
        Elmo(model_store.load_model(str(model_dir)).bilm, 1, **kwargs),
    ]
    reps = [e(ids)["elmo_representations"][0] for e in outputs]
    for rep in reps[1:]:
        torch.testing.assert_close(rep, reps[0], atol=0, rtol=0)


def test_published_files_over_https_style_urls(model_dir, tiny_files, cache):
    """``elmo dump --options-file https://…``: plain HTTP files (a local server here) load like S3 ones."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(model_dir))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        model = model_store.load_model_files(f"{base}/options.json", f"{base}/weights.hdf5")
        assert model.digest == _digest(*tiny_files)
        assert (cache / model.digest / "weights.hdf5").read_bytes() == tiny_files[1].read_bytes()
        with pytest.raises(ElmoError, match="not a model directory"):
            model_store.load_model(f"{base}/nowhere")
    finally:
        server.shutdown()
