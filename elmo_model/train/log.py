"""The training log: one row per logged step → console progress line, CSV, JSON and a PNG plot.

A row holds the step's global training loss and perplexity per direction (pooled over every
worker's targets since the previous row), the targets per direction of all workers since the
previous row (``tokens``) and their rate (``tokens_per_s``),
the learning rate, the gradient norm and, at evaluation steps, the validation perplexity.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any


COLUMNS = ["step", "loss", "loss_forward", "loss_backward", "perplexity", "perplexity_forward",
           "perplexity_backward", "tokens", "tokens_per_s", "learning_rate", "grad_norm", "elapsed_s",
           "valid_loss", "valid_perplexity", "valid_perplexity_forward", "valid_perplexity_backward"]
CSV_FILE, JSON_FILE, PLOT_FILE = "metrics.csv", "metrics.json", "training_curve.png"


def progress_line(row: dict[str, Any], total_steps: int) -> str:
    """``step 40/200 loss 5.123 ppl 167.8 (fwd 170.1 bwd 165.6) 1234 tok/s lr 0.2 [valid ppl 180.2]``."""
    line = (f"step {row['step']}/{total_steps} loss {row['loss']:.4f} ppl {row['perplexity']:.1f} "
            f"(fwd {row['perplexity_forward']:.1f} bwd {row['perplexity_backward']:.1f}) "
            f"{row['tokens_per_s']:.0f} tok/s lr {row['learning_rate']:.3g}")
    if "valid_perplexity" in row:
        line += f" | valid ppl {row['valid_perplexity']:.1f}"
    return line


class MetricsLog:
    """Rows by step; survives restarts by travelling inside checkpoints (:meth:`state` / :meth:`load`)."""

    def __init__(self, rows: list[dict[str, Any]] | None = None, resumes: list[int] | None = None) -> None:
        self.rows = list(rows or [])
        self.resumes = list(resumes or [])  # steps at which a run resumed from a checkpoint

    def add(self, row: dict[str, Any]) -> None:
        if self.rows and self.rows[-1]["step"] == row["step"]:
            self.rows[-1].update(row)
        else:
            self.rows.append(dict(row))

    def state(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows], "resumes": list(self.resumes)}

    @classmethod
    def load(cls, state: dict[str, Any], resumed_at: int) -> MetricsLog:
        """The log of a checkpoint at step ``resumed_at`` (rows after it are dropped: they will be redone)."""
        rows = [r for r in state.get("rows", []) if r["step"] <= resumed_at]
        return cls(rows, [*state.get("resumes", []), resumed_at])

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()

    def to_json(self, **extra: Any) -> str:
        return json.dumps({"rows": self.rows, "resumed_at_steps": self.resumes, **extra}, indent=1)

    def plot(self, path: str | Path, title: str = "") -> None:
        """Perplexity (training per direction, validation) and tokens/s against steps, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        steps = [r["step"] for r in self.rows]
        fig, (ppl, speed) = plt.subplots(1, 2, figsize=(11, 4))
        for key, label in (("perplexity_forward", "train forward"), ("perplexity_backward", "train backward")):
            ppl.plot(steps, [r[key] for r in self.rows], label=label)
        valid = [r for r in self.rows if "valid_perplexity" in r]
        if valid:
            ppl.plot([r["step"] for r in valid], [r["valid_perplexity"] for r in valid], "o-", label="validation")
        ppl.set(xlabel="step", ylabel="perplexity", yscale="log", title=title or "biLM perplexity")
        ppl.legend()
        speed.plot(steps, [r["tokens_per_s"] for r in self.rows])
        speed.set(xlabel="step", ylabel="tokens/s (all workers)", title="throughput")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
