"""Real ``elmo train`` processes for the tests of training runs: a small corpus,
its vocabulary and a run configuration, and a process whose merged output is collected line by line.

A tiny model, 8-sentence batches, 20-token windows: a step takes a few hundredths of a second, so a
run costs mostly its start (Ray, the dataset), 30–50 s on two shared cores.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from elmo_model.formats.vocab import Vocabulary

ROOT = Path(__file__).parents[1]
CONFIG = """\
name = "{name}"
train = ["{corpus}"]
vocab = "{vocab}"
output = "{output}"
storage = "{storage}"
num_workers = {workers}
cpus_per_worker = {cpus}
keep_checkpoints = {keep}

[training]
model = "tiny"
batch_size = 8
max_tokens = 20
steps = {steps}
log_every = 1
checkpoint_every = 10
seed = 3
"""
# RAY_ADDRESS=local: a Ray of its own, never a `ray start` cluster someone else runs on this machine
# (which a plain ray.init() joins, and whose end takes the run with it).
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "PYTHONUNBUFFERED": "1",
       "RAY_ADDRESS": "local"}
PROGRESS = re.compile(r"step (\d+)/(\d+) loss (\d+\.\d+)")


def write_run(directory: Path, *, output: str | os.PathLike, storage: str | os.PathLike, name: str = "r",
              steps: int = 30, keep: int = 5, cpus: float = 1.0, workers: int = 1) -> Path:
    """corpus.txt and vocab.txt in ``directory`` (400 lines of the demo corpus), and train.toml."""
    lines = (ROOT / "pipelines" / "data" / "demo_corpus.txt").read_text().splitlines()[:400]
    (directory / "corpus.txt").write_text("\n".join(lines) + "\n")
    counts: dict[str, int] = {}
    for line in lines:
        for token in line.split():
            counts[token] = counts.get(token, 0) + 1
    (directory / "vocab.txt").write_text(Vocabulary.from_counts(counts, max_size=600).to_text())
    config = directory / "train.toml"
    config.write_text(CONFIG.format(name=name, corpus=directory / "corpus.txt", vocab=directory / "vocab.txt",
                                    output=output, storage=storage, steps=steps, keep=keep, cpus=cpus,
                                    workers=workers))
    return config


class Elmo:
    """``elmo train --config PATH ARGS…`` in its own process group, its merged output collected."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "train", "--config", str(config),
                                         *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, **ENV, **(env or {})}, start_new_session=True, cwd=ROOT)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def steps(self) -> dict[int, float]:
        """Step → loss of the progress lines printed so far."""
        return {int(m.group(1)): float(m.group(3)) for line in list(self.lines) if (m := PROGRESS.search(line))}

    def wait_for(self, pattern: str, timeout: float = 400) -> None:
        """Until a line matches ``pattern`` (a regular expression)."""
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in list(self.lines)):
            assert self.process.poll() is None, self.output[-5000:]
            assert time.monotonic() < deadline, self.output[-5000:]
            time.sleep(0.1)

    def ctrl_c(self) -> None:
        """SIGINT to the whole process group, as a terminal's Ctrl-C sends it."""
        os.killpg(self.process.pid, signal.SIGINT)

    def wait(self, timeout: float = 400) -> int:
        try:
            code = self.process.wait(timeout)
        finally:
            self.kill()
        self.reader.join(10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def said(self, prefix: str = "elmo train:") -> list[str]:
        """The command's own lines (``elmo train: …``)."""
        return [line for line in self.lines if line.startswith(prefix)]
