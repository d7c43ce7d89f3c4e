"""``elmo submit``: its pieces without Ray, then real jobs on a real local head node.

The head (``ray start --head --block``, bound to 127.0.0.1, token auth off) is started by this
module and stopped through its own process group — never ``ray stop``. Jobs read and write a moto
S3 served from this process; the head itself knows nothing about S3: the endpoint travels in the
job's runtime environment (forwarded automatically), the dummy keys through ``--env KEY``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from pipelines_support import free_port, local_s3_env, patched_env, ray_head

from elmo_model.errors import ElmoError
from pipelines import cli, submit
from pipelines.io import storage

ROOT = Path(__file__).resolve().parents[3]
SECRET = "elmo-submit-secret-4f1e9a"  # a key value that must never reach the console
# Ray's job client (2.60) passes ssl=None to aiohttp when it follows the logs.
pytestmark = pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")


# --- the pieces, no Ray ---------------------------------------------------------------------------

def test_address_flag_then_environment_then_error():
    assert submit.resolve_address("http://a:8265", {"RAY_ADDRESS": "http://b:8265"}) == "http://a:8265"
    assert submit.resolve_address(None, {"RAY_ADDRESS": "http://b:8265"}) == "http://b:8265"
    assert submit.resolve_address(None, {"RAY_API_SERVER_ADDRESS": "http://c:8265",
                                         "RAY_ADDRESS": "http://b:8265"}) == "http://c:8265"
    with pytest.raises(ElmoError, match="no Ray cluster address: pass --address"):
        submit.resolve_address(None, {"RAY_ADDRESS": " "})


def test_command_after_the_separator_is_checked_by_elmos_parser(capsys):
    assert submit.elmo_command(["--", "elmo", "vocab", "--input", "s3://b/x", "--output", "s3://b/v"], cli.build_parser) == (
        "vocab", "--input", "s3://b/x", "--output", "s3://b/v")
    assert submit.elmo_command(["s3", "serve"], cli.build_parser) == ("s3", "serve")
    with pytest.raises(ElmoError, match="not a valid elmo command line: vocab --inptu x"):
        submit.elmo_command(["--", "vocab", "--inptu", "x"], cli.build_parser)
    assert "unrecognized arguments: --inptu x" in capsys.readouterr().err
    with pytest.raises(ElmoError, match="nothing to submit"):
        submit.elmo_command(["--", "elmo"], cli.build_parser)
    with pytest.raises(ElmoError, match="cannot submit itself"):
        submit.elmo_command(["--", "submit", "--", "vocab"], cli.build_parser)


def test_environment_forwards_where_storage_is_and_only_named_credentials():
    here = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": SECRET, "HOME": "/home/x"}
    assert submit.env_vars([], here) == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
                                         "AWS_DEFAULT_REGION": "eu-west-1"}
    forwarded = submit.env_vars(["AWS_SECRET_ACCESS_KEY", "ELMO_X=1=2"], here)
    assert forwarded["AWS_SECRET_ACCESS_KEY"] == SECRET and forwarded["ELMO_X"] == "1=2"
    with pytest.raises(ElmoError, match="--env AWS_PROFILE: AWS_PROFILE is not set"):
        submit.env_vars(["AWS_PROFILE"], here)
    with pytest.raises(ElmoError, match="expected KEY=VALUE or KEY"):
        submit.env_vars(["9X=1"], here)

    job = submit.Submission("http://h:8265", ("vocab", "--input", "a b"), working_dir=str(ROOT),
                            env_vars=forwarded)
    described = "\n".join(job.describe()) + repr(job)
    assert SECRET not in described and "AWS_SECRET_ACCESS_KEY" in described
    warning = [line for line in job.describe() if line.startswith("warning: ")]  # where a forwarded key shows
    assert len(warning) == 1 and "AWS_SECRET_ACCESS_KEY" in warning[0] and "runtime_env_agent.log" in warning[0]
    assert not any(line.startswith("warning: ") for line in
                   submit.Submission("h", ("vocab",), env_vars=submit.env_vars(["ELMO_X=1"], here)).describe())
    assert job.entrypoint == "python -m pipelines.cli vocab --input 'a b'"
    env = job.runtime_env()
    assert env["working_dir"] == str(ROOT) and env["env_vars"] == forwarded
    assert {".git", ".venv", "/data/cache", "/runs"} <= set(env["excludes"])
    assert submit.Submission("h", ("vocab",)).runtime_env() == {}
    assert submit.project_dir() == ROOT


class FakeClient:
    """Just enough of ``JobSubmissionClient``: a job that ends with ``final`` after two log chunks."""

    def __init__(self, final, exit_code=None, message=None, interrupt=False):
        from ray.job_submission import JobStatus

        self.info = SimpleNamespace(status=JobStatus(final), driver_exit_code=exit_code, message=message)
        self.interrupt, self.stopped, self.submitted = interrupt, [], None
        self.status = JobStatus

    def submit_job(self, **kwargs):
        self.submitted = kwargs
        return "raysubmit_fake"

    async def tail_job_logs(self, job_id):
        yield "line one\n"
        if self.interrupt:
            raise KeyboardInterrupt
        yield "line two\n"

    def get_job_info(self, job_id):
        return self.info

    def stop_job(self, job_id):
        self.stopped.append(job_id)
        self.info.status = self.status.STOPPED

    def get_job_status(self, job_id):
        return self.info.status


@pytest.mark.parametrize("final, exit_code, message, expected, says", [
    ("SUCCEEDED", 0, "Job finished successfully.", 0, "job raysubmit_fake succeeded"),
    ("FAILED", 2, "Job entrypoint command failed with exit code 2, last available logs:\nmore",
     2, "job raysubmit_fake failed (exit status 2)"),
    ("FAILED", None, "runtime env setup failed", 1,
     "job raysubmit_fake failed (exit status 1): runtime env setup failed"),
    ("STOPPED", None, "Job was intentionally stopped.", 1,
     "job raysubmit_fake was stopped: Job was intentionally stopped."),
])
def test_exit_status_is_the_jobs(monkeypatch, capsys, final, exit_code, message, expected, says):
    client = FakeClient(final, exit_code, message)
    monkeypatch.setattr(submit, "connect", lambda address: client)
    job = submit.Submission("http://h:8265", ("vocab", "--input", "x"))
    assert submit.run(job) == expected
    out, err = capsys.readouterr()
    assert out == "line one\nline two\n"
    assert err.splitlines()[-1] == f"elmo submit: {says}" and "more" not in err
    assert client.submitted["entrypoint"] == "python -m pipelines.cli vocab --input x"
    assert client.submitted["metadata"] == {"elmo_command": "vocab"}


def test_ctrl_c_stops_the_job(monkeypatch, capsys):
    client = FakeClient("RUNNING", interrupt=True)
    monkeypatch.setattr(submit, "connect", lambda address: client)
    assert submit.run(submit.Submission("http://h:8265", ("s3", "serve"))) == 130
    assert client.stopped == ["raysubmit_fake"]
    assert "interrupted: stopping job raysubmit_fake" in capsys.readouterr().err


def test_sigterm_stops_the_job_too(monkeypatch, capsys):
    client = FakeClient("RUNNING")

    async def terminated(job_id):
        yield "line one\n"
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(5)  # the handler interrupts this
        yield "never\n"

    client.tail_job_logs = terminated
    monkeypatch.setattr(submit, "connect", lambda address: client)
    before = signal.getsignal(signal.SIGTERM)
    assert submit.run(submit.Submission("http://h:8265", ("s3", "serve"))) == 143
    assert client.stopped == ["raysubmit_fake"]
    assert "terminated: stopping job raysubmit_fake" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


def test_unreachable_cluster_is_one_line():
    port = free_port()  # nothing listens there
    with patched_env({"RAY_AUTH_MODE": "disabled"}):
        with pytest.raises(ElmoError, match=f"cannot reach the Ray cluster at http://127.0.0.1:{port}: "):
            submit.connect(f"http://127.0.0.1:{port}")


# --- a real head node --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def head():
    """A Ray head on 127.0.0.1 (2 CPUs, every port chosen free), its dashboard URL; stopped by PID."""
    with ray_head() as started:
        yield started.dashboard_url


@pytest.fixture(scope="module")
def s3(tiny_files):
    with local_s3_env("subin", "subout", "submodels") as server, patched_env({"AWS_SECRET_ACCESS_KEY": SECRET}):
        storage.write_text("s3://subin/text/a.txt", "the bank closed .\nthe river bank .\n")
        storage.write_text("s3://subin/text/b.txt", "a bank of the river\n")
        fs = storage.resolve("s3://submodels").fs
        fs.put_file(str(tiny_files[0]), "submodels/tiny/options.json")
        fs.put_file(str(tiny_files[1]), "submodels/tiny/weights.hdf5")  # embed wants this name
        yield server


KEYS = ("--env", "AWS_ACCESS_KEY_ID", "--env", "AWS_SECRET_ACCESS_KEY", "--env", "AWS_EC2_METADATA_DISABLED")


def _submit(capsys, url: str, *args: str) -> SimpleNamespace:
    """``elmo submit`` through the real CLI, in this process (the Ctrl-C test runs it as a process),
    with this process's (S3) environment, token auth off and no RAY_ADDRESS."""
    capsys.readouterr()
    env = {name: None for name in os.environ if name.startswith("RAY_")}
    with patched_env({**env, "RAY_AUTH_MODE": "disabled"}):
        code = cli.main(["submit", "--address", url, *args])
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


