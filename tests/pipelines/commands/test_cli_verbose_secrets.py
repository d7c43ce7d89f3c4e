"""`elmo -v` never prints credentials; errors raised in Ray tasks print one line (the traceback under -v).

Every command runs as a real subprocess against a moto S3 server with distinctive fake credentials
(moto accepts any key), and its stdout + stderr must not contain any of them.
"""

import logging
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from pipelines_support import local_s3_env
from support import check_ray_allowed

from elmo_model.formats.export import export_model, load_pretrained_lm
from elmo_model.formats.vocab import Vocabulary
from pipelines.cli_logging import RedactingFormatter
from pipelines.io.storage import resolve

SECRETS = {"AWS_ACCESS_KEY_ID": "AKIDLEAKCHECK0001", "AWS_SECRET_ACCESS_KEY": "LeakCheckSecretValue0002",
           "AWS_SESSION_TOKEN": "LeakCheckSessionToken0003"}
TEXT = "The bank raised its rates .\nWe sat on the river bank .\n"
TINY = "tests/fixtures/elmo_tiny"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with local_s3_env("secret") as server:
        fs = resolve("s3://secret").fs
        fs.put_file(f"{TINY}/options.json", "secret/model/options.json")
        fs.put_file(f"{TINY}/lm_weights.hdf5", "secret/model/weights.hdf5")
        vocab = Vocabulary.from_counts(Counter(TEXT.split()))
        lm = load_pretrained_lm(f"{TINY}/options.json", f"{TINY}/lm_weights.hdf5", vocab)
        export = export_model(lm, vocab, tmp_path_factory.mktemp("export") / "lm")
        for name in ("options.json", "weights.hdf5", "vocab.txt"):
            fs.put_file(str(export / name), f"secret/lm/{name}")
        fs.pipe_file("secret/text/a.txt", TEXT.encode())
        fs.pipe_file("secret/badgz/a.txt.gz", b"this is not gzip\n")
        fs.pipe_file("secret/badjsonl/a.jsonl", b'{"text": "fine"}\n{not json\n')
        yield server


