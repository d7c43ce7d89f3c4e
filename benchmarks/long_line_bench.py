"""One very long line (10,000 to 1,000,000 tokens): time, work and peak memory of the
window-by-window embedder.

Modes: ``dump`` — ``elmo dump``'s writer (:func:`elmo_model.infer.dump.write_embeddings`) to an hdf5
file in a temporary directory, all layers: the pieces of
:meth:`~elmo_model.infer.embedder.SentenceEmbedder.iter_pieces` go to disk as they come, so its working
memory should not grow with the line. ``stream`` — :meth:`~elmo_model.infer.embedder.SentenceEmbedder.iter_long`
(whole pieces in order), consumed as they come. ``whole`` — one embedder call, which returns one
``(L+1, n, 2·proj)`` array: that array is the growth. Working memory = peak RSS during the call
minus RSS before it (after handing free heap memory back to the OS). ``lstm_positions_per_token``
counts the positions every LSTM direction ran over (wrapping the biLM's methods), divided by the
line's tokens: the algorithm's work per token, whatever the machine's load.

``python -m benchmarks.long_line_bench --tokens 100000 300000 1000000 --modes dump``: each case in
a fresh process (so that peak RSS is its own), one JSON row per case on stdout, and with
``--markdown FILE`` a table; ``PYTHONPATH=<another checkout>`` measures that code with this script.
``make bench`` takes :func:`rows` (in-process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.corpus import make_sentences
from benchmarks.machine import machine_info, peak_rss_mb, release_free_memory, reset_peak_rss, rss_mb
from benchmarks.shapes import SHAPES, random_model
from elmo_model.infer.embedder import SentenceEmbedder

PLAN = [("fixture", 10_000, "stream"), ("fixture", 100_000, "stream"), ("fixture", 100_000, "dump"),
        ("fixture", 100_000, "whole"), ("small", 10_000, "stream")]
QUICK_PLAN = [("fixture", 2_000, "stream"), ("fixture", 20_000, "dump")]
FIXTURE = Path(__file__).parent.parent / "tests" / "fixtures" / "elmo_tiny"
_DIRECTIONS = {"contextualize": 2, "backward_final_state": 1, "contextualize_direction": 1}


def _count_lstm_positions(bilm) -> list[int]:
    """Wrap the biLM's inference entry points to count (positions × directions) they run; returns the counter."""
    counter = [0]
    for name, directions in _DIRECTIONS.items():
        method = getattr(bilm, name, None)
        if method is None:  # an older embedder without this entry point
            continue

        def counted(tokens, *args, _method=method, _directions=directions, **kwargs):
            counter[0] += int(tokens.shape[1]) * _directions
            return _method(tokens, *args, **kwargs)

        setattr(bilm, name, counted)
    return counter


def _model(shape: str):
    if shape == "fixture-weights":  # the trained tiny fixture (tests/fixtures/elmo_tiny)
        from elmo_model.formats.weights import load_bilm

        return load_bilm(FIXTURE / "options.json", FIXTURE / "lm_weights.hdf5").requires_grad_(False)
    return random_model(SHAPES[shape]).requires_grad_(False)


def measure(shape: str, n_tokens: int, mode: str) -> dict:
    """Embed one ``n_tokens`` line; time, work and memory."""
    bilm = _model(shape)
    embedder = SentenceEmbedder(bilm)
    line = make_sentences(1, n_tokens, n_tokens, seed=7)[0]
    embedder([line[:100]])  # warm-up
    counter = _count_lstm_positions(bilm)
    scratch = tempfile.TemporaryDirectory(prefix="long-line-")
    text = " ".join(line) if mode == "dump" else None
    release_free_memory()
    reset_peak_rss()
    before = rss_mb()
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    output_mb = 0.0
    if mode == "stream":
        n_out = 0
        for piece in embedder.iter_long(line):
            n_out += piece.shape[1]
    elif mode == "dump":
        from elmo_model.infer.dump import write_embeddings

        write_embeddings([text], Path(scratch.name) / "out.hdf5", bilm, progress=False)
        n_out = n_tokens
    else:
        vectors = embedder([line])[0]
        n_out, output_mb = vectors.shape[1], vectors.nbytes / 2**20
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before
    peak = peak_rss_mb()
    if mode == "dump":
        import h5py

        with h5py.File(Path(scratch.name) / "out.hdf5", "r") as fin:
            stored = fin["0"]
            assert stored.shape[1] == n_tokens and np.abs(stored[-1, -100:]).sum() > 0  # the end was written
            output_mb = stored.size * 4 / 2**20
    scratch.cleanup()
    assert n_out == n_tokens
    return {"benchmark": "long line", "shape": shape, "tokens": n_tokens, "mode": mode,
            "window_tokens": embedder.window, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "tokens_per_s": n_tokens / seconds, "tokens_per_cpu_s": n_tokens / cpu,
            "lstm_positions_per_token": counter[0] / n_tokens,
            "peak_rss_mb": peak, "working_mb": peak - before, "output_mb": output_mb,
            "threads": torch.get_num_threads()}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rows(quick: bool = False) -> list[dict]:
    """Rows for the benchmark table."""
    return [measure(*case) for case in (QUICK_PLAN if quick else PLAN)]


def _markdown(results: list[dict], machine: dict) -> str:
    head = ("| shape | tokens | mode | seconds | CPU s | tokens/s | tokens/CPU-s | LSTM positions/token "
            "| peak RSS MB | working MB | output MB | load before |\n|" + "---|" * 12 + "\n")
    body = "".join(
        f"| {r['shape']} | {r['tokens']:,} | {r['mode']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} "
        f"| {r['tokens_per_s']:,.0f} | {r['tokens_per_cpu_s']:,.0f} | {r['lstm_positions_per_token']:.2f} "
        f"| {r['peak_rss_mb']:,.0f} | {r['working_mb']:,.1f} | {r['output_mb']:,.0f} | {r['load_avg_1m']:.2f} |\n"
        for r in results)
    info = (f"CPU: {machine['cpu']}, {machine['cores']} cores, {machine.get('memory_gb', '?')} GB; torch "
            f"{machine['torch']}, {results[0]['threads'] if results else '?'} thread(s); python {machine['python']}\n\n")
    return info + head + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", default=["dump"], choices=["dump", "stream", "whole"])
    parser.add_argument("--shape", default="fixture-weights", choices=["fixture-weights", *SHAPES])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", help="also write the rows as a markdown table to this file")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a single case, in this process
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.shape, args.tokens[0], args.modes[0])), flush=True)
        return 0
    results = []
    for n in args.tokens:
        for mode in args.modes:
            load = os.getloadavg()[0]
            command = [sys.executable, "-m", "benchmarks.long_line_bench", "--one", "--tokens", str(n),
                       "--modes", mode, "--shape", args.shape, "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row = {**json.loads(done.stdout.strip().splitlines()[-1]), "load_avg_1m": load}
            print(json.dumps(row), flush=True)
            results.append(row)
    if args.markdown:
        Path(args.markdown).write_text(_markdown(results, machine_info()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
