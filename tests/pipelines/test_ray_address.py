"""``elmo embed`` / ``elmo vocab`` against a Ray that already runs (``RAY_ADDRESS`` set, like after
``ray start --head``): the head was started with no storage settings at all, so its workers can only
reach the moto S3 and the GCS emulator with what the driver passes in the job's runtime environment.
No key value may reach the console.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from pipelines_support import local_gcs_env, local_s3_env, patched_env, ray_head

from pipelines.io import storage
from pipelines.io.worker_env import job_runtime_env
from support import run_elmo

SECRET = "elmo-ray-address-secret-77c1d0"  # a key value that must never reach the console
TEXT_A = "The bank raised its rates .\nWe sat on the river bank .\n"
TEXT_B = "Another file with words\n"


def test_runtime_env_only_when_joining_an_existing_ray_from_outside_a_job():
    shell = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": SECRET,
             "STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443", "GOOGLE_APPLICATION_CREDENTIALS": "",
             "HOME": "/home/x", "PATH": "/bin"}
    assert job_runtime_env(shell) is None  # Ray started by elmo itself: workers inherit the environment
    assert job_runtime_env({**shell, "RAY_ADDRESS": "local"}) is None
    joined = job_runtime_env({**shell, "RAY_ADDRESS": "127.0.0.1:6379"})
    assert joined == {"env_vars": {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "AKID",
                                   "AWS_SECRET_ACCESS_KEY": SECRET, "STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443"}}
    # the driver of a submitted job: the job's own runtime environment already reaches its workers
    assert job_runtime_env({**shell, "RAY_ADDRESS": "127.0.0.1:6379", "RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}) is None
    assert job_runtime_env({"RAY_ADDRESS": "127.0.0.1:6379", "HOME": "/home/x"}) is None


@pytest.fixture(scope="module")
def head():
    with ray_head() as started:
        yield started


@pytest.fixture(scope="module")
def stores(tiny_files):
    with local_s3_env("addrmodels", "addrin", "addrout") as s3, local_gcs_env("gaddr") as gcs, \
            patched_env({"AWS_SECRET_ACCESS_KEY": SECRET}):  # moto takes any key
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
    assert SECRET not in result.stdout + result.stderr
    return result


@pytest.mark.ray
def test_embed_on_an_existing_ray_reaches_s3_with_the_drivers_settings(head, stores):
    result = _elmo(head, "embed", "--model", "s3://addrmodels/tiny", "--input", "s3://addrin/text",
                   "--output", "s3://addrout/vectors", "--actors", "1,1", "--cpus-per-actor", "0.5")
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
