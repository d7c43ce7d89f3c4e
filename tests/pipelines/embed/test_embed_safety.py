"""`elmo embed` run by real processes on one output URL: one run at a time (lease), progress that
survives SIGKILL, recovery of unlisted files, nothing left of a killed run's local Ray.

Every run here is a real ``elmo embed`` subprocess against the moto S3 server of this module, each
starting its own local Ray; rows are counted with plain pyarrow.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from pipelines.io.lease import EXIT_LEASE_HELD, RunLease
from pipelines.embed.manifest import ManifestChanged, commit, read_state, recover
from pipelines.io.storage import FileEntry, resolve
from pipelines.ray_watchdog import descendants, process_table, start_time

from pipelines_support import expired_foreign_lease, local_s3_env, race_for_expired_lease

pytestmark = pytest.mark.ray

N_FILES, N_LINES = 4, 600  # 2,400 sentences


def _text(k: int) -> str:
    return "".join(f"file {k} sentence {i} has a few words .\n" for i in range(N_LINES))


@pytest.fixture(scope="module")
def s3(tiny_files):
    with local_s3_env("models", "corpus", "out") as server:
        fs = resolve("s3://models").fs
        fs.put_file(str(tiny_files[0]), "models/tiny/options.json")
        fs.put_file(str(tiny_files[1]), "models/tiny/weights.hdf5")
        for k in range(N_FILES):
            fs.pipe_file(f"corpus/in/f{k}.txt", _text(k).encode())
        yield server


def _start(output: str, *extra: str) -> subprocess.Popen:
    """``elmo embed`` of the whole corpus into ``output``, as its own process (own local Ray)."""
    args = [sys.executable, "-m", "pipelines.cli", "embed", "--model", "s3://models/tiny", "--input",
            "s3://corpus/in", "--output", output, "--actors", "1,1", "--cpus-per-actor", "0.5",
            "--batch-size", "200", *extra]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _rows(output: str):
    """What a plain pyarrow reader sees under the output URL."""
    loc = resolve(output)
    return pq.read_table(loc.path, filesystem=loc.arrow_fs)


def _assert_every_sentence_once(output: str) -> None:
    table = _rows(output)
    keys = list(zip(table.column("source").to_pylist(), table.column("line").to_pylist()))
    assert table.num_rows == N_FILES * N_LINES == len(set(keys))


def _manifest(output: str) -> dict:
    loc = resolve(output)
    return json.loads(loc.fs.cat_file(loc.join("_manifest.json").path))


def test_two_concurrent_runs_commit_once_and_a_waiting_run_queues(s3):
    output = "s3://out/concurrent"
    first = _start(output)
    time.sleep(1.0)
    second = _start(output)  # no --wait: must stop at once, naming the output and the holder
    third = _start(output, "--wait", "600")  # queues behind the holder, then finds nothing to do
    results = [_finish(p) for p in (first, second, third)]
    codes = [r[0] for r in results]
    logs = [r[2][-3000:] for r in results]
    # whichever got the lease first (on a loaded machine not always the first started) did the work
    assert codes[2] == 0 and set(codes[:2]) <= {0, EXIT_LEASE_HELD} and EXIT_LEASE_HELD in codes[:2], logs
    workers = [i for i, r in enumerate(results) if f"embedded {N_FILES} input file(s)" in r[1]]
    assert len(workers) == 1, logs
    assert all("up to date" in results[i][2] for i in range(3) if codes[i] == 0 and i != workers[0]), logs
    for i in (i for i in range(2) if codes[i] == EXIT_LEASE_HELD):  # one clear line naming output and holder
        last = results[i][2].strip().splitlines()[-1]
        assert output in last and "another elmo embed is writing there" in last and "Traceback" not in results[i][2]
    _assert_every_sentence_once(output)
    assert json.loads(resolve(output).fs.cat_file("out/concurrent/_lease.json"))["released"] is True


@pytest.mark.parametrize("where", ["s3", "local"])
def test_expired_lease_is_taken_over_by_exactly_one_contender(s3, tmp_path, where):
    out = resolve("s3://out/takeover" if where == "s3" else str(tmp_path / "out"))
    leases, outcomes = race_for_expired_lease(out.url)
    winners = [i for i, o in outcomes.items() if o == "won"]
    assert len(winners) == 1, outcomes
    winner = leases[winners[0]]
    assert all(winner.run_id in o for i, o in outcomes.items() if i != winners[0])
    holder = json.loads(out.fs.cat_file(out.join("_lease.json").path))
    assert holder["run_id"] == winner.run_id and holder["expires"] > time.time()
    winner.release()
    assert json.loads(out.fs.cat_file(out.join("_lease.json").path))["released"] is True


def test_a_live_lease_blocks_and_an_expired_one_is_taken_over_by_elmo_embed(s3):
    output = "s3://out/expired"
    live = RunLease(resolve(output), "live-run", ttl_s=600).acquire()
    blocked = _finish(_start(output))
    assert blocked[0] == EXIT_LEASE_HELD and "live-run" in blocked[2], blocked[2][-2000:]
    live.release()
    expired_foreign_lease(output)
    code, out, err = _finish(_start(output))
    assert code == 0, err[-3000:]
    assert "took over the lease" in err and "dead-run" in err
    _assert_every_sentence_once(output)


def test_commit_refused_when_the_manifest_changed_since_the_run_read_it(s3):
    out = resolve("s3://out/cas")
    state = recover(out, "run-a")
    # another run (after a takeover) commits first
    out.fs.pipe_file("out/cas/_staging/run-b/g0/x.parquet", b"b")
    entry = FileEntry("s3://corpus/in/f0.txt", "corpus/in/f0.txt", 1, "etag:x")
    commit(out, state, "run-b-0", out.join("_staging/run-b/g0"), [entry], {entry.url: ["_staging/run-b/g0/x.parquet"]},
           {entry.url: 1}, "settings")
    out.fs.pipe_file("out/cas/_staging/run-a/g0/y.parquet", b"a")
    with pytest.raises(ManifestChanged, match="s3://out/cas: refused to commit"):
        commit(out, state, "run-a-0", out.join("_staging/run-a/g0"), [entry],
               {entry.url: ["_staging/run-a/g0/y.parquet"]}, {entry.url: 1}, "settings")
    assert read_state(out).commit == "run-b-0"
    assert not out.fs.exists("out/cas/_staging/run-a") and not out.fs.exists("out/cas/_commits/run-a-0.json")
    visible = [p for p in out.fs.find("out/cas") if "/_" not in p[len("out/cas"):]]
    assert visible == [f"out/cas/{read_state(out).inputs[entry.url].files[0]}"]


def test_recovery_removes_committed_looking_files_the_manifest_does_not_list(s3):
    output = "s3://out/orphans"
    code, _, err = _finish(_start(output))
    assert code == 0, err[-3000:]
    loc = resolve(output)
    listed = [f for rec in _manifest(output)["inputs"].values() for f in rec["files"]]
    # the damage of two unguarded runs: a second copy of a committed file, not in the manifest
    folder, name = listed[0].rsplit("/", 1)
    duplicate = f"{loc.path}/{folder}/part-older-run-00000.parquet"
    loc.fs.copy(f"{loc.path}/{listed[0]}", duplicate)
    assert _rows(output).num_rows == N_FILES * N_LINES + N_LINES
    code, _, err = _finish(_start(output))
    assert code == 0 and "up to date" in err, err[-3000:]
    assert not loc.fs.exists(duplicate) and "not listed in _manifest.json" in err
    _assert_every_sentence_once(output)


def _ray_processes(root: int) -> dict[int, str]:
    """Ray processes below ``root`` (pid → kernel start time)."""
    table = process_table()
    found = {}
    for pid in descendants({root}, table):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if b"ray" in handle.read():
                    found[pid] = table[pid][1]
        except OSError:
            pass
    return found


@pytest.mark.slow  # two runs with 4 commit groups each: 100 s on the shared 2-core VM
def test_sigkilled_run_keeps_its_commits_and_leaves_no_ray_processes(s3):
    output = "s3://out/killed"
    proc = _start(output, "--set", "commit_bytes=1")  # one commit per input file
    ray_seen: dict[int, str] = {}
    deadline = time.monotonic() + 600
    committed: set[str] = set()
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            ray_seen.update(_ray_processes(proc.pid))
            if resolve(output).fs.exists("out/killed/_manifest.json"):
                committed = set(_manifest(output)["inputs"])
                if len(committed) >= 2:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-3000:]
        ray_seen.update(_ray_processes(proc.pid))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        # the Ray processes this run started die with it (agents included), within seconds
        assert any(start_time(pid) == start for pid, start in ray_seen.items())  # pre-condition: they ran
        survivors = dict(ray_seen)
        for _ in range(60):
            survivors = {pid: s for pid, s in survivors.items() if start_time(pid) == s}
            if not survivors:
                break
            time.sleep(0.5)
        assert not survivors, [open(f"/proc/{p}/cmdline", "rb").read()[:80] for p in survivors]
    finally:
        for pid, start in ray_seen.items():  # only processes this test's run started
            if start_time(pid) == start:
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    before = _manifest(output)["inputs"]
    assert 2 <= len(before) < N_FILES
    # the visible output is the committed inputs, except one whose commit the kill interrupted after
    # its commit point (the manifest lists it, some or all of its files still staged): the rerun
    # finishes that one
    pending = _inputs_of_pending_commit(output, before)
    assert len(pending) <= 1
    _assert_rows_of(output, set(before) - pending, partly=pending)
    code, out, err = _finish(_start(output, "--set", "commit_bytes=1"))
    assert code == 0, err[-3000:]
    after = _manifest(output)["inputs"]
    assert f"embedded {N_FILES - len(before)} input file(s)" in out
    assert {u: after[u]["run_id"] for u in before} == {u: before[u]["run_id"] for u in before}  # not redone
    _assert_every_sentence_once(output)


def _inputs_of_pending_commit(output: str, committed: dict) -> set[str]:
    """Inputs whose files an intent of the manifest's own commit still has to move into place."""
    loc = resolve(output)
    manifest = _manifest(output)
    intent_path = loc.join(f"_commits/{manifest['commit']}.json").path
    if not loc.fs.exists(intent_path):
        return set()
    moved = {dst for _, dst in json.loads(loc.fs.cat_file(intent_path))["moves"]}
    return {url for url, record in committed.items() if moved & set(record["files"])}


def _assert_rows_of(output: str, inputs: set[str], partly: set[str] = frozenset()) -> None:
    """Every input of ``inputs`` has all its rows; one of ``partly`` may have none, some or all."""
    counts = collections.Counter(_rows(output).column("source").to_pylist())
    assert {url: counts[url] for url in inputs} == {url: N_LINES for url in inputs}
    assert set(counts) <= set(inputs) | set(partly), counts
    assert all(counts[url] <= N_LINES for url in partly), counts