@pytest.mark.ray
def test_the_address_given_wins_over_ray_address(head):
    with patched_env({"RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": f"http://127.0.0.1:{free_port()}"}):
        assert submit.connect(head).list_jobs() is not None  # Ray's client alone would use RAY_ADDRESS
        assert os.environ["RAY_ADDRESS"] != head


@pytest.mark.ray
def test_vocab_job_uploads_the_checkout_and_reads_and_writes_s3(head, s3, capsys):
    result = _submit(capsys, head, *KEYS, "--", "elmo", "vocab", "--input", "s3://subin/text/",
                     "--output", "s3://subout/vocab", "--min-count", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"working dir: {ROOT}" in result.stderr
    assert "environment: AWS_ACCESS_KEY_ID, AWS_DEFAULT_REGION, AWS_EC2_METADATA_DISABLED, " \
           "AWS_ENDPOINT_URL, AWS_SECRET_ACCESS_KEY (values not shown)" in result.stderr
    assert "sentences: 3" in result.stdout and "tokens: 13" in result.stdout  # the job's own output, streamed
    assert re.search(r"elmo submit: job raysubmit_\w+ succeeded$", result.stderr.strip())
    vocab = storage.read_text("s3://subout/vocab/vocab.txt").split()
    assert vocab == ["<S>", "</S>", "<UNK>", "bank", "the", ".", "river"]


@pytest.mark.ray
def test_embed_job_with_the_installed_package(head, s3, capsys):
    result = _submit(capsys, head, "--no-working-dir", *KEYS, "--", "embed", "--model", "s3://submodels/tiny",
                     "--input", "s3://subin/text/", "--output", "s3://subout/embed", "--pooling", "mean",
                     "--actors", "1,1", "--set", "cpus_per_actor=0.5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "working dir: (none" in result.stderr
    assert "embedded 2 input file(s), 3 sentences" in result.stdout
    import pyarrow.parquet as pq

    loc = storage.resolve("s3://subout/embed")
    table = pq.read_table(loc.path, filesystem=loc.arrow_fs)
    assert table.num_rows == 3
    assert {len(v) for v in table.column("embedding").to_pylist()} == {32}  # mean pooled, 2·proj


@pytest.mark.ray
def test_failing_job_returns_its_exit_status_and_says_why(head, s3, capsys):
    result = _submit(capsys, head, "--no-working-dir", *KEYS, "--", "vocab", "--input", "s3://subin/nothing/",
                     "--output", "s3://subout/never")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "elmo vocab: error: s3://subin/nothing: no input files there" in result.stdout  # streamed
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"elmo submit: job raysubmit_\w+ failed \(exit status 2\)", last), last
    assert storage.list_files("s3://subout/never", allow_empty=True) == []


@pytest.mark.ray
def test_ctrl_c_stops_the_job_and_exits_130(head, s3):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_AUTH_MODE"] = "disabled"
    # SIGINT back to its default in the child: when the tests run in a background job of a
    # non-interactive shell (`bash .ci/run &`), SIGINT is inherited as ignored and Python then
    # installs no Ctrl-C handler, unlike in a terminal.
    process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "submit", "--address", head,
                                "--no-working-dir", "--", "s3", "serve"],  # a job that runs until stopped
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    serving = threading.Event()

    def read_stdout():
        for line in process.stdout:
            lines.append(line)
            if line.startswith("S3 endpoint:"):
                serving.set()

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        assert serving.wait(120), "".join(lines)
        process.send_signal(signal.SIGINT)
        err = process.stderr.read()
        assert process.wait(60) == 130, err
    finally:
        if process.poll() is None:
            process.kill()
    job_id = re.search(r"submitted (raysubmit_\w+)", err).group(1)
    assert f"interrupted: stopping job {job_id}" in err
    assert f"job {job_id}: STOPPED" in err
    with patched_env({"RAY_AUTH_MODE": "disabled"}):
        assert str(submit.connect(head).get_job_status(job_id)) == "STOPPED"
