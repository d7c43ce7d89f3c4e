"""What committing ``elmo embed`` output per group of inputs costs: G groups against one.

``python -m benchmarks.embed_commit_bench [--quick]``. A random-weight biLM of the "small" shape
(:mod:`benchmarks.shapes`) and a synthetic corpus (:mod:`benchmarks.corpus`) cut into ``G`` local
text files; :func:`pipelines.embed.job.run_embed` on a local Ray (started once, outside the timed
region) embeds them into a fresh local output with ``commit_bytes=1`` (one commit — one Ray Data
pipeline, one actor pool, one model load per actor — per file) and with one commit for all,
interleaved (one, G, one, G). ``per_group_s`` = (time of G groups − time of one) / (G − 1): the
price of each extra commit on this model, to weigh against the work a crash may redo.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.corpus import make_sentences
from benchmarks.embed_cli_bench import SHAPE, _write_model
from benchmarks.report import print_rows_main


def _run(model_dir: Path, corpus: Path, output: Path, commit_bytes: int) -> tuple[float, int]:
    from pipelines.embed.job import EmbedJobConfig, run_embed

    start = time.perf_counter()
    result = run_embed(EmbedJobConfig(model=str(model_dir), inputs=(str(corpus),), output=str(output),
                                      actors=(1, 1), cpus_per_actor=1.0, commit_bytes=commit_bytes))
    return time.perf_counter() - start, result.commits


def rows(quick: bool = False) -> list[dict]:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    n_files, per_file = (3, 64) if quick else (6, 256)
    sentences = make_sentences(n_files * per_file, seed=0)
    timings: dict[int, list[float]] = {1: [], n_files: []}
    with tempfile.TemporaryDirectory(prefix="elmo-commit-bench-") as tmp:
        model_dir = _write_model(Path(tmp) / "model")
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for k in range(n_files):
            chunk = sentences[k * per_file:(k + 1) * per_file]
            (corpus / f"part{k}.txt").write_text("".join(" ".join(s) + "\n" for s in chunk))
        started_ray = not ray.is_initialized()
        if started_ray:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            for trial in range(2):
                for commit_bytes in (2**40, 1):
                    seconds, commits = _run(model_dir, corpus, Path(tmp) / f"out-{trial}-{commit_bytes}", commit_bytes)
                    timings[commits].append(seconds)
        finally:
            if started_ray:
                ray.shutdown()
    one, many = min(timings[1]), min(timings[n_files])
    return [{"benchmark": "embed_commit_groups", "shape": SHAPE, "files": n_files, "sentences": len(sentences),
             "one_commit_s": one, "per_file_commits_s": many, "per_group_s": (many - one) / (n_files - 1),
             "per_group_share_of_one_file": (many - one) / (n_files - 1) / (one / n_files)}]


if __name__ == "__main__":
    print_rows_main(rows, __doc__.split("\n")[0])
