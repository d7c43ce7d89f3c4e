"""``elmo vocab`` in a subprocess: input errors fail before Ray starts — exit 2, one line, no traceback."""

import os
import subprocess
import sys

import pytest
from pipelines_support import local_s3_env

from pipelines.io import storage


@pytest.fixture(scope="module")
def s3():
    with local_s3_env("vocabcli") as server:
        storage.write_text("s3://vocabcli/in/a.txt", "a b\n")
        yield server


def _fails(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "vocab", *args], capture_output=True,
                            text=True, timeout=120, env=env)  # exactly ``env``: variables may be missing
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["--input", "s3://vocabcli/nothing/", "--output", "s3://vocabcli/out"],
     "elmo vocab: error: s3://vocabcli/nothing: no input files there"),
    (["--input", "s3://no-such-bucket/x", "--output", "s3://vocabcli/out"],
     "elmo vocab: error: s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist"),
    (["--input", "s3://vocabcli/in/", "--output", "s3://missing-out/v"],
     "elmo vocab: error: s3://missing-out/v: bucket 'missing-out' does not exist"),
    (["--input", "s3://vocabcli/in/", "--output", "s3://vocabcli/out", "--set", "ingest.tokeniser=x"],
     "elmo vocab: error: unknown config key 'ingest.tokeniser'"),
    (["--output", "s3://vocabcli/out"], "elmo vocab: error: elmo vocab needs at least one --input"),
])
def test_input_errors_name_the_url(s3, args, message):
    assert _fails(dict(os.environ), *args).startswith(message)
    assert storage.list_files("s3://vocabcli/out", allow_empty=True) == []


def test_missing_credentials(s3):
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    line = _fails(env, "--input", "s3://vocabcli/in/", "--output", "s3://vocabcli/out")
    assert line.startswith("elmo vocab: error: s3://vocabcli/in/: no AWS credentials found")
