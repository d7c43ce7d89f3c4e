"""How ``elmo embed`` spreads work and what an actor holds: one file vs many, 1 vs 2 actors, and an
actor's peak memory for one file of growing size.

``python -m benchmarks.embed_scale_bench [--quick]``. A local Ray with every core; each row runs
:func:`pipelines.embed.job.run_embed` into a fresh local output with the test-only actor trace
(``ELMO_TEST_FAULTS={"embed_actor_trace_dir": …}``: each actor call appends its row count to a
file named by node and pid), so a row says how many rows each actor embedded. While it runs, a
thread samples each traced actor's memory in ``/proc/<pid>/status``: peak resident memory
(``VmHWM``), private memory (``RssAnon``: what grows if the actor holds more) and the object-store
pages it touched (``RssShmem``: Ray's shared memory, bounded by the object store).

- ``spread`` rows: the "small" shape (random weights), a corpus of ``n`` sentences as 1 or 4
  files, pools of 1 and 2 actors at ``1 / actors`` of the cores each: wall seconds, sentences/s,
  rows per actor.
- ``memory`` rows: the test fixture's tiny model (fast, so that large inputs fit in minutes), one
  file of 20k / 100k / 1M sentences (quick: 20k / 100k), one actor. Bounded memory means the same
  private peak for every size.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.corpus import make_sentences
from benchmarks.embed_cli_bench import SHAPE, _write_model
from benchmarks.machine import machine_info
from benchmarks.report import print_rows_main

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "elmo_tiny"


def _memory_mb(pid: int) -> dict[str, float]:
    """``VmHWM`` (peak resident memory, object-store pages the process touched included) and, at this
    moment, ``RssAnon`` (its private memory: heap, arrays) and ``RssShmem`` (Ray's object store)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except OSError:
        return {}
    found = {key: re.search(rf"{key}:\s+(\d+)", status) for key in ("VmHWM", "RssAnon", "RssShmem")}
    return {key: int(m.group(1)) / 1024 for key, m in found.items() if m}


def _run(model: Path, inputs: list[Path], output: Path, actors: int, cpus_per_actor: float) -> dict:
    from pipelines.embed.job import EmbedJobConfig, run_embed
    from pipelines.fault_injection import ENV_VAR, traced_embed_rows

    trace = output.parent / f"{output.name}-trace"
    trace.mkdir()
    peaks: dict[tuple[int, str], float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            for path in trace.iterdir():
                pid = int(path.name.rsplit("-", 1)[1])
                for key, mb in _memory_mb(pid).items():
                    peaks[pid, key] = max(peaks.get((pid, key), 0.0), mb)

    sampler = threading.Thread(target=sample, daemon=True)
    os.environ[ENV_VAR] = json.dumps({"embed_actor_trace_dir": str(trace)})
    sampler.start()
    start = time.perf_counter()
    try:
        result = run_embed(EmbedJobConfig(model=str(model), inputs=tuple(str(p) for p in inputs), output=str(output),
                                          actors=(actors, actors), cpus_per_actor=cpus_per_actor))
    finally:
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
        del os.environ[ENV_VAR]
    per_actor = sorted(traced_embed_rows(trace).values(), reverse=True)
    return {"seconds": round(seconds, 2), "sentences": result.rows, "sentences_per_s": round(result.rows / seconds, 1),
            "read_blocks": result.blocks, "rows_per_actor": per_actor,
            **{name: round(max((mb for (_, k), mb in peaks.items() if k == key), default=0.0), 1)
               for name, key in (("actor_peak_rss_mb", "VmHWM"), ("actor_peak_private_mb", "RssAnon"),
                                 ("actor_peak_object_store_mb", "RssShmem"))}}


def _write_corpus(folder: Path, sentences: list[list[str]], files: int) -> list[Path]:
    folder.mkdir()
    paths = []
    per_file = -(-len(sentences) // files)
    for k in range(files):
        path = folder / f"part{k}.txt"
        path.write_text("".join(" ".join(s) + "\n" for s in sentences[k * per_file:(k + 1) * per_file]))
        paths.append(path)
    return paths


def _spread_rows(tmp_path: Path, quick: bool, cores: int, machine: dict) -> list[dict]:
    out = []
    model = _write_model(tmp_path / "model")
    sentences = make_sentences(2_000 if quick else 8_000, seed=0)
    for files in (1, 4):
        corpus = _write_corpus(tmp_path / f"corpus{files}", sentences, files)
        for actors in (1, 2):
            cpus = min(1.0, (cores - 0.25) / actors)
            row = _run(model, corpus, tmp_path / f"out-{files}-{actors}", actors, cpus)
            out.append({"benchmark": "embed_spread", "shape": SHAPE, "files": files, "actors": actors,
                        "cpus_per_actor": round(cpus, 2), **row, "machine": machine})
    return out


def _memory_rows(tmp_path: Path, sizes: tuple[int, ...], machine: dict) -> list[dict]:
    out = []
    fixture = tmp_path / "tiny"
    fixture.mkdir()
    (fixture / "options.json").write_bytes((FIXTURE / "options.json").read_bytes())
    (fixture / "weights.hdf5").write_bytes((FIXTURE / "lm_weights.hdf5").read_bytes())
    for size in sizes:
        corpus = _write_corpus(tmp_path / f"mem{size}", make_sentences(size, seed=1), 1)
        row = _run(fixture, corpus, tmp_path / f"mem-out-{size}", 1, 1.0)
        out.append({"benchmark": "embed_actor_memory", "shape": "fixture", "sentences_in_file": size,
                    "input_mb": round(corpus[0].stat().st_size / 2**20, 1), **row, "machine": machine})
    return out


def rows(quick: bool = False, spread: bool = True, memory_sizes: tuple[int, ...] | None = None) -> list[dict]:
    """The spread rows (unless ``spread`` is false) and the memory rows (``memory_sizes``: sentences in
    the one file; default 20k / 100k / 1M, quick 20k / 100k)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cores = os.cpu_count() or 1
    machine = machine_info()
    if memory_sizes is None:
        memory_sizes = (20_000, 100_000) if quick else (20_000, 100_000, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="elmo-scale-bench-") as tmp:
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        try:
            out = _spread_rows(Path(tmp), quick, cores, machine) if spread else []
            return out + _memory_rows(Path(tmp), memory_sizes, machine)
        finally:
            ray.shutdown()


if __name__ == "__main__":
    print_rows_main(rows, __doc__.split("\n")[0])