def _env(**extra) -> dict:
    env = {**os.environ, **SECRETS, "RAY_AUTH_MODE": "disabled", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def _elmo(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    check_ray_allowed([a for a in args if a != "-v"])
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _assert_no_secrets(text: str) -> None:
    for name, value in SECRETS.items():
        assert value not in text, f"{name} printed"


COMMANDS = {
    "dump": lambda out: ["dump", "s3://secret/text/a.txt", str(out / "o.hdf5"), "--options-file",
                         "s3://secret/model/options.json", "--weight-file", "s3://secret/model/weights.hdf5"],
    "neighbors": lambda out: ["neighbors", "--model", "s3://secret/model", "--corpus", "s3://secret/text/",
                              "--sentence", "the bank", "--word", "bank"],
    "eval perplexity": lambda out: ["eval", "perplexity", "--model", "s3://secret/lm", "--input", "s3://secret/text/"],
    "eval probe": lambda out: ["eval", "probe", "wsd", "--model", "s3://secret/model", "--data", "s3://secret/none.tsv"],
    "vocab": lambda out: ["vocab", "--input", "s3://secret/text/", "--output", "s3://secret/vocab"],
    "embed": lambda out: ["embed", "--model", "s3://secret/model", "--input", "s3://secret/text/",
                          "--output", "s3://secret/vectors", "--actors", "1,1", "--cpus-per-actor", "0.5"],
    "submit": lambda out: ["submit", "--address", "http://127.0.0.1:9", "--no-working-dir", "--env", "AWS_SECRET_ACCESS_KEY",
                           "--", "vocab", "--input", "s3://secret/text/", "--output", "s3://secret/v2"],
}
SLOW = {"train": lambda out: ["train", "--config", "pipelines/configs/train_tiny.toml", "--train", "s3://secret/text/",
                              "--output", "s3://secret/trained", "--steps", "1", "--set", "num_workers=1",
                              "--set", "cpus_per_worker=0.5"]}


RAY = {"vocab", "embed", "submit"}  # start (or join) a Ray


@pytest.mark.parametrize("command", [*(pytest.param(c, marks=pytest.mark.ray) if c in RAY else c for c in COMMANDS),
                                     pytest.param("train", marks=[pytest.mark.slow, pytest.mark.ray])])
def test_verbose_never_prints_credentials(s3, tmp_path, command):
    result = _elmo("-v", *{**COMMANDS, **SLOW}[command](tmp_path))
    output = result.stdout + result.stderr
    _assert_no_secrets(output)
    if command in ("dump", "neighbors", "eval perplexity", "vocab", "embed", "train"):
        assert result.returncode == 0, output[-3000:]
        assert "DEBUG" in output  # -v really was on
    else:  # probe: no such data file; submit: no cluster there — both after touching S3/credentials
        assert result.returncode != 0
    if command == "embed":  # -v keeps Ray's own lines: the noise that test_quiet_embed_* checks is gone
        assert "core_worker.cc" in output and "has constructor arguments in the object store" in output


@pytest.mark.ray
def test_quiet_embed_prints_only_its_result(s3):
    """Without -v a successful embed shows its result line, none of Ray's noise
    (the core_worker.cc error line, the token-auth notice, Ray Data's INFO progress)."""
    env = {**_env(), "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_AUTH_MODE")
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", *COMMANDS["embed"](None)[:-6], "--output",
                             "s3://secret/quiet", "--actors", "1,1", "--cpus-per-actor", "0.5"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("embedded 1 input file(s), 2 sentences"), result.stdout
    assert result.stderr == "", result.stderr


def test_s3_serve_verbose_with_requests_prints_no_client_credentials(s3):
    server = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "-v", "s3", "serve", "--bucket", "srvbucket",
                               "--log-requests"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=_env())
    try:
        endpoint = None
        for line in server.stdout:
            if line.startswith("export AWS_ENDPOINT_URL="):
                endpoint = line.split("=", 1)[1].strip()
                break
        assert endpoint
        fs_env = _env(AWS_ENDPOINT_URL=endpoint)
        subprocess.run([sys.executable, "-c", "from pipelines.io.storage import write_text, read_text;"
                        "write_text('s3://srvbucket/x.txt', 'hi'); print(read_text('s3://srvbucket/x.txt'))"],
                       env=fs_env, check=True, timeout=120, capture_output=True)
    finally:
        server.send_signal(signal.SIGTERM)
        rest, _ = server.communicate(timeout=60)
    _assert_no_secrets(rest)
    assert "PUT" in rest  # the requests were logged


def test_formatter_masks_secret_values_and_auth_headers(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    record = logging.LogRecord("botocore.endpoint", logging.DEBUG, __file__, 1, "headers: %s", (
        {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDLEAKCHECK0001/20260101/us-east-1/s3/aws4_request, "
                          "SignedHeaders=host, Signature=abc", "X-Amz-Security-Token": "LeakCheckSessionToken0003"},),
        None)
    text = RedactingFormatter("%(message)s").format(record)
    _assert_no_secrets(text)
    assert "Authorization': '***" in text


@pytest.mark.parametrize("prefix, message", [
    ("badgz", "s3://secret/badgz/a.txt.gz: corrupt or truncated gzip data"),
    ("badjsonl", "s3://secret/badjsonl/a.jsonl:2: not valid JSON"),
])
@pytest.mark.ray
def test_errors_inside_ray_tasks_print_one_line(s3, prefix, message):
    result = _elmo("vocab", "--input", f"s3://secret/{prefix}/", "--output", f"s3://secret/out-{prefix}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "internal code" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [next(line for line in errors if line.startswith("elmo vocab: error: "))], result.stderr
    assert message in errors[0]
