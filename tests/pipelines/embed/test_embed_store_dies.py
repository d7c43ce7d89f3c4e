"""The output store goes away mid-run: `elmo embed` stops with one line and a non-zero exit once its
lease has run out, instead of warning forever (a scheduled run would hang). A real moto S3 server,
stopped while a real `elmo embed` process embeds."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest

from pipelines.io.local_s3 import LocalS3
from pipelines.io.storage import resolve

from pipelines_support import patched_env

pytestmark = pytest.mark.ray
WORDS = "the bank raised its rates we sat on river a third line here another file with words and".split()


def test_a_run_whose_store_dies_stops_with_one_line_once_its_lease_runs_out(tiny_files, tmp_path):
    rng = random.Random(0)
    text = "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) + "\n" for _ in range(40_000))
    corpus = tmp_path / "big.txt"
    corpus.write_text(text)  # local input, S3 output: only the output store dies
    s3 = LocalS3(buckets=["dies"]).start()
    try:
        with patched_env(s3.env()):
            fs = resolve("s3://dies").fs
            fs.put_file(str(tiny_files[0]), "dies/tiny/options.json")
            fs.put_file(str(tiny_files[1]), "dies/tiny/weights.hdf5")
        env = {**os.environ, **s3.env(), "RAY_AUTH_MODE": "disabled", "AWS_MAX_ATTEMPTS": "2",
               "AWS_RETRY_MODE": "standard"}
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "embed", "--model", "s3://dies/tiny",
                                 "--input", str(corpus), "--output", "s3://dies/out", "--actors", "1,1",
                                 "--cpus-per-actor", "0.5", "--batch-size", "16", "--set", "lease_ttl_s=4"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        with patched_env(s3.env()):
            while not fs.exists("dies/out/_lease.json") and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
        time.sleep(3)  # the run is embedding
        assert proc.poll() is None, proc.communicate()[1][-3000:]
    finally:
        s3.stop()
    stopped_at = time.monotonic()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode not in (0, None), err[-3000:]
    assert time.monotonic() - stopped_at < 240
    assert "lost its lease: the store did not answer" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
