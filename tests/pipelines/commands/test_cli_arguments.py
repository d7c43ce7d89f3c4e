"""Every argument is checked before any work: a bad value exits 2 with one line, never a wrong answer."""

from collections import Counter

import pytest

from elmo_model.formats.export import export_model, load_pretrained_lm
from elmo_model.formats.vocab import Vocabulary
from pipelines import cli
from pipelines.config import load_config
from pipelines.vocab_job import VocabConfig

from pipelines_support import local_s3_env

MODEL = ["--model", "tests/fixtures/elmo_tiny"]  # not read: parsing fails first


def _main_fails(capsys, argv: list[str]) -> str:
    """``elmo ARGV`` in this process: exit status 2 and exactly one line on stderr."""
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse
        status = exc.code
    out, err = capsys.readouterr()
    assert status == 2, out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["eval", "perplexity", *MODEL, "--input", "x.txt", "--window", "0"], "argument --window: must be a positive integer, got 0"),
    (["eval", "perplexity", *MODEL, "--input", "x.txt", "--window", "-4"], "argument --window: must be a positive integer, got -4"),
    (["vocab", "--input", "x", "--output", "y", "--max-size", "-5"], "argument --max-size: must be at least 4, got -5"),
    (["vocab", "--input", "x", "--output", "y", "--min-count", "0"], "argument --min-count: must be a positive integer"),
    (["neighbors", *MODEL, "--corpus", "c", "--sentence", "a b", "--word", "a", "--layer", "foo"],
     "argument --layer: expected top, average or a layer number, got 'foo'"),
    (["neighbors", *MODEL, "--corpus", "c", "--sentence", "a b", "--word", "a", "--layer", "-1"],
     "argument --layer: layer numbers start at 0"),
    (["neighbors", *MODEL, "--corpus", "c", "--sentence", "a b", "--word", "a", "-k", "0"], "argument -k: must be a positive integer"),
    (["neighbors", *MODEL, "--corpus", "c", "--sentence", "a b", "--word", "a", "--max-sentences", "0"],
     "argument --max-sentences: must be a positive integer"),
    (["embed", "--batch-size", "-1"], "argument --batch-size: must be a positive integer"),
    (["embed", "--actors", "0,2"], "argument --actors: expected MIN,MAX with 1 ≤ MIN ≤ MAX"),
    (["embed", "--actors", "3,1"], "argument --actors: expected MIN,MAX with 1 ≤ MIN ≤ MAX"),
    (["embed", "--cpus-per-actor", "0"], "argument --cpus-per-actor: must be greater than 0"),
    (["embed", "--gpus-per-actor", "-0.5"], "argument --gpus-per-actor: must be 0 or more"),
    (["embed", "--cpus-per-actor", "nan"], "argument --cpus-per-actor: expected a finite number"),
    (["train", "--num-workers", "0"], "argument --num-workers: must be a positive integer"),
    (["train", "--steps", "-3"], "argument --steps: must be a positive integer"),
    (["dump", "a", "b", "--options-file", "o", "--weight-file", "w", "--batch-size", "0"],
     "argument --batch-size: must be a positive integer"),
    (["dump", "a", "b", "--options-file", "o", "--weight-file", "w", "--threads", "-2"], "argument --threads: must be a positive integer"),
    (["eval", "probe", "pos", *MODEL, "--data", "d", "--epochs", "0"], "argument --epochs: must be a positive integer"),
    (["eval", "probe", "pos", *MODEL, "--data", "d", "--max-train-sentences", "-1"], "argument --max-train-sentences: must be 0 or more"),
    (["eval", "probe", "wsd", *MODEL, "--data", "d", "--batch-size", "0"], "argument --batch-size: must be a positive integer"),
    (["s3", "serve", "--port", "70000"], "argument --port: must be a port number from 0 to 65535"),
    (["demo", "--steps", "0"], "argument --steps: must be a positive integer"),
])
def test_bad_numbers_fail_at_parse_time(capsys, argv, message):
    line = _main_fails(capsys, argv)
    assert line.startswith(f"elmo {argv[0]}") and ": error: " in line and message in line, line


def test_vocab_max_size_from_a_config_file_is_checked_too(tmp_path):
    config = tmp_path / "vocab.toml"
    config.write_text('inputs = ["x"]\noutput = "y"\nmax_size = -5\n')
    from elmo_model.errors import ElmoError

    with pytest.raises(ElmoError, match="max_size must be at least 4"):
        load_config(VocabConfig, str(config)).validate()


