"""The embedded S3: context manager and the ``elmo s3 serve`` command."""

import os
import signal
import socket
import subprocess
import sys

import boto3
import pytest

from elmo_model.errors import ElmoError
from pipelines.io.local_s3 import LocalS3


def _client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_context_manager_serves_buckets_on_localhost_and_stops():
    with LocalS3(buckets=["one", "two"]) as s3, LocalS3() as other:
        assert s3.endpoint_url.startswith("http://127.0.0.1:") and s3.port != other.port
        names = [b["Name"] for b in _client(s3.endpoint_url).list_buckets()["Buckets"]]
        assert names == ["one", "two"]
        # One moto store per process: both endpoints serve the same buckets.
        assert [b["Name"] for b in _client(other.endpoint_url).list_buckets()["Buckets"]] == names
        assert s3.env()["AWS_ENDPOINT_URL"] == s3.endpoint_url
        assert s3.storage_options().endpoint_url == s3.endpoint_url
        port = s3.port
    assert not _port_open(port)
    with pytest.raises(RuntimeError):
        _ = s3.endpoint_url
    with LocalS3() as fresh:  # the last server to stop emptied the store
        assert _client(fresh.endpoint_url).list_buckets()["Buckets"] == []


def test_bad_bucket_name_is_an_error():
    with LocalS3() as s3, pytest.raises(ElmoError, match="cannot create bucket 'x'"):
        s3.create_bucket("x")


def test_cli_serve_prints_endpoint_and_env_and_stops_on_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "s3", "serve", "--bucket", "corpus"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"})
    try:
        first = proc.stdout.readline()
        assert first.startswith("S3 endpoint: http://127.0.0.1:"), first + proc.stderr.read()
        endpoint = first.split()[2]
        header = [proc.stdout.readline() for _ in range(6)]  # a comment, then five exports
        assert [b["Name"] for b in _client(endpoint).list_buckets()["Buckets"]] == ["corpus"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"export AWS_ENDPOINT_URL={endpoint}\n" in header
    assert "export AWS_ACCESS_KEY_ID=testing\n" in header
    assert "Traceback" not in err
