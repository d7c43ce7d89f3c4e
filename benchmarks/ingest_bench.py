"""Ingestion throughput (lines/s): the Ray Data pipeline vs a plain single-process Python loop.

``python -m benchmarks.ingest_bench [--mb 100] [--files 16] [--keep DIR]``

Writes a Zipfian corpus of ``--mb`` MB of text (one sentence a line, ``--files`` files) to a
temporary directory, then times the same work three ways — read the file, decode UTF-8, split
lines, whitespace-tokenize, char-encode every token with :mod:`elmo_model.model.chars`:

1. ``plain loop``: a single-process Python loop, ``sentence_char_ids`` per line (the baseline);
2. ``stages, 1 process``: the pipeline's own functions (:mod:`pipelines.ingest.text_sources`,
   :class:`pipelines.ingest.SentenceStage`) in one process, no Ray — separates what the batch
   encoding gains from what parallelism gains;
3. ``ray data``: :func:`pipelines.ingest.sentence_dataset` on a local Ray, consumed by counting rows
   in the workers (char ids are ~100 bytes per token, so nothing is shipped to the driver).

Ray's start-up is not timed (one untimed pass over the first file warms the workers up); the Ray
row includes listing the files and scheduling. Reported as lines/s and as ratios to the plain loop.
The three run one after the other on the same machine: on a shared machine, rerun before
trusting a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.fs

from benchmarks.corpus import make_sentences, make_vocabulary
from elmo_model.model.chars import sentence_char_ids


def write_corpus(directory: Path, megabytes: float, n_files: int, seed: int = 0) -> int:
    """Write ~``megabytes`` MB of sentences into ``n_files`` text files; returns the line count."""
    vocab = make_vocabulary(30_000, seed)
    per_file = int(megabytes * 1e6 / n_files)
    lines = 0
    for i in range(n_files):
        with open(directory / f"part-{i:05d}.txt", "w", encoding="utf-8") as out:
            written, chunk = 0, 0
            while written < per_file:
                text = "".join(" ".join(s) + "\n" for s in make_sentences(5000, seed=seed + 1000 * i + chunk, vocab=vocab))
                text = text[: per_file - written].rsplit("\n", 1)[0] + "\n" if written + len(text) > per_file else text
                out.write(text)
                written += len(text.encode())
                lines += text.count("\n")
                chunk += 1
    return lines


def plain_loop(files: list[Path]) -> int:
    """The baseline: one process, one line at a time."""
    n = 0
    for path in files:
        with open(path, "rb") as handle:
            for raw in handle:
                tokens = raw.decode("utf-8").split()
                if tokens:
                    sentence_char_ids(tokens)
                    n += 1
    return n


def stages_one_process(files: list[Path]) -> int:
    """The pipeline's stage functions, in this process, without Ray."""
    from pipelines.ingest.reader import IngestConfig, SentenceStage
    from pipelines.ingest.text_sources import read_text_file

    stage, fs, n = SentenceStage(IngestConfig()), pyarrow.fs.LocalFileSystem(), 0
    for path in files:
        for records in read_text_file(fs, str(path), f"file://{path}"):
            n += sum(table.num_rows for table in stage(records))
    return n


def ray_pipeline(directory: Path) -> int:
    """The Ray Data pipeline over ``directory`` (or one file), rows counted in the workers."""
    from pipelines.ingest.reader import sentence_dataset
    from pipelines.ray_support import clean_errors

    counts = sentence_dataset(str(directory)).map_batches(
        lambda t: pa.table({"n": [t.num_rows]}), batch_size=None, batch_format="pyarrow")
    with clean_errors():
        return int(sum(counts.to_pandas()["n"]))


def timed(fn, *args) -> tuple[int, float]:
    start = time.perf_counter()
    n = fn(*args)
    return n, time.perf_counter() - start


def run(directory: Path, megabytes: float, n_files: int) -> dict:
    from pipelines.ray_support import ensure_ray

    n_lines = write_corpus(directory, megabytes, n_files)
    files = sorted(directory.glob("*.txt"))
    size = sum(f.stat().st_size for f in files)
    ensure_ray()
    import ray

    ray_pipeline(files[0])  # warm-up: workers start and import the pipeline once
    results = {"corpus_mb": round(size / 1e6, 1), "files": len(files), "lines": n_lines,
               "ray_cpus": int(ray.cluster_resources().get("CPU", 0)), "machine_cpus": os.cpu_count()}
    for name, fn, arg in (("plain loop", plain_loop, files), ("stages, 1 process", stages_one_process, files),
                          ("ray data", ray_pipeline, directory)):
        n, seconds = timed(fn, arg)
        if n != n_lines:
            raise RuntimeError(f"{name} produced {n} sentences, expected {n_lines}")
        results[name] = {"seconds": round(seconds, 2), "lines_per_s": round(n / seconds)}
    base = results["plain loop"]["lines_per_s"]
    for name in ("stages, 1 process", "ray data"):
        results[name]["ratio_to_plain_loop"] = round(results[name]["lines_per_s"] / base, 2)
    return results


def rows(quick: bool = False) -> list[dict]:
    """Rows for ``benchmarks.run``: the three contenders on a 10 MB (quick: 2 MB) corpus of 8 files."""
    with tempfile.TemporaryDirectory(prefix="ingest_bench_") as tmp:
        results = run(Path(tmp), 2.0 if quick else 10.0, 8)
    out = []
    for name in ("plain loop", "stages, 1 process", "ray data"):
        out.append({"benchmark": "ingest", "contender": name, "corpus_mb": results["corpus_mb"],
                    "lines": results["lines"], "ray_cpus": results["ray_cpus"], **results[name]})
    out[0]["ratio_to_plain_loop"] = 1.0
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=100.0, help="corpus size in MB (default 100)")
    parser.add_argument("--files", type=int, default=16, help="number of files (default 16)")
    parser.add_argument("--keep", type=Path, help="write the corpus here instead of a temporary directory")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run(args.keep, args.mb, args.files)
    else:
        with tempfile.TemporaryDirectory(prefix="ingest_bench_") as tmp:
            results = run(Path(tmp), args.mb, args.files)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