def test_neighbors_layer_beyond_the_model(capsys, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the river bank\n")
    model = _tiny_model_dir(tmp_path)
    line = _main_fails(capsys, ["neighbors", "--model", str(model), "--corpus", str(corpus),
                                "--sentence", "a bank", "--word", "bank", "--layer", "7"])
    assert "--layer 7: the model at" in line and "has layers 0 to 2" in line


def _tiny_model_dir(tmp_path):
    """An `elmo train`-style export of the tiny fixture: options.json, weights.hdf5 with softmax, vocab.txt."""
    vocab = Vocabulary.from_counts(Counter("the river bank a of".split()))
    lm = load_pretrained_lm("tests/fixtures/elmo_tiny/options.json", "tests/fixtures/elmo_tiny/lm_weights.hdf5", vocab)
    return export_model(lm, vocab, tmp_path / "model")


@pytest.mark.parametrize("content", ["", "\n  \n\t\n"])
def test_perplexity_of_empty_or_blank_input_is_an_error_not_one(capsys, tmp_path, content):
    text = tmp_path / "held_out.txt"
    text.write_text(content)
    line = _main_fails(capsys, ["eval", "perplexity", "--model", str(_tiny_model_dir(tmp_path)), "--input", str(text)])
    assert line.startswith("elmo eval: error: ") and str(text) in line and "no sentences" in line


def test_perplexity_window_checked_in_the_api_too(tmp_path):
    from elmo_model.errors import ElmoError
    from elmo_model.eval.perplexity import perplexity

    vocab = Vocabulary.from_counts(Counter("the river bank".split()))
    lm = load_pretrained_lm("tests/fixtures/elmo_tiny/options.json", "tests/fixtures/elmo_tiny/lm_weights.hdf5", vocab)
    with pytest.raises(ElmoError, match="window must be a positive"):
        perplexity(lm, vocab, [["the", "bank"]], "stream", -4)
    with pytest.raises(ElmoError, match="no sentences"):
        perplexity(lm, vocab, [], "sentence")
    with pytest.raises(ElmoError, match="unknown perplexity mode 'streams'"):
        perplexity(lm, vocab, [["the", "bank"]], "streams")


@pytest.fixture(scope="module")
def s3():
    with local_s3_env("argsin", "argsout") as server:
        from pipelines.io import storage

        storage.write_text("s3://argsin/in/a.txt", "a b\n")
        yield server


@pytest.mark.parametrize("output, message", [
    ("s3:///vec/", "s3:///vec/: URL names no bucket"),
    ("s3://", "s3://: URL names no bucket"),
])
def test_embed_output_without_bucket(capsys, s3, output, message):
    line = _main_fails(capsys, ["embed", "--model", "tests/fixtures/elmo_tiny", "--input", "s3://argsin/in/",
                                "--output", output])
    assert line.startswith(f"elmo embed: error: {message}")


def test_embed_and_vocab_unwritable_local_output_fail_before_ray(capsys, s3, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for command in ("embed", "vocab"):
        argv = [command, "--input", "s3://argsin/in/", "--output", str(blocker / "out")]
        if command == "embed":
            argv += ["--model", "tests/fixtures/elmo_tiny"]
        line = _main_fails(capsys, argv)
        assert f"file://{blocker}/out: cannot write there" in line, line
    import ray

    assert not ray.is_initialized()


def test_dump_precision_auto_says_what_it_chose_and_records_it(capsys, tmp_path):
    import h5py

    from elmo_model.model.precision import resolve_precision

    text = tmp_path / "in.txt"
    text.write_text("the river bank\n")
    out = tmp_path / "out.hdf5"
    fixture = "tests/fixtures/elmo_tiny"
    assert cli.main(["dump", str(text), str(out), "--options-file", f"{fixture}/options.json", "--weight-file",
                     f"{fixture}/lm_weights.hdf5", "--precision", "auto"]) == 0
    chosen, why = resolve_precision("auto", "cpu")
    assert f"elmo dump: precision {chosen} ({why})" in capsys.readouterr().err
    with h5py.File(out) as f:
        assert f.attrs["precision"] == chosen
