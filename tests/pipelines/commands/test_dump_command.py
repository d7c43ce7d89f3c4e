"""`elmo dump` end to end through the real console script."""

import copy
import json
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch

from benchmarks.corpus import make_sentences
from elmo_model.infer.dump import partial_path
from elmo_model.model.chars import batch_char_ids
from elmo_model.formats.weights import load_bilm

from support import run_elmo


@pytest.fixture
def sentences_file(tmp_path, tiny_sentences):
    lines = [tiny_sentences[k][i] for i in range(3) for k in range(3)]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, lines


def test_dump_all_top_average(tmp_path, tiny_files, sentences_file):
    path, lines = sentences_file
    options, weights = tiny_files
    model = load_bilm(options, weights).eval()
    for mode in ("all", "top", "average"):
        out = tmp_path / f"{mode}.hdf5"
        result = run_elmo("dump", str(path), str(out), "--options-file", str(options),
                          "--weight-file", str(weights), f"--{mode}", "--batch-size", "4")
        assert result.returncode == 0, result.stderr
        with h5py.File(out, "r") as fin:
            mapping = json.loads(fin["sentence_to_index"][0])
            assert mapping == {line: str(i) for i, line in enumerate(lines)}
            for i, line in enumerate(lines):
                tokens = line.split()
                ids = torch.from_numpy(batch_char_ids([tokens], add_boundaries=True)).long()
                with torch.no_grad():
                    layers = torch.stack(model(ids).layers)[:, 0, 1 : len(tokens) + 1].numpy()
                expected = {"all": layers, "top": layers[-1], "average": layers.mean(0)}[mode]
                got = fin[str(i)][...]
                assert got.dtype == np.float32 and got.shape == expected.shape
                np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not list(tmp_path.glob("_*"))


def test_dump_stateful_reproduces_original(tmp_path, tiny_files, tiny_dir, tiny_sentences):
    """Batches of 3 in the fixture's order, stateful: the original's numbers for every batch."""
    lines = [tiny_sentences[k][i] for i in range(10) for k in range(3)]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.hdf5"
    result = run_elmo("dump", str(path), str(out), "--options-file", str(tiny_files[0]),
                      "--weight-file", str(tiny_files[1]), "--top", "--batch-size", "3", "--stateful")
    assert result.returncode == 0, result.stderr
    with h5py.File(out, "r") as fin:
        for i in range(10):
            for k in range(3):
                with h5py.File(tiny_dir / f"lm_embeddings_{k}.hdf5", "r") as ref:
                    both = ref[str(i)][...]
                np.testing.assert_allclose(fin[str(3 * i + k)][...], np.concatenate([both[0], both[1]], -1), atol=1e-5)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"a fine line\n\nnext\n", "line 2 is empty"),
        (b"ok line\nbad \xff\xfe bytes\n", "line 2 is not valid UTF-8"),
        (b"", "no sentences"),
    ],
)
def test_dump_bad_input_fails_cleanly(tmp_path, tiny_files, content, message):
    path = tmp_path / "in.txt"
    path.write_bytes(content)
    out = tmp_path / "out.hdf5"
    result = run_elmo("dump", str(path), str(out), "--options-file", str(tiny_files[0]),
                      "--weight-file", str(tiny_files[1]))
    assert result.returncode != 0
    assert message in result.stderr and "in.txt" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob("_*"))


def test_dump_corrupt_weights_fails_cleanly(tmp_path, tiny_files):
    path = tmp_path / "in.txt"
    path.write_text("hello world\n")
    bad = tmp_path / "weights.hdf5"
    bad.write_bytes(b"not hdf5 at all")
    result = run_elmo("dump", str(path), str(tmp_path / "o.hdf5"), "--options-file", str(tiny_files[0]),
                      "--weight-file", str(bad))
    assert result.returncode != 0 and "weights.hdf5: not a readable HDF5" in result.stderr
    assert not (tmp_path / "o.hdf5").exists()


def test_sigterm_leaves_no_partial_output(tiny_files, tmp_path):
    """`elmo dump` stopped by SIGTERM (e.g. `timeout`) in the middle of a long line: exit 143, one
    line, and neither the output nor its staging file left behind."""
    line = " ".join(make_sentences(1, 200_000, 200_000, seed=8)[0])
    (tmp_path / "in.txt").write_text(line + "\n")
    out = tmp_path / "out.hdf5"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "dump", str(tmp_path / "in.txt"), str(out), "--options-file",
         str(tiny_files[0]), "--weight-file", str(tiny_files[1]), "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not partial_path(out).exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert partial_path(out).exists(), "the run never started writing"
        time.sleep(0.2)  # inside the line (a 200,000-token line takes seconds, longer on a loaded machine)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, stderr
    errors = [l for l in stderr.splitlines() if l.startswith("elmo dump:") and "%|" not in l]  # not the bar
    assert errors == ["elmo dump: error: terminated (SIGTERM); nothing written"], stderr
    assert "Traceback" not in stderr
    assert not out.exists() and not partial_path(out).exists()


def _edited_options(tiny_files, path: str, value) -> dict:
    """The fixture's options.json with the dotted option ``path`` set to ``value``."""
    raw = copy.deepcopy(json.loads(tiny_files[0].read_text()))
    *parents, leaf = path.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[leaf] = value
    return raw


def test_cli_bad_model_exits_2_with_one_line(tiny_files, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(tiny_files[1], model / "weights.hdf5")
    (tmp_path / "in.txt").write_text("a sentence\n")
    out = tmp_path / "out.hdf5"
    for option, value in (("lstm.dim", "64"), ("lstm.n_layers", 10**6), ("char_cnn.max_characters_per_token", 10**9)):
        (model / "options.json").write_text(json.dumps(_edited_options(tiny_files, option, value)))
        result = run_elmo("dump", str(tmp_path / "in.txt"), str(out), "--options-file", str(model / "options.json"),
                          "--weight-file", str(model / "weights.hdf5"), timeout=120)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith(f"elmo dump: error: {model / 'options.json'}: {option} = "), lines[0]
        assert not out.exists()
