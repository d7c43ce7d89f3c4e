"""One ``elmo train`` run per name and storage at a time: a lease on
``<storage>/<name>``, as ``elmo embed`` has on its output (:mod:`pipelines.io.lease`).

With real processes: a second run of the same name exits 75 with one line naming the first, a run
with ``--wait`` starts once the first is done (and continues it: it trains nothing again), and a
run whose lease is taken over stops with one line. On the embedded S3 the lease is held by this
test process.
"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from pipelines_support import local_s3_env
from train_runs import Elmo, write_run

from pipelines.io.conditional import read_versioned, replace_if
from pipelines.io.lease import EXIT_LEASE_HELD, RunLease
from pipelines.io.storage import resolve

pytestmark = [pytest.mark.ray, pytest.mark.slow]
HELD = (r"elmo train: error: {place}: another elmo train is writing there: run \S+ \(host {host}, pid {pid}, "
        r"started [\d: -]+\); its lease expires in \d+ s unless renewed \(retry later, or --wait SECONDS\)")


def _wait_for_file(path, process: Elmo, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.process.poll() is None and time.monotonic() < deadline, process.output[-5000:]
        time.sleep(0.05)


def test_a_second_run_of_the_same_name_exits_75_and_one_with_wait_continues_after_it(tmp_path):
    config = write_run(tmp_path, output=tmp_path / "model", storage=tmp_path / "ckpt", steps=30)
    first = Elmo(config)
    _wait_for_file(tmp_path / "ckpt" / "r" / "_lease.json", first)  # taken before Ray starts

    second = Elmo(config)
    assert second.wait(120) == EXIT_LEASE_HELD, second.output[-5000:]
    said = second.said()
    assert len(said) == 1, second.output
    assert re.fullmatch(HELD.format(place=re.escape(f"file://{tmp_path}/ckpt/r"), host=re.escape(socket.gethostname()),
                                    pid=first.process.pid), said[0]), said
    assert "Traceback" not in second.output and not second.steps()

    third = Elmo(config, "--wait", "600")
    time.sleep(1)
    assert first.process.poll() is None, "the first run ended before the third one waited for it"
    assert first.wait() == 0, first.output[-5000:]
    assert third.wait() == 0, third.output[-5000:]
    assert sorted(first.steps()) == list(range(1, 31))
    assert "has a checkpoint at step 30 " in third.output  # it saw the first run's end, and went on from there
    assert not third.steps()  # nothing trained twice
    rows = json.loads((tmp_path / "model" / "metrics.json").read_text())["rows"]
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert json.loads((tmp_path / "ckpt" / "r" / "_lease.json").read_text())["released"] is True


def test_a_run_whose_lease_is_taken_over_stops_with_one_line(tmp_path):
    config = write_run(tmp_path, output=tmp_path / "model", storage=tmp_path / "ckpt", steps=30)
    run = Elmo(config, "--set", "lease_ttl_s=2")  # renewed every 0.5 s
    lease = tmp_path / "ckpt" / "r" / "_lease.json"
    _wait_for_file(lease, run)
    loc = resolve(str(lease))
    current = read_versioned(loc)
    record = {**json.loads(current.data), "run_id": "usurper", "pid": 1, "machine": "elsewhere",
              "expires": time.time() + 3600}
    replace_if(loc, json.dumps(record).encode(), current.token)  # as a run that found it expired would
    assert run.wait() != 0
    assert max(run.steps(), default=0) < 30, run.output[-5000:]  # stopped, not trained to the end
    said = run.said()
    assert len(said) == 1 and said[0].startswith(f"elmo train: error: file://{tmp_path}/ckpt/r: this run (") \
        and said[0].endswith("lost its lease: another run took it over (this one was not renewed in time); "
                             "nothing more is committed"), run.output[-5000:]
    assert "Traceback" not in run.output, run.output[-5000:]
    assert json.loads(lease.read_text())["run_id"] == "usurper"  # left to its holder


def test_on_s3_a_held_lease_gives_75_and_wait_starts_once_it_is_released(tmp_path):
    with local_s3_env("leases"):
        config = write_run(tmp_path, output="s3://leases/model", storage="s3://leases/ckpt", steps=10)
        held = RunLease(resolve("s3://leases/ckpt/r"), "test-holder", ttl_s=60, command="elmo train").acquire()
        try:
            refused = Elmo(config)
            assert refused.wait(120) == EXIT_LEASE_HELD, refused.output[-5000:]
            said = refused.said()
            assert len(said) == 1 and re.fullmatch(
                HELD.format(place=re.escape("s3://leases/ckpt/r"), host=re.escape(socket.gethostname()),
                            pid=__import__("os").getpid()), said[0]), refused.output[-5000:]
            waiting = Elmo(config, "--wait", "300")
            time.sleep(8)
            assert waiting.process.poll() is None and not waiting.steps(), waiting.output[-5000:]
        finally:
            held.release()
        assert waiting.wait() == 0, waiting.output[-5000:]
        assert sorted(waiting.steps()) == list(range(1, 11))
        assert json.loads(resolve("s3://leases/ckpt/r/_lease.json").fs.cat_file("leases/ckpt/r/_lease.json"))[
            "released"] is True
