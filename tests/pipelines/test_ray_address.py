"""``elmo embed`` / ``elmo vocab`` against a Ray that already runs (``RAY_ADDRESS`` set, like after
``ray start --head``): the head was started with no storage location settings, and its own credentials
(a shared credentials file, as a cluster's nodes have an instance role or a mounted file), so its
workers reach the moto S3 and the GCS emulator with the endpoint, region and project the driver passes
in the job's runtime environment — and the driver's keys never leave it: no key value reaches the
console, the job table or any file the head keeps.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pipelines_support import local_gcs_env, local_s3_env, patched_env, ray_head

from elmo_model.errors import ElmoError
from pipelines.io import storage
from pipelines.io.worker_env import FORWARD_CREDENTIALS_VAR, job_runtime_env
from support import run_elmo

SECRET = "elmo-ray-address-secret-77c1d0"  # the driver's secret key: must never leave the driver
KEY_ID = "AKIAELMORAYADDRESS77"  # the driver's key id
TOKEN = "elmo-ray-address-session-token-3f9a"  # the driver's session token
DRIVER_KEYS = (SECRET, KEY_ID, TOKEN)
# The head's own credentials (moto takes any key): what its workers use.
HEAD_KEY_ID, HEAD_SECRET = "AKIAHEADNODEOWN00001", "head-node-own-secret"
TEXT_A = "The bank raised its rates .\nWe sat on the river bank .\n"
TEXT_B = "Another file with words\n"

SHELL = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_DEFAULT_REGION": "eu-west-1", "AWS_PROFILE": "ci",
         "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN,
         "AWS_SHARED_CREDENTIALS_FILE": "/home/x/.aws/credentials", "AWS_EC2_METADATA_DISABLED": "true",
         "STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443", "GOOGLE_APPLICATION_CREDENTIALS": "/home/x/sa.json",
         "HOME": "/home/x", "PATH": "/bin"}
JOINED = {**SHELL, "RAY_ADDRESS": "127.0.0.1:6379"}


def test_runtime_env_only_when_joining_an_existing_ray_from_outside_a_job():
    assert job_runtime_env(SHELL) is None  # Ray started by elmo itself: workers inherit the environment
    assert job_runtime_env({**SHELL, "RAY_ADDRESS": "local"}) is None
    # the driver of a submitted job: the job's own runtime environment already reaches its workers
    assert job_runtime_env({**JOINED, "RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}) is None
    assert job_runtime_env({"RAY_ADDRESS": "127.0.0.1:6379", "HOME": "/home/x"}) is None


def test_a_joined_ray_gets_where_storage_is_and_never_the_keys(caplog):
    """Endpoint, region, profile name and emulator travel; keys, tokens and the paths of credential files
    do not (the cluster uses its own chain) — and the driver says so, naming variables, never values."""
    with caplog.at_level(logging.INFO, logger="pipelines.io.worker_env"):
        joined = job_runtime_env(JOINED)
    assert joined == {"env_vars": {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_DEFAULT_REGION": "eu-west-1",
                                   "AWS_PROFILE": "ci", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443"}}
    said = caplog.text
    assert "AWS_SECRET_ACCESS_KEY" in said and FORWARD_CREDENTIALS_VAR in said
    assert not any(value in said for value in (*DRIVER_KEYS, "/home/x"))
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    assert job_runtime_env({**JOINED, FORWARD_CREDENTIALS_VAR: "0"}) == joined


def test_keys_are_forwarded_only_when_asked_with_a_warning_of_where_they_appear(caplog):
    with caplog.at_level(logging.INFO, logger="pipelines.io.worker_env"):
        joined = job_runtime_env({**JOINED, FORWARD_CREDENTIALS_VAR: "1"})
    assert joined == {"env_vars": {k: v for k, v in SHELL.items() if k not in ("HOME", "PATH", "AWS_EC2_METADATA_DISABLED")}}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    for where in ("127.0.0.1:6379", "job table", "dashboard", "runtime_env_agent.log", "AWS_SECRET_ACCESS_KEY",
                  "GOOGLE_APPLICATION_CREDENTIALS"):
        assert where in warnings[0]
    assert not any(value in caplog.text for value in (*DRIVER_KEYS, "/home/x"))
    with pytest.raises(ElmoError, match=rf"^{FORWARD_CREDENTIALS_VAR}='maybe': expected 1 .*or 0"):
        job_runtime_env({**JOINED, FORWARD_CREDENTIALS_VAR: "maybe"})


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    credentials = tmp_path_factory.mktemp("head-aws") / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {HEAD_KEY_ID}\naws_secret_access_key = {HEAD_SECRET}\n")
    with ray_head(env={"AWS_SHARED_CREDENTIALS_FILE": str(credentials)}) as started:
        yield started


@pytest.fixture(scope="module")
def stores(tiny_files):
    with local_s3_env("addrmodels", "addrin", "addrout") as s3, local_gcs_env("gaddr") as gcs, \
            patched_env({"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,  # moto takes any key
                         "AWS_SESSION_TOKEN": TOKEN}):
        fs = storage.resolve("s3://addrmodels").fs
        fs.put_file(str(tiny_files[0]), "addrmodels/tiny/options.json")
        fs.put_file(str(tiny_files[1]), "addrmodels/tiny/weights.hdf5")
        storage.write_text("s3://addrin/text/a.txt", TEXT_A)
        storage.write_text("s3://addrin/text/b.txt", TEXT_B)
        storage.write_text("gs://gaddr/text/a.txt", TEXT_A)
        storage.write_bytes("gs://gaddr/tiny/options.json", tiny_files[0].read_bytes())
        storage.write_bytes("gs://gaddr/tiny/weights.hdf5", tiny_files[1].read_bytes())
        yield s3, gcs


def _elmo(head, *args: str):
    result = run_elmo(*args, env=head.client_env(), timeout=300)
    assert not any(value in result.stdout + result.stderr for value in DRIVER_KEYS)
    return result


@pytest.fixture(scope="module")
def s3_embed(head, stores):
    return _elmo(head, "embed", "--model", "s3://addrmodels/tiny", "--input", "s3://addrin/text",
                 "--output", "s3://addrout/vectors", "--actors", "1,1", "--cpus-per-actor", "0.5")


@pytest.mark.ray
def test_embed_on_an_existing_ray_reaches_s3_with_the_clusters_own_credentials(s3_embed):
    result = s3_embed
    assert result.returncode == 0, result.stderr[-3000:]
    loc = storage.resolve("s3://addrout/vectors")
    table = pq.read_table(loc.path, filesystem=loc.arrow_fs)
    assert sorted(zip(table.column("source").to_pylist(), table.column("line").to_pylist())) == [
        ("s3://addrin/text/a.txt", 0), ("s3://addrin/text/a.txt", 1), ("s3://addrin/text/b.txt", 0)]
    assert "3 sentences" in result.stdout


@pytest.mark.ray
def test_embed_on_an_existing_ray_reaches_the_gcs_emulator(head, stores):
    """The embed actors load the model themselves: without STORAGE_EMULATOR_HOST they would ask the real GCS."""
    result = _elmo(head, "embed", "--model", "gs://gaddr/tiny", "--input", "gs://gaddr/text",
                   "--output", "gs://gaddr/vectors", "--actors", "1,1", "--cpus-per-actor", "0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    loc = storage.resolve("gs://gaddr/vectors")
    table = pq.read_table(loc.path, filesystem=loc.arrow_fs)
    assert sorted(table.column("tokens").to_pylist()) == sorted(line.split() for line in TEXT_A.splitlines())


def _head_job_records(head) -> str:
    """Everything the head tells about its jobs: the dashboard's /api/jobs/, the job client's list and
    the GCS job table through the state API (``ray list jobs --detail``)."""
    from ray.job_submission import JobSubmissionClient

    api = urllib.request.urlopen(f"{head.dashboard_url}/api/jobs/", timeout=30).read().decode()
    client = JobSubmissionClient(head.dashboard_url)
    listed = json.dumps([job.model_dump() for job in client.list_jobs()], default=str)
    table = subprocess.run([str(Path(sys.executable).parent / "ray"), "list", "jobs", "--detail", "--format=json",
                            f"--address={head.dashboard_url}"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert table.returncode == 0, table.stderr[-2000:]
    return "\n".join((api, listed, table.stdout))


@pytest.mark.ray
def test_the_head_keeps_no_key_of_the_driver(head, s3_embed):
    """After the embed: the driver's keys are nowhere in the job records or in any file under the head's
    temp dir (session logs, runtime_env_agent.log, job logs) — where its endpoint is recorded."""
    assert s3_embed.returncode == 0, s3_embed.stderr[-3000:]
    records = _head_job_records(head)
    assert "addrout" in records or "embed" in records  # the embed's driver job is listed ...
    assert os.environ["AWS_ENDPOINT_URL"] in records  # ... with the runtime environment it was given
    files = [p for p in [*Path(head.temp_dir).rglob("*"), Path(f"{head.temp_dir}.log")] if p.is_file() and not p.is_symlink()]
    assert any(p.name == "runtime_env_agent.log" for p in files)
    in_records = [value for value in DRIVER_KEYS if value in records]
    in_files = sorted(p.name for p in files if any(value.encode() in p.read_bytes() for value in DRIVER_KEYS))
    assert (in_records, in_files) == ([], [])
